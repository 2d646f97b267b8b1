"""Task views: the pairs as supervised fine-tuning rows that TRL's ``SFTTrainer`` takes as they are.

A view row is a pure function of a pairs row and the build's seed (nothing is lowered again):

- ``forward``: the Python source in the prompt, the exact ``stablehlo_ir`` as the completion;
- ``conversational``: the same prompt and completion as ``messages`` (user, assistant);
- ``reverse``: the StableHLO in the prompt, the Python source as the completion;
- ``optimize``: the StableHLO in, XLA's optimized HLO out (rows built with ``with_optimized_hlo``);
- ``cost``: the StableHLO in, its cost figures (``flops``, ``transcendentals``,
  ``bytes_accessed``) out (rows that have them: symbolic shapes have none).

A prompt is one of a few instruction templates, a blank line, and the text given; the
completion is the row's text itself, unchanged. The template is drawn per row from the seed
and the row's id, so views are deterministic and a row's views can be rebuilt from it alone.
Every view row keeps ``id`` and ``category`` (to join back to its pair) and ``template``.

Token counts are Tekken tokens (``tokens``). The template ends with a blank line and every
text given starts with a letter or a quote, where Tekken's pre-tokenizer always splits, so
``prompt_tokens`` is the template's tokens plus the text's (``python_tokens`` or
``stablehlo_tokens``, counted once per row): checked against counting the whole prompt in
the tests. That is what lets a build keep every view row within a budget (``fits``) without
tokenizing each prompt again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets

from .plan import HOST_PLATFORM, parse_lowering, static_argnums_text
from .tokens import count_tokens

PAIRS = "pairs"  # the rows themselves, not a view


@dataclass(frozen=True)
class View:
    """One task view.

    Attributes:
      name: the view's name (a Hub config is ``<pairs config>-<name>``).
      source: the pairs column the prompt holds after its instruction.
      target: what the completion is (a pairs column, or ``"cost"``: the cost figures as text).
      templates: instructions; ``{function_name}``, ``{jax_version}``, ``{jaxlib_version}`` and
        ``{lowering}`` are filled from the row (``lowering_text``: how it was lowered, if not
        plainly, e.g. ", for TPU, with static_argnums=2, with 8 host CPU devices").
      messages: rows are ``messages`` (user, assistant) instead of ``prompt``/``completion``.
      description: one line for the card.
    """

    name: str
    source: str
    target: str
    templates: tuple[str, ...]
    messages: bool = False
    description: str = ""


_FORWARD = (
    "Lower `{function_name}` in this JAX module to StableHLO, as "
    "`jax.jit(...).lower(*example_args()).as_text()` prints it with jax {jax_version}{lowering}.",
    "What StableHLO module does jax {jax_version} emit for `{function_name}` under `jax.jit`{lowering}? "
    "Reply with the module text only.",
    "Translate this Python (JAX) code to the StableHLO MLIR that `jax.jit` lowers it to{lowering}.",
)
_REVERSE = (
    "Write the JAX module that `jax.jit` lowered to this StableHLO: its imports, the code, and "
    "an `example_args()` that returns the arguments.",
    "This StableHLO was produced by jax {jax_version}{lowering}. Reconstruct the Python source it came from, "
    "as a self-contained module with `example_args()`.",
    "Decompile this StableHLO module back to the JAX program it was lowered from.",
)
_OPTIMIZE = (
    "Compile this StableHLO module with XLA for the CPU (jaxlib {jaxlib_version}) and give the optimized HLO module.",
    "What HLO does XLA's CPU compiler produce for this StableHLO after its optimization passes?",
)
_COST = (
    "Give XLA's cost analysis of this StableHLO module: flops, transcendentals and bytes accessed.",
    "How many flops, transcendental operations and bytes accessed does XLA's cost analysis count for this module?",
)

VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("forward", "python_source", "stablehlo_ir", _FORWARD, description="Python source -> StableHLO"),
        View(
            "conversational",
            "python_source",
            "stablehlo_ir",
            _FORWARD,
            messages=True,
            description="forward, as chat messages (user, assistant)",
        ),
        View("reverse", "stablehlo_ir", "python_source", _REVERSE, description="StableHLO -> Python source"),
        View(
            "optimize",
            "stablehlo_ir",
            "optimized_hlo",
            _OPTIMIZE,
            description="StableHLO -> XLA's optimized HLO (builds with with_optimized_hlo)",
        ),
        View("cost", "stablehlo_ir", "cost", _COST, description="StableHLO -> XLA cost analysis figures"),
    )
}
VIEW_NAMES: tuple[str, ...] = (PAIRS, *VIEWS)
# Token count columns of the pairs row, by the text column they count.
TOKEN_COLUMNS = {
    "python_source": "python_tokens",
    "stablehlo_ir": "stablehlo_tokens",
    "optimized_hlo": "optimized_hlo_tokens",
}
COST_FIELDS = (("flops", "flops"), ("transcendentals", "transcendentals"), ("bytes_accessed", "bytes accessed"))

_COMMON = {
    "id": datasets.Value("string"),
    "category": datasets.Value("string"),
    "template": datasets.Value("int32"),
}
_COUNTS = {"prompt_tokens": datasets.Value("int32"), "completion_tokens": datasets.Value("int32")}
PROMPT_COMPLETION_FEATURES = datasets.Features(
    {**_COMMON, "prompt": datasets.Value("string"), "completion": datasets.Value("string"), **_COUNTS}
)
MESSAGES_FEATURES = datasets.Features(
    {**_COMMON, "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}], **_COUNTS}
)
VIEW_COLUMNS: dict[str, str] = {
    "id": "the pair's id (joins back to the pairs config)",
    "category": "the pair's category",
    "template": "index of the instruction template (in the order this card lists them)",
    "prompt": "an instruction, a blank line, then the pair's input text (prompt-completion views)",
    "completion": "the pair's output text, unchanged (prompt-completion views)",
    "messages": "[{role: user, content: <prompt>}, {role: assistant, content: <completion>}] (conversational)",
    "prompt_tokens": "Tekken tokens of the prompt (the user message)",
    "completion_tokens": "Tekken tokens of the completion (the assistant message)",
}


def check_view(name: str) -> str:
    """``name`` if it is ``"pairs"`` or a view, else a ``ValueError`` naming the valid ones."""
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view {name!r}; valid views: {', '.join(VIEW_NAMES)}")
    return name


def features(view: str) -> datasets.Features | None:
    """The view's columns (``None`` for ``pairs``: the pairs schema)."""
    if check_view(view) == PAIRS:
        return None
    return MESSAGES_FEATURES if VIEWS[view].messages else PROMPT_COMPLETION_FEATURES


def template_index(seed: int, view: str, row_id: str) -> int:
    """The template a row gets in a view: drawn from the build's seed and the row's id."""
    return random.Random(f"{seed}:{view}:{row_id}").randrange(len(VIEWS[view].templates))


def cost_text(row: Mapping[str, Any]) -> str | None:
    """The cost figures as a completion (``flops: 1024``, one per line), or ``None`` without them."""
    values = [(label, row.get(column)) for column, label in COST_FIELDS]
    if any(v is None for _, v in values):
        return None
    return "\n".join(f"{label}: {int(v) if float(v).is_integer() else repr(float(v))}" for label, v in values)


def lowering_text(row: Mapping[str, Any]) -> str:
    """``{lowering}`` of a template, from the row's ``lowering`` column: ", for TPU" (another platform
    than the CPU), ", with static_argnums=2" (static arguments, as ``jax.jit`` takes them) and
    ", with 8 host CPU devices", whichever apply, in that order; "" for a plain ``jit`` row."""
    how = parse_lowering(row.get("lowering") or "jit")
    text = f", for {how.platform.upper()}" if how.platform != HOST_PLATFORM else ""
    if how.static_argnums:
        text += ", with static_argnums=" + static_argnums_text(how.static_argnums)
    return text + (f", with {how.host_devices} host CPU devices" if how.host_devices > 1 else "")


def instruction(view: View, index: int, row: Mapping[str, Any]) -> str:
    """Template ``index`` of ``view`` filled from ``row``, ending with the blank line before the text."""
    return (
        view.templates[index].format(
            function_name=row["function_name"],
            jax_version=row["jax_version"],
            jaxlib_version=row["jaxlib_version"],
            lowering=lowering_text(row),
        )
        + "\n\n"
    )


def _tokens(row: Mapping[str, Any], column: str) -> int:
    counted = row.get(TOKEN_COLUMNS[column])
    return counted if counted is not None else count_tokens(row[column])


def view_row(
    row: Mapping[str, Any], view: str, seed: int | None = None, *, template: int | None = None
) -> dict[str, Any] | None:
    """The ``view`` row of a pairs row, or ``None`` if the pair has no such row (no optimized HLO, no cost).

    The instruction is template ``template`` if given, else the one the build's ``seed`` draws for the row.
    """
    v = VIEWS[view]
    completion = cost_text(row) if v.target == "cost" else row.get(v.target)
    if completion is None:
        return None
    index = template if template is not None else template_index(seed, view, row["id"])
    head = instruction(v, index, row)
    prompt = head + row[v.source]
    counts = {
        "prompt_tokens": count_tokens(head) + _tokens(row, v.source),
        "completion_tokens": count_tokens(completion) if v.target == "cost" else _tokens(row, v.target),
    }
    out: dict[str, Any] = {"id": row["id"], "category": row["category"], "template": index}
    if v.messages:
        out["messages"] = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    else:
        out |= {"prompt": prompt, "completion": completion}
    return out | counts


def view_tokens(row: Mapping[str, Any], seed: int) -> dict[str, int]:
    """Tokens (prompt + completion) of each view row the pair has."""
    out = {}
    for name in VIEWS:
        r = view_row(row, name, seed)
        if r is not None:
            out[name] = r["prompt_tokens"] + r["completion_tokens"]
    return out


def longest_tokens(row: Mapping[str, Any], seed: int) -> int:
    """Tokens of the pair's longest view row, or of its two texts if longer: what a budget must hold."""
    return max([row["python_tokens"] + row["stablehlo_tokens"], *view_tokens(row, seed).values()])


def fits(row: Mapping[str, Any], seed: int, max_tokens: int | None) -> bool:
    """Whether every view row of the pair (and the pair's two texts) fits in ``max_tokens``."""
    return max_tokens is None or longest_tokens(row, seed) <= max_tokens
