"""Decoding: the inference code of a composed decoder-only language model over a KV cache.

A ``DecodingSpec`` is a model (the grammar's ``Architecture`` of a language model: its
attention, MLP, norms and their placement, positions, local/global pattern and layer layout)
and a task (``Decoding``): a single-token decode step, the prefill of a prompt, a generation
loop, or a sampler alone. The model's blocks are the transformer's (``compose.blocks``) made
cache-aware: each attention layer writes its keys and values into its part of the cache
``(batch, max_seq_len, num_kv_heads, head_dim)`` (stacked over layers under ``lax.scan``) at the
current positions and attends over the cache, masked to positions at or before the query's
(and to the window on local layers). One emitter writes it in plain JAX, Flax NNX or Equinox.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from dataclasses import dataclass

from ..base import BATCH_SIZES, SEQ_LENS, VOCAB_SIZES, ModelProgram, batch_size, config_class, pick
from . import grammar, sampling
from .blocks import LAYER_NORM, RMS_NORM, ROPE_APPLY, attend_helper, attention_block, layer_block
from .emit import Block, Dense, Emitter, Idioms, Norm, Param, Stack, _split_call
from .render import all_blocks, module_doc, module_imports
from .spec import Architecture, Attention, ModelSpec, Sizes

CATEGORY = "decoding"
VARIANTS = ("decode_step", "prefill", "generate", "sample")
LOOPS = ("fori_loop", "while_loop", "scan")
ENTRY_NAMES = {
    "decode_step": ("decode_step", "decode_next_token", "serve_step"),
    "prefill": ("prefill", "prefill_cache", "encode_prompt"),
    "generate": ("generate", "generate_tokens", "complete_prompt"),
    "sample": ("sample_next_token", "choose_next_token", "sample_from_logits"),
}


@dataclass(frozen=True)
class Decoding:
    """What a decoding program does with its model (fields its variant has no use for stay neutral).

    ``cache_update``: the cache written at a scalar ``cache_index`` by ``lax.dynamic_update_slice``
    or at per-row ``positions`` by ``.at[rows, positions].set`` (continuous batching). ``sampler``:
    how a token is chosen (``""``: the program returns logits); ``logprobs``: the chosen token's
    log-probability is returned too. ``loop``/``prompt``: a generation loop and whether it
    prefills the prompt in one pass or feeds it token by token; ``key_schedule``: a key carried
    and split per step, or folded with the step. ``ragged``: a prefill of right-padded prompts
    reads each row's last token; ``allocates``: the prefill makes its cache.
    """

    variant: str
    cache_update: str = ""
    sampler: str = ""
    repetition_penalty: bool = False
    frequency_penalty: bool = False  # presence and frequency penalties from token counts
    logprobs: bool = False
    loop: str = ""
    prompt: str = ""
    key_schedule: str = ""
    ragged: bool = False
    allocates: bool = False

    @property
    def keyed(self) -> bool:
        return self.sampler not in ("", "greedy")


@dataclass(frozen=True)
class DecodeSizes:
    """The batch, cache and prompt lengths and the sampler's constants (0 where unused)."""

    batch_size: int
    max_seq_len: int = 0
    prompt_len: int = 0
    vocab_size: int = 0  # a sampling program's (a model's is in its ``Sizes``)
    top_k: int = 0
    temperature: float = 0.0
    top_p: float = 0.0
    min_p: float = 0.0
    repetition_penalty: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class DecodingSpec:
    """A decoding program: its task, its model (``None`` for a sampler alone) and how it is written."""

    style: str
    task: Decoding
    sizes: DecodeSizes
    dtype: str
    function_name: str
    config_name: str
    arch: Architecture | None = None
    model_sizes: Sizes | None = None
    library_layers: bool = False
    einsum: bool = False
    model_name: str = ""
    category: str = CATEGORY

    @property
    def model(self) -> ModelSpec:
        return ModelSpec(
            self.category,
            self.style,
            self.arch,
            self.model_sizes,
            self.dtype,
            self.library_layers,
            self.einsum,
            self.function_name,
            self.config_name,
            self.model_name,
        )

    def structure(self) -> str:
        """What the program computes (its task and architecture), without sizes, names or idioms."""
        return f"{self.category}\n{self.task!r}\n{self.arch!r}"

    def digest(self) -> bytes:
        """A hash of every choice: a program's shard follows from it."""
        return hashlib.sha256(repr(self).encode()).digest()


# --- the grammar ----------------------------------------------------------------------------


def _weighted(rng: random.Random, options: dict[str, float]) -> str:
    return rng.choices(list(options), weights=list(options.values()))[0]


def _sampler_sizes(rng: random.Random, task: Decoding) -> dict:
    s = task.sampler
    return {
        "top_k": pick(rng, (10, 20, 40, 50, 64, 100)) if s in ("top_k", "top_k_mask") else 0,
        "temperature": pick(rng, (0.6, 0.7, 0.8, 1.0)) if task.keyed else 0.0,
        "top_p": pick(rng, (0.8, 0.9, 0.95)) if s == "top_p" else 0.0,
        "min_p": pick(rng, (0.05, 0.1)) if s == "min_p" else 0.0,
        "repetition_penalty": pick(rng, (1.1, 1.2, 1.3)) if task.repetition_penalty else 0.0,
        "presence_penalty": pick(rng, (0.1, 0.5, 1.0)) if task.frequency_penalty else 0.0,
        "frequency_penalty": pick(rng, (0.1, 0.2, 0.5)) if task.frequency_penalty else 0.0,
    }


def sample_task(rng: random.Random) -> Decoding:
    variant = _weighted(rng, {"decode_step": 0.36, "prefill": 0.18, "generate": 0.36, "sample": 0.1})
    sampler = pick(rng, sampling.SAMPLERS)
    if variant == "sample":
        penalty = rng.random() < 0.4
        frequency = rng.random() < 0.4
        if sampler == "greedy" and not (penalty or frequency):  # a bare argmax is no program of its own
            penalty, frequency = pick(rng, ((True, False), (False, True), (True, True)))
        return Decoding(
            variant,
            sampler=sampler,
            repetition_penalty=penalty,
            frequency_penalty=frequency,
            logprobs=rng.random() < 0.5,
        )
    # Per-row positions write one token per row: IREE 3.13 miscompiles a prompt's scatter into the
    # cache (outputs that change from run to run, "circular dependency" errors), so a prompt is
    # always written at a scalar index and generation with per-row positions feeds it stepwise.
    single_token = variant == "decode_step" or variant == "generate"
    update = "at_set" if single_token and rng.random() < 0.35 else "dynamic_update_slice"
    if variant in ("decode_step", "prefill"):
        returns = _weighted(rng, {"logits": 0.4, "tokens": 0.4, "tokens_logprobs": 0.2})
        return Decoding(
            variant,
            cache_update=update,
            sampler="" if returns == "logits" else sampler,
            logprobs=returns == "tokens_logprobs",
            ragged=variant == "prefill" and rng.random() < 0.4,
            allocates=variant == "prefill" and rng.random() < 0.4,
        )
    loop = pick(rng, LOOPS[:2] if update == "at_set" else LOOPS)
    prompt = "prefill" if loop == "scan" else "stepwise" if update == "at_set" else pick(rng, ("prefill", "stepwise"))
    schedule = ""
    if sampler != "greedy":
        # IREE's runtime fails on fori/while loops after a prefill with a loop-invariant key
        # folded in per step ("indirect buffer reference slot 0 is out of range"): those split
        schedule = "split" if prompt == "prefill" and loop != "scan" else pick(rng, ("split", "fold_in"))
    return Decoding(
        variant,
        cache_update=update,
        sampler=sampler,
        repetition_penalty=rng.random() < 0.3,
        frequency_penalty=rng.random() < 0.2,
        loop=loop,
        prompt=prompt,
        key_schedule=schedule,
    )


def sample_architecture(rng: random.Random, style: str, dtype: str, task: Decoding) -> Architecture:
    pattern: tuple[str, ...] = ("global",)
    if rng.random() < 0.35:
        pattern = pick(rng, grammar.PATTERNS) if rng.random() < 0.6 else ("local",)
    hybrid = len(set(pattern)) > 1
    layer = grammar.sample_layer(rng, "lm", hybrid)
    if layer.attention.impl == "dpa" and (dtype != "float32" or style == "equinox"):
        # in bfloat16 it lowers to a dot_general with an `algorithm` IREE refuses; its mask is 4-D
        layer = dataclasses.replace(layer, attention=dataclasses.replace(layer.attention, impl="grouped"))
    tied = rng.random() < 0.4
    return Architecture(
        task="lm",
        layer=layer,
        pattern=pattern,
        # IREE 3.13 miscompiles a prefill under lax.scan that samples its token (the tokens
        # differ from XLA's while the logits agree): such a prefill keeps its layers unrolled
        layout="scan" if rng.random() < 0.45 and not (task.variant == "prefill" and task.keyed) else "unrolled",
        learned_positions=layer.attention.rope == "none",
        scale_embeddings=rng.random() < (0.6 if tied else 0.15),
        tied=tied,
        final_softcap=rng.random() < 0.2,
    )


def sample(rng: random.Random) -> DecodingSpec:
    """Draws one decoding program."""
    task = sample_task(rng)
    name = pick(rng, ENTRY_NAMES[task.variant])
    if task.variant == "sample":
        sizes = DecodeSizes(
            batch_size=pick(rng, BATCH_SIZES),
            prompt_len=pick(rng, SEQ_LENS) if task.repetition_penalty or task.frequency_penalty else 0,
            vocab_size=pick(rng, VOCAB_SIZES),
            **_sampler_sizes(rng, task),
        )
        dtype = pick(rng, ("bfloat16", "float32"))
        return DecodingSpec("jax", task, sizes, dtype, name, pick(rng, ("SamplingConfig", "SamplerConfig")))
    style = _weighted(rng, {"jax": 0.4, "flax_nnx": 0.3, "equinox": 0.3})
    # Programs that emit token ids compute in float32: an argmax over bfloat16 logits flips with
    # one rounding step, so their outputs would depend on the compiler.
    dtype = "float32" if task.sampler or rng.random() < 0.3 else "bfloat16"
    arch = sample_architecture(rng, style, dtype, task)
    model = grammar.sample_sizes(rng, arch)
    max_seq_len = pick(rng, SEQ_LENS[1:])
    windows = [w for w in grammar.WINDOW_SIZES if w < max_seq_len]
    layers = model.num_layers
    if not arch.hybrid and arch.layout == "unrolled":
        layers = rng.randint(1, 4)
    model = dataclasses.replace(
        model, batch_size=0, seq_len=0, num_layers=layers, window_size=pick(rng, windows) if arch.local else 0
    )
    prompted = task.variant in ("prefill", "generate")
    sizes = DecodeSizes(
        batch_size=batch_size(rng, seq=max_seq_len),
        max_seq_len=max_seq_len,
        prompt_len=pick(rng, [s for s in SEQ_LENS if s <= max_seq_len // 2]) if prompted else 0,
        **_sampler_sizes(rng, task),
    )
    library = style != "jax" and rng.random() < 0.5
    return DecodingSpec(
        style,
        task,
        sizes,
        dtype,
        name,
        pick(rng, ("DecoderConfig", "ModelConfig", "TransformerConfig", "LMConfig")),
        arch=arch,
        model_sizes=model,
        library_layers=library,
        einsum=not library and rng.random() < 0.4,
        model_name=pick(rng, ("Decoder", "Transformer", "LanguageModel")),
    )


# --- module-level helpers -----------------------------------------------------------------------

ROPE_AT = '''def rope_at(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """Sine and cosine of rotary embeddings at positions (..., seq), each (..., seq, head_dim // 2)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.sin(angles), jnp.cos(angles)
'''

CACHE_MASK = '''def cache_mask(positions: jax.Array, max_seq_len: int) -> jax.Array:
    """(..., seq, max_seq_len) booleans: a query at position p sees the cached keys at positions <= p."""
    return jnp.arange(max_seq_len) <= positions[..., None]
'''

SLIDING_CACHE_MASK = '''def sliding_cache_mask(positions: jax.Array, max_seq_len: int, window_size: int) -> jax.Array:
    """(..., seq, max_seq_len) booleans: a query at position p sees the window_size cached keys up to p."""
    offsets = positions[..., None] - jnp.arange(max_seq_len)
    return (offsets >= 0) & (offsets < window_size)
'''

# How a layer writes its new keys or values into its cache: (update, style) -> helper. Batched
# code writes every row; an Equinox module sees one sequence (its caller vmaps over the batch).
WRITE_CACHE = {
    (
        "dynamic_update_slice",
        "batched",
    ): "lax.dynamic_update_slice(cache, new.astype(cache.dtype), (0, cache_index, 0, 0))",
    ("dynamic_update_slice", "one"): "lax.dynamic_update_slice(cache, new.astype(cache.dtype), (cache_index, 0, 0))",
    ("at_set", "batched"): "cache.at[jnp.arange(cache.shape[0])[:, None], positions].set(new.astype(cache.dtype))",
    ("at_set", "one"): "cache.at[positions].set(new.astype(cache.dtype))",
}
WRITE_DOCS = {
    "dynamic_update_slice": "at cache_index (the same position in every row)",
    "at_set": "at each row's positions",
}


def _write_at(task: Decoding) -> str:
    return "cache_index" if task.cache_update == "dynamic_update_slice" else "positions"


def write_helper(task: Decoding, style: str) -> str:
    at = _write_at(task)
    shape = "(seq, num_kv_heads, head_dim)" if style == "equinox" else "(batch, seq, num_kv_heads, head_dim)"
    code = WRITE_CACHE[(task.cache_update, "one" if style == "equinox" else "batched")]
    return f'''def write_cache(cache: jax.Array, new: jax.Array, {at}: jax.Array) -> jax.Array:
    """The cache with new {shape} written {WRITE_DOCS[task.cache_update]}."""
    return {code}
'''


def cache_annotation(arch: Architecture) -> str:
    one = "dict[str, jax.Array]"
    if arch.hybrid:
        return f"list[{one}]" if arch.layout == "scan" else f"list[list[{one}]]"
    return one if arch.layout == "scan" else f"list[{one}]"


def init_cache_helper(arch: Architecture, config: str) -> str:
    """``Cache`` and ``init_cache(config)``: an empty cache per layer, stacked under ``lax.scan``."""
    count = "config.num_layer_groups" if arch.hybrid else "config.num_layers"
    stacked = arch.layout == "scan"
    shape = f"({count}, config.batch_size" if stacked else "(config.batch_size"
    layer = '{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}'
    if arch.hybrid:
        period = len(arch.pattern)
        value = (
            f"[{layer} for _ in range({period})]"
            if stacked
            else f"[[{layer} for _ in range({period})] for _ in range({count})]"
        )
    else:
        value = layer if stacked else f"[{layer} for _ in range({count})]"
    what = "layer of each group" if arch.hybrid else "layer"
    stack = f", stacked over the {'groups' if arch.hybrid else 'layers'} for lax.scan" if stacked else ""
    return f'''Cache = {cache_annotation(arch)}


def init_cache(config: {config}) -> Cache:
    """An empty KV cache: keys and values (batch, max_seq_len, num_kv_heads, head_dim) per {what}{stack}."""
    shape = {shape}, config.max_seq_len, config.num_kv_heads, config.head_dim)
    dtype = jnp.dtype(config.dtype)
    return {value}
'''


def attend_over_cache(attention: Attention) -> str:
    """``attend(q, k, v, mask[, config])`` with the mask already shaped for the scores."""
    if attention.impl != "dpa":
        return attend_helper(attention, local=False, hybrid=False)
    return '''def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention by jax.nn.dot_product_attention over the cache; k and v may have fewer heads than q."""
    mask = jnp.broadcast_to(mask, (q.shape[0], 1, q.shape[1], k.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=mask)
'''


def model_helpers(spec: DecodingSpec, hand_written_norms: bool) -> list[str]:
    arch, attention = spec.arch, spec.arch.layer.attention
    out = []
    if hand_written_norms:
        norms = {arch.layer.norm} | ({"rms"} if attention.qk_norm else set())
        out += [RMS_NORM] * ("rms" in norms) + [LAYER_NORM] * ("layer" in norms)
    if attention.rope != "none":
        out += [ROPE_AT, ROPE_APPLY[attention.rope].replace("[:, None, :]", "[..., None, :]")]
    if "global" in arch.pattern:
        out.append(CACHE_MASK)
    if arch.local:
        out.append(SLIDING_CACHE_MASK)
    out += [
        write_helper(spec.task, spec.style),
        attend_over_cache(attention),
        init_cache_helper(arch, spec.config_name),
    ]
    if spec.task.sampler:
        out += sampling.helpers(spec.task.sampler, spec.task.repetition_penalty, spec.task.frequency_penalty)
    return out


# --- blocks -----------------------------------------------------------------------------------

LAYER_CACHE = "dict[str, jax.Array]"


def cached_attention_block(attention: Attention, at: str) -> Block:
    """Self-attention over the layer's KV cache: this step's keys and values are written first."""
    plain = attention_block(attention, takes_mask=True, local=False)
    lines = [line for line in plain.body.splitlines() if line.startswith(("q", "k", "v")) or "apply_rope" in line]
    call = 'q, cache["k"], cache["v"], mask' + (", config" if attention.impl != "dpa" else "")
    lines += [
        f'cache = {{"k": write_cache(cache["k"], k, {at}), "v": write_cache(cache["v"], v, {at})}}',
        f"out = attend({call})",
        "return @o_proj(out.reshape(*x.shape[:-1], -1)), cache",
    ]
    args = ("x", "cache", *(("sin", "cos") if attention.rope != "none" else ()), "mask", at)
    update = "dynamic_update_slice" if at == "cache_index" else "at_set"
    doc = plain.doc.rstrip(".") + f", over a KV cache written {WRITE_DOCS[update]}."
    return dataclasses.replace(
        plain,
        doc=doc,
        args=args,
        body="\n".join(lines),
        returns=f"tuple[jax.Array, {LAYER_CACHE}]",
        arg_types=(("cache", LAYER_CACHE),),
    )


def cached_layer_block(arch: Architecture, at: str) -> Block:
    """The residual layer of ``arch`` (its norms, placement and MLP) around cached attention."""
    plain = layer_block(dataclasses.replace(arch, pattern=("global",)), "global")
    attention = cached_attention_block(arch.layer.attention, at)
    rope = ["sin", "cos"] if arch.layer.attention.rope != "none" else []
    lines = []
    for line in plain.body.splitlines():
        m = re.search(r"@attn\(", line)
        if m:  # the attention's output is read from a line of its own, which also returns the cache
            first = _first_arg(line[m.end() :])
            lines.append(f"attn_out, cache = @attn({', '.join([first, 'cache', *rope, 'mask', at])})")
            end = _split_call(line, m.end() - 1)[1]
            line = line[: m.start()] + "attn_out" + line[end:]
        lines.append("return x, cache" if line.strip() == "return x" else line)
    attention = dataclasses.replace(attention, name="attn")
    children = tuple(attention if getattr(c, "name", "") == "attn" else c for c in plain.children)
    return dataclasses.replace(
        plain,
        doc=plain.doc.replace("attention,", "attention over the KV cache,").replace(
            "attention and", "attention over the KV cache and"
        ),
        args=("x", "cache", *rope, "mask", at),
        body="\n".join(lines),
        children=children,
        returns=f"tuple[jax.Array, {LAYER_CACHE}]",
        arg_types=(("cache", LAYER_CACHE),),
    )


def _first_arg(rest: str) -> str:
    """The first argument of a call whose text after ``(`` is ``rest``."""
    depth = 0
    for i, ch in enumerate(rest):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return rest[:i]
            depth -= 1
        elif ch == "," and depth == 0:
            return rest[:i]
    raise ValueError(rest)


def _mask_names(arch: Architecture) -> list[str]:
    return [f"{k}_mask" for k in ("local", "global") if k in arch.pattern] if arch.hybrid else ["mask"]


def cached_group_block(arch: Architecture, at: str) -> Block:
    """A repeating group of a local/global pattern; each layer has its own cache and mask."""
    layer = cached_layer_block(arch, at)
    layer = dataclasses.replace(
        layer, doc=layer.doc.replace("over the KV cache", "over the KV cache under the mask it is given", 1)
    )
    rope = ["sin", "cos"] if arch.layer.attention.rope != "none" else []
    lines, children = [], []
    for i, kind in enumerate(arch.pattern):
        children.append(dataclasses.replace(layer, name=f"layer_{i}"))
        lines.append(f"x, cache_{i} = @layer_{i}({', '.join(['x', f'cache[{i}]', *rope, f'{kind}_mask', at])})")
    lines.append(f"return x, [{', '.join(f'cache_{i}' for i in range(len(arch.pattern)))}]")
    described = " and ".join(f"{arch.pattern.count(k)} {k}" for k in dict.fromkeys(arch.pattern))
    cache = f"list[{LAYER_CACHE}]"
    return Block(
        "LayerGroup",
        f"A repeating group of layers ({described}), each with its part of the cache.",
        ("x", "cache", *rope, *_mask_names(arch), at),
        "\n".join(lines),
        (),
        tuple(children),
        f"tuple[jax.Array, {cache}]",
        arg_types=(("cache", cache),),
    )


def cached_model_block(spec: DecodingSpec) -> Block:
    """The language model on tokens placed in the cache: logits of each row's last token, and the cache."""
    arch, task = spec.arch, spec.task
    at = _write_at(task)
    layer = cached_group_block(arch, at) if arch.hybrid else cached_layer_block(arch, at)
    stack = Stack(
        "groups" if arch.hybrid else "layers",
        layer,
        "config.num_layer_groups" if arch.hybrid else "config.num_layers",
        arch.layout == "scan",
    )
    params = [Param("embed", ("config.vocab_size", "config.d_model"), "normal", "", ("vocab", "embed"))]
    lines = []
    if at == "cache_index":
        lines.append("positions = cache_index + jnp.arange(tokens.shape[-1])")
    lines.append("h = jnp.take($embed, tokens, axis=0)")
    if arch.scale_embeddings:
        lines.append("h = h * jnp.asarray(config.d_model**0.5, h.dtype)")
    if arch.learned_positions:
        params.append(
            Param("pos_embed", ("config.max_seq_len", "config.d_model"), "normal", "config.d_model", (None, "embed"))
        )
        lines.append("h = h + jnp.take($pos_embed, positions, axis=0)")
    rope = ["sin", "cos"] if arch.layer.attention.rope != "none" else []
    if rope:
        lines.append("sin, cos = rope_at(positions, config.head_dim, config.rope_theta)")
    # the mask is shaped for the scores: (..., kv_heads, groups, seq, keys) or (..., heads, seq, keys)
    expand = "[..., None, None, :, :]" if arch.layer.attention.impl == "grouped" else "[..., None, :, :]"
    build = {
        "global": "cache_mask(positions, config.max_seq_len)",
        "local": "sliding_cache_mask(positions, config.max_seq_len, config.window_size)",
    }
    kinds = [k for k in ("local", "global") if k in arch.pattern]
    for name, kind in zip(_mask_names(arch), kinds):
        lines.append(f"{name} = {build[kind]}{expand}")
    lines.append(f"h, cache = @{stack.name}*({', '.join(['h', 'cache', *rope, *_mask_names(arch), at])})")
    if task.ragged:
        lines.append("h = jnp.take_along_axis(h, last_index[..., None, None], axis=-2)[..., 0, :]")
    else:
        lines.append("h = h[..., -1, :]")
    lines.append("h = @final_norm(h)")
    children: list = [stack, Norm("final_norm", arch.layer.norm, "config.d_model", rank=1)]
    if arch.tied:
        lines.append('logits = jnp.einsum("...d,vd->...v", h, $embed, preferred_element_type=jnp.float32)')
    else:
        children.append(Dense("lm_head", "config.d_model", "config.vocab_size", ("embed", "vocab"), rank=1))
        lines.append("logits = @lm_head(h).astype(jnp.float32)")
    if arch.final_softcap:
        lines.append("logits = config.final_logit_softcap * jnp.tanh(logits / config.final_logit_softcap)")
    lines.append("return logits, cache")
    last = "the last token's" if not task.ragged else "each row's last prompt token's"
    doc = (
        f"Decoder-only language model over a KV cache: token embedding, {'groups of layers' if arch.hybrid else 'layers'}"
        f"{' under lax.scan' if arch.layout == 'scan' else ''}, a final norm and "
        f"{'tied unembedding' if arch.tied else 'an output projection'} of {last} hidden state (float32 logits)."
    )
    args = ("tokens", "cache", at, *(["last_index"] if task.ragged else []))
    return Block(
        spec.model_name,
        doc,
        args,
        "\n".join(lines),
        tuple(params),
        tuple(children),
        "tuple[jax.Array, Cache]",
        arg_types=(("cache", "Cache"),),
    )


# --- the program ------------------------------------------------------------------------------


def _config(spec: DecodingSpec) -> str:
    task, d = spec.task, spec.sizes
    fields: list[tuple[str, str, object]] = []
    if spec.arch is None:
        fields += [("vocab_size", "int", d.vocab_size), ("batch_size", "int", d.batch_size)]
        if d.prompt_len:
            fields.append(("prompt_len", "int", d.prompt_len))
    else:
        arch, s = spec.arch, spec.model_sizes
        fields += [("vocab_size", "int", s.vocab_size), ("d_model", "int", s.d_model)]
        if arch.hybrid:
            fields.append(("num_layer_groups", "int", s.num_layers // len(arch.pattern)))
        else:
            fields.append(("num_layers", "int", s.num_layers))
        fields += [
            ("num_heads", "int", s.num_heads),
            ("num_kv_heads", "int", s.num_kv_heads),
            ("head_dim", "int", s.head_dim),
            ("d_ff", "int", s.d_ff),
        ]
        if arch.local:
            fields.append(("window_size", "int", s.window_size))
        fields += [("batch_size", "int", d.batch_size), ("max_seq_len", "int", d.max_seq_len)]
        if d.prompt_len:
            fields.append(("prompt_len", "int", d.prompt_len))
        if arch.layer.attention.rope != "none":
            fields.append(("rope_theta", "float", s.rope_theta))
        fields.append(("norm_eps", "float", s.norm_eps))
        if arch.layer.attention.softcap:
            fields.append(("attn_logit_softcap", "float", s.attn_softcap))
        if arch.final_softcap:
            fields.append(("final_logit_softcap", "float", s.final_softcap))
    if d.top_k:
        fields.append(("top_k", "int", d.top_k))
    for name in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
        if getattr(d, name):
            fields.append((name, "float", getattr(d, name)))
    fields.append(("dtype", "str", spec.dtype))
    if spec.arch is None:
        what = "choosing the next token from a batch of logits"
    else:
        what = "a decoder-only language model, its KV cache" + (" and its sampler" if task.sampler else "")
    return config_class(spec.config_name, fields, f"Sizes and constants of {what}.")


class _Writer:
    """The style-dependent parts of an entry function: its model arguments, how it calls the model
    and how ``example_args`` builds the model's abstract values."""

    def __init__(self, spec: DecodingSpec, top: Block):
        self.spec, self.top = spec, top
        style = spec.style
        if style == "jax":
            self.params = ["params: dict"]
            self.prologue: list[str] = []
            self.abstract = ["params = jax.eval_shape(lambda key: init_params(key, config), jax.random.key(0))"]
            self.returned = ["params"]
        elif style == "flax_nnx":
            self.params = ["graphdef: nnx.GraphDef", "state: nnx.State"]
            self.prologue = ["model = nnx.merge(graphdef, state)"]
            create = f"lambda: {top.cls}(config, rngs=nnx.Rngs(0))"
            self.abstract = [f"graphdef, state = nnx.split(nnx.eval_shape({create}))"]
            self.returned = ["graphdef", "state"]
        else:
            self.params = [f"params: {top.cls}", f"static: {top.cls}"]
            cache_axis = 1 if spec.arch.layout == "scan" else 0
            at = "None" if spec.task.cache_update == "dynamic_update_slice" else "0"
            axes = ", ".join(["0", str(cache_axis), at, *(["0"] if spec.task.ragged else [])])
            self.prologue = [
                "model = eqx.combine(params, static)",
                "# the model reads one sequence: mapped over the batch (the cache's batch axis "
                + ("follows its layer axis)" if cache_axis else "leads)"),
                f"forward = jax.vmap(model, in_axes=({axes}), out_axes=(0, {cache_axis}))",
            ]
            self.abstract = [
                f"model = eqx.filter_eval_shape({top.cls}, config, jax.random.key(0))",
                "params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))",
            ]
            self.returned = ["params", "static"]

    def call(self, *args: str) -> str:
        joined = ", ".join(args)
        return {
            "jax": f"{self.top.fn}(params, {joined}, config)",
            "flax_nnx": f"model({joined})",
            "equinox": f"forward({joined})",
        }[self.spec.style]


def _key_lines(task: Decoding, step: str) -> list[str]:
    if not task.keyed:
        return []
    if task.key_schedule == "fold_in":
        return [f"step_key = jax.random.fold_in(key, {step})"]
    return ["key, step_key = jax.random.split(key)"]


def _next_token(task: Decoding, key: str) -> list[str]:
    """Chooses ``next_token`` from ``logits`` (and its log-probability)."""
    lines = ["logprobs = jax.nn.log_softmax(logits, axis=-1)"] if task.logprobs else []
    lines += sampling.choose(task.sampler, task.repetition_penalty, key, task.frequency_penalty)
    return lines + (sampling.logprob_lines() if task.logprobs else [])


def _step_entry(spec: DecodingSpec, w: _Writer) -> tuple[list[str], list[str], str, str]:
    """A decode step or a prefill: (arguments, body, return annotation, docstring)."""
    task = spec.task
    at = _write_at(task)
    lines: list[str] = []
    args: list[str] = []
    if task.variant == "decode_step":
        args += ["cache: Cache", "tokens: jax.Array", f"{at}: jax.Array"]
        model_args = ["tokens[:, None]", "cache", "cache_index" if at == "cache_index" else "positions[:, None]"]
        what = f"One decoding step: feeds tokens (batch,) {WRITE_DOCS[task.cache_update]}"
    else:
        if not task.allocates:
            args.append("cache: Cache")
        args.append("prompt: jax.Array")
        if task.allocates:
            lines.append("cache = init_cache(config)")
        model_args = ["prompt", "cache", "0"]  # a prompt is written at a scalar index (``sample_task``)
        if task.ragged:
            args.append("prompt_lengths: jax.Array")
            lines.append("last_index = jnp.clip(prompt_lengths - 1, 0, config.prompt_len - 1)")
            model_args.append("last_index")
        prompts = "right-padded prompts (batch, prompt_len) of prompt_lengths tokens" if task.ragged else "the prompts"
        what = f"Prefills {'a new' if task.allocates else 'the'} KV cache with {prompts} in one pass"
    if task.keyed:
        args.append("key: jax.Array")
    lines.append(f"logits, cache = {w.call(*model_args)}")
    if not task.sampler:
        lines.append("return logits, cache")
        doc = f"{what}.\n\nReturns the next-token logits (batch, vocab) in float32 and the updated cache."
        return args, lines, "tuple[jax.Array, Cache]", doc
    lines += _next_token(task, "key")
    outputs = ["next_token", *(["token_logprob"] if task.logprobs else [])]
    lines.append(f"return {', '.join(outputs)}, cache")
    chosen = sampling.SAMPLER_DOCS[task.sampler]
    also = " and their log-probabilities" if task.logprobs else ""
    doc = f"{what}.\n\nReturns the next tokens (batch,) by {chosen}{also}, and the updated cache."
    return args, lines, f"tuple[{', '.join(['jax.Array'] * len(outputs))}, Cache]", doc


def _generate_entry(spec: DecodingSpec, w: _Writer) -> tuple[list[str], list[str], str, str]:
    task = spec.task
    at = _write_at(task)
    penalty, prefill = task.repetition_penalty, task.prompt == "prefill"
    args = ["prompt: jax.Array", *(["eos_id: jax.Array"] if task.loop == "while_loop" else [])]
    args += ["key: jax.Array"] if task.keyed else []

    def position(i: str) -> str:
        return i if at == "cache_index" else f"jnp.full((config.batch_size, 1), {i})"

    def chosen(i: str) -> list[str]:
        lines = _key_lines(task, i) + sampling.choose(task.sampler, penalty, "step_key", frequency)
        if penalty:
            lines.append("seen = seen.at[jnp.arange(config.batch_size), next_token].set(True)")
        if frequency:
            lines.append("counts = counts.at[jnp.arange(config.batch_size), next_token].add(1.0)")
        return lines

    frequency = task.frequency_penalty
    carry = [*(["seen"] if penalty else []), *(["counts"] if frequency else [])]
    carry += ["key"] if task.key_schedule == "split" else []
    lines = ["cache = init_cache(config)"]
    if penalty:
        lines.append("seen = seen_tokens(prompt, config.vocab_size)")
    if frequency:
        lines.append("counts = token_counts(prompt, config.vocab_size)")
    if task.loop != "scan":
        lines.append(
            "tokens = jnp.zeros((config.batch_size, config.max_seq_len), jnp.int32).at[:, : config.prompt_len].set(prompt)"
        )
    if prefill:
        lines.append(f"logits, cache = {w.call('prompt', 'cache', '0')}")
        lines += chosen("config.prompt_len - 1")
        if task.loop != "scan":
            lines.append("tokens = tokens.at[:, config.prompt_len].set(next_token)")
    if task.loop == "scan":
        state = ["next_token", "cache", *carry]
        step = [
            f"{', '.join(['token', 'cache', *carry])} = carry",
            f"logits, cache = {w.call('token[:, None]', 'cache', position('i'))}",
            *chosen("i"),
            f"return ({', '.join(state)}), next_token",
        ]
        lines += ["", "def step(carry, i):", *("    " + s for s in step), ""]
        lines += [
            "steps = jnp.arange(config.prompt_len, config.max_seq_len - 1)",
            f"_, generated = lax.scan(step, ({', '.join(state)}), steps)",
            "return jnp.concatenate([prompt, next_token[:, None], generated.T], axis=1)",
        ]
    else:
        state = ["tokens", "cache", *carry]
        body = [
            f"logits, cache = {w.call('lax.dynamic_slice_in_dim(tokens, i, 1, axis=1)', 'cache', position('i'))}",
            *chosen("i"),
        ]
        if not prefill:  # the prompt's own tokens are kept until the last of them is fed
            body.append("next_token = jnp.where(i + 1 < config.prompt_len, tokens[:, i + 1], next_token)")
        start = "config.prompt_len" if prefill else "0"
        if task.loop == "fori_loop":
            body.append("tokens = tokens.at[:, i + 1].set(next_token)")
            step = [f"{', '.join(state)} = carry", *body, f"return {', '.join(state)}"]
            lines += ["", "def step(i, carry):", *("    " + s for s in step), ""]
            lines.append(f"tokens = lax.fori_loop({start}, config.max_seq_len - 1, step, ({', '.join(state)}))[0]")
        else:  # until every row has emitted eos_id or the cache is full
            state.insert(2, "done")
            finished = "next_token == eos_id" if prefill else "(next_token == eos_id) & (i + 1 >= config.prompt_len)"
            body += [
                "# finished rows keep emitting eos_id",
                "next_token = jnp.where(done, eos_id, next_token)",
                f"done = done | ({finished})",
                "tokens = tokens.at[:, i + 1].set(next_token)",
            ]
            step = [f"{', '.join(['i', *state])} = carry", *body, f"return {', '.join(['i + 1', *state])}"]
            done = "next_token == eos_id" if prefill else "jnp.zeros((config.batch_size,), jnp.bool_)"
            lines += [
                f"done = {done}",
                "",
                "def keep_going(carry):",
                "    i, done = carry[0], carry[3]",
                "    return (i < config.max_seq_len - 1) & ~jnp.all(done)",
                "",
                "def step(carry):",
                *("    " + s for s in step),
                "",
                f"init = ({', '.join([f'jnp.asarray({start}, jnp.int32)', *state])})",
                "tokens = lax.while_loop(keep_going, step, init)[1]",
            ]
        lines.append("return tokens")
    how = "prefills the prompt (batch, prompt_len) in one pass" if prefill else "feeds the prompt token by token"
    loop = {"fori_loop": "lax.fori_loop", "while_loop": "lax.while_loop", "scan": "lax.scan"}[task.loop]
    penalties = [
        *(["a repetition penalty"] if penalty else []),
        *(["presence and frequency penalties"] if frequency else []),
    ]
    penalized = f" with {' and '.join(penalties)}" if penalties else ""
    until = "every row has emitted eos_id or the cache is full" if task.loop == "while_loop" else "the cache is full"
    doc = (
        f"Generates until {until}: {how}, then decodes by {sampling.SAMPLER_DOCS[task.sampler]}"
        f"{penalized} under {loop}.\n\nReturns the tokens (batch, max_seq_len), prompt included."
    )
    return args, lines, "jax.Array", doc


def _example(spec: DecodingSpec, args: list[str], w: _Writer | None, uses_config: bool) -> str:
    lines = [f"config = {spec.config_name}()"]
    if w is not None:
        lines += w.abstract
    shapes = {
        "cache": "jax.eval_shape(lambda: init_cache(config))",
        "tokens": "jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)",
        "cache_index": "jax.ShapeDtypeStruct((), jnp.int32)",
        "positions": "jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)",
        "prompt": "jax.ShapeDtypeStruct((config.batch_size, config.prompt_len), jnp.int32)",
        "prompt_lengths": "jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)",
        "key": "jax.eval_shape(jax.random.key, 0)",
        "eos_id": "jax.ShapeDtypeStruct((), jnp.int32)",
        "logits": "jax.ShapeDtypeStruct((config.batch_size, config.vocab_size), jnp.dtype(config.dtype))",
        "prev_tokens": "jax.ShapeDtypeStruct((config.batch_size, config.prompt_len), jnp.int32)",
    }
    names = [a.split(":")[0] for a in args]
    lines += [f"{n} = {shapes[n]}" for n in names]
    returned = [*(w.returned if w is not None else []), *names, *(["config"] if uses_config else [])]
    body = "\n".join("    " + line for line in lines)
    return f"def example_args():\n{body}\n    return {', '.join(returned)}\n"


def _sample_entry(spec: DecodingSpec) -> tuple[list[str], list[str], str, str]:
    task = spec.task
    args = ["logits: jax.Array", *(["key: jax.Array"] if task.keyed else [])]
    lines = ["logits = logits.astype(jnp.float32)"]
    if task.repetition_penalty or task.frequency_penalty:
        args.append("prev_tokens: jax.Array")
    if task.repetition_penalty:
        lines.append("seen = seen_tokens(prev_tokens, config.vocab_size)")
    if task.frequency_penalty:
        lines.append("counts = token_counts(prev_tokens, config.vocab_size)")
    lines += _next_token(task, "key")
    outputs = ["next_token", *(["token_logprob"] if task.logprobs else [])]
    lines.append(f"return {', '.join(outputs)}")
    penalized = task.repetition_penalty or task.frequency_penalty
    penalty = "; the tokens of prev_tokens (batch, prompt_len) are penalized" if penalized else ""
    also = " and their log-probabilities under the unpenalized logits" if task.logprobs else ""
    doc = (
        f"Chooses the next token of each row of logits (batch, vocab) by {sampling.SAMPLER_DOCS[task.sampler]}"
        f"{penalty}.\n\nReturns the tokens (batch,){also}."
    )
    returns = "jax.Array" if len(outputs) == 1 else f"tuple[{', '.join(['jax.Array'] * len(outputs))}]"
    return args, lines, returns, doc


VARIANT_DOCS = {
    "decode_step": "A single-token decode step over a KV cache",
    "prefill": "The prefill of a prompt into a KV cache",
    "generate": "Autoregressive generation over a KV cache",
}


def render(spec: DecodingSpec) -> ModelProgram:
    """The program ``spec`` names: one self-contained module. Draws nothing."""
    parts, w = [], None
    if spec.arch is None:
        parts += sampling.helpers(spec.task.sampler, spec.task.repetition_penalty, spec.task.frequency_penalty)
        args, lines, returns, doc = _sample_entry(spec)
        header = f'"""Choosing the next token from a language model\'s logits by {sampling.SAMPLER_DOCS[spec.task.sampler]}."""\n'
    else:
        model = spec.model
        emitter = Emitter(spec.style, Idioms(spec.library_layers, spec.einsum), spec.config_name)
        top = cached_model_block(spec)
        blocks = all_blocks(top)
        hand_written = not emitter.library and any(isinstance(c, Norm) for b in blocks for c in b.children)
        parts += model_helpers(spec, hand_written)
        for block in blocks:
            text = emitter.emit(block)
            if block is top and spec.style == "jax":
                text = text.replace(f"def init_{block.fn}(", "def init_params(", 1)
            parts.append(text)
        w = _Writer(spec, top)
        entry = _step_entry if spec.task.variant in ("decode_step", "prefill") else _generate_entry
        args, lines, returns, doc = entry(spec, w)
        lines = w.prologue + lines
        header = module_doc(model).replace(
            "A decoder-only language model", VARIANT_DOCS[spec.task.variant] + " of a decoder-only language model", 1
        )
    uses_config = "config" in "\n".join(lines)
    signature = ", ".join([*(w.params if w else []), *args, *([f"config: {spec.config_name}"] if uses_config else [])])
    summary, _, rest = doc.partition("\n\n")
    docstring = f'    """{summary}\n\n    {rest}\n    """' if rest else f'    """{summary}"""'
    body = "\n".join(("    " + line) if line else "" for line in lines)
    parts.append(f"def {spec.function_name}({signature}) -> {returns}:\n{docstring}\n{body}\n")
    parts.append(_example(spec, args, w, uses_config))
    text = "\n\n".join(p.rstrip("\n") + "\n" for p in [_config(spec), *parts])
    source = header + "\n" + module_imports(text, spec.style) + "\n\n" + text
    transforms = [t for t, needle in TRANSFORMS if needle in source]
    return ModelProgram(CATEGORY, spec.style, spec.function_name, source, tuple(transforms))


TRANSFORMS = (
    ("fori_loop", "lax.fori_loop("),
    ("while_loop", "lax.while_loop("),
    ("scan", "lax.scan("),
    ("vmap", "jax.vmap("),
)
