"""Names a JAX engineer would write, and the docstrings of the functions that have one.

A function is named for what it returns: the verb comes from the op that computes its last
value (``NAME_VERBS`` by the op's result hint, else the category's verbs), the noun from its
first argument's role. Arguments are named for the role their type suggests (``mask`` for a
boolean array, ``labels`` or ``tokens`` for integer vectors, ``key`` for a PRNG key,
``features`` or ``logits`` for a float matrix). Tables and a seeded ``random.Random``; no JAX.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from functools import cache

from .ops import OPS_BY_NAME
from .types import TensorType

# The old generator's filler for one-op names (``abs_fn``): still recognised as op naming.
FILLER = "fn"

# verb -> (result hints of ops whose result the verb describes, nouns it pairs with by
# preference, a docstring summary with {args} for the argument list)
_VERBS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "normalize": (
        ("normed", "unit", "probs", "logp", "lse", "centered", "scaled", "smooth"),
        (),
        "Normalizes values computed from {args}.",
    ),
    "project": (
        ("dots", "bmm", "proj", "gram", "contr", "hidden", "emb", "attn", "block", "dp", "feats"),
        (),
        "Projects {args} through a matrix product.",
    ),
    "summarize": (
        ("total", "totals", "avg", "reduced", "peak", "var", "sd", "nrm", "tr", "tr_sum", "counts", "best", "lead"),
        ("statistics", "scores"),
        "Reduces {args} to summary values.",
    ),
    "transform": (
        ("act", "gate", "e", "ex", "lg", "th", "t", "c", "s", "er", "ang", "bessel", "psi", "psi1", "zeta", "lgam"),
        (),
        "Applies elementwise transforms to {args}.",
    ),
    "rescale": (
        ("rt", "inv_rt", "sq", "cube", "pw", "power", "poly", "prod", "quot", "ratio", "diff", "neg", "mag", "mix"),
        (),
        "Rescales and combines {args} arithmetically.",
    ),
    "mask": (
        (
            "mask",
            "masked",
            "sel",
            "choice",
            "clamped",
            "clipped",
            "hi",
            "lo",
            "fenced",
            "flag",
            "ok",
            "either",
            "both",
            "inf_mask",
            "inv_mask",
            "diff_mask",
            "branch",
            "sgn",
        ),
        (),
        "Masks and selects among values computed from {args}.",
    ),
    "gather": (
        ("gathered", "taken", "picked", "idx", "onehot", "part"),
        ("rows", "entries"),
        "Gathers entries of {args}.",
    ),
    "update": (("updated", "placed", "patched", "w_new", "params"), (), "Computes updated values from {args}."),
    "rearrange": (
        (
            "flat",
            "tiled",
            "rep",
            "cat",
            "stk",
            "padded",
            "transposed",
            "rolled",
            "rev",
            "shifted",
            "bc",
            "rows",
            "cols",
            "window",
            "grid",
            "diag",
            "lower",
            "upper",
            "ones",
            "seq",
        ),
        (),
        "Rearranges {args} into a new layout.",
    ),
    "solve": (
        ("sol", "inv", "pinv", "chol", "lu", "q", "r_factor", "evals", "evecs", "sv", "det", "logdet", "expm", "u"),
        ("system", "covariance", "basis"),
        "Solves or decomposes the linear system given by {args}.",
    ),
    "sample": (
        ("noise", "g_noise", "coin", "perm", "subkey", "dropped", "raw_bits"),
        ("noise", "weights", "features"),
        "Samples random values from {args}.",
    ),
    "rank": (("srt", "order", "ordered"), ("scores", "candidates"), "Sorts and ranks {args}."),
    "accumulate": (
        ("run", "prefix", "loop", "nxt", "acc", "out", "val", "waits"),
        ("states", "sequence"),
        "Runs loops or branches over {args}.",
    ),
    "map": ((), ("batch", "examples"), "Maps a function over the batch axis of {args}."),
    "differentiate": ((), ("loss", "objective"), "Differentiates functions of {args}."),
    "process": ((), ("batch",), "Processes {args}, whose batch size is symbolic."),
    "distribute": ((), ("shards",), "Computes over {args} across a mesh of devices."),
    "compute": (
        ("g", "jac", "hess", "tangent", "cotangent", "loss", "sim", "dist"),
        ("gradients", "loss"),
        "Computes derived quantities of {args}.",
    ),
    "encode": (
        (
            "bits",
            "hashed",
            "shl",
            "shr",
            "xi",
            "ints",
            "cast",
            "lowp",
            "xf",
            "raw",
            "rd",
            "cl",
            "fl",
            "rem",
            "z",
            "re",
            "im",
            "spec",
            "psd",
            "phasor",
            "low",
            "tagged",
            "ch",
            "counts",
        ),
        ("codes", "bits"),
        "Encodes {args} into another representation.",
    ),
    "pool": (("conv", "pooled"), ("images", "activations"), "Convolves or pools {args}."),
}
NAME_VERBS: dict[str, str] = {hint: verb for verb, (hints, _, _) in _VERBS.items() for hint in hints}

CATEGORY_VERBS: dict[str, tuple[str, ...]] = {
    "arithmetic": ("rescale", "update", "compute"),
    "conditional": ("mask", "update"),
    "reduction": ("summarize", "rank"),
    "matrix": ("project", "rearrange"),
    "elementwise": ("transform",),
    "broadcasting": ("rearrange",),
    "composite": ("normalize", "transform", "compute"),
    "control_flow": ("accumulate",),
    "batching": ("map",),
    "autodiff": ("differentiate",),
    "indexing": ("gather", "update"),
    "linalg": ("solve",),
    "random": ("sample",),
    "nn": ("project", "normalize", "update"),
    "bitwise": ("encode",),
    "dynamic_shapes": ("process",),
    "multi_device": ("distribute",),
}

# Categories whose functions are named by the op computing their last value; the others (a
# random, linalg, autodiff... program is that whatever its last op) by the category's verbs.
HINT_NAMED = frozenset(
    {"arithmetic", "conditional", "reduction", "matrix", "elementwise", "broadcasting", "composite", "indexing", "nn"}
)

# (kind, rank) -> argument names by preference (rank 4 stands for 4 and more)
ARGUMENT_NAMES: dict[tuple[str, int], tuple[str, ...]] = {
    ("float", 0): ("scale", "alpha", "temperature", "beta", "threshold", "step_size"),
    ("float", 1): ("bias", "weights", "values", "offsets", "gamma", "scores"),
    ("float", 2): ("features", "logits", "weights", "hidden", "scores", "kernel"),
    ("float", 3): ("activations", "hidden_states", "inputs", "embeddings", "queries", "keys"),
    ("float", 4): ("images", "volumes", "patches", "feature_maps"),
    ("int", 0): ("step", "count", "offset", "index"),
    ("int", 1): ("indices", "labels", "tokens", "positions", "ids"),
    ("int", 2): ("token_ids", "indices", "segment_ids", "labels"),
    ("int", 3): ("token_ids", "indices", "ids"),
    ("int", 4): ("codes", "indices"),
    ("bits", 0): ("seed", "bits"),
    ("bits", 1): ("bits", "codes", "hashes"),
    ("bits", 2): ("codes", "bits", "packed"),
    ("bits", 3): ("codes", "packed"),
    ("bits", 4): ("codes", "packed"),
    ("bool", 0): ("flag", "enabled"),
    ("bool", 1): ("mask", "valid", "keep"),
    ("bool", 2): ("mask", "attention_mask", "valid"),
    ("bool", 3): ("mask", "valid"),
    ("bool", 4): ("mask", "valid"),
    ("complex", 0): ("phase", "coefficient"),
    ("complex", 1): ("signal", "spectrum", "phases"),
    ("complex", 2): ("spectrum", "signal"),
    ("complex", 3): ("spectrum", "signal"),
    ("complex", 4): ("spectrum", "signal"),
}
KEY_NAMES = ("key", "rng", "dropout_key", "noise_key")
KEY_ARRAY_NAMES = ("keys", "rngs", "sample_keys")
# Names that would shadow what the source imports or Python itself.
RESERVED = frozenset({"jax", "jnp", "lax", "np", "functools", "math", "input", "len", "max", "min", "sum", "abs"})


def _kind(t: TensorType) -> str:
    if t.is_float:
        return "float"
    if t.is_complex:
        return "complex"
    if t.dtype == "bool":
        return "bool"
    return "int" if t.dtype == "int32" else "bits"


def argument_name(t: TensorType, taken: Iterable[str], rng: random.Random) -> str:
    """A name for a new argument of type ``t``, not in ``taken`` (mostly the preferred one)."""
    taken = set(taken) | RESERVED
    if t.is_key:
        options = KEY_NAMES if t.rank == 0 else KEY_ARRAY_NAMES
    else:
        options = ARGUMENT_NAMES[(_kind(t), min(t.rank, 4))]
    free = [n for n in options if n not in taken]
    if free:
        return free[0] if rng.random() < 0.6 else rng.choice(free)
    base, n = options[0], 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def function_name(
    category: str,
    last_hint: str | None,
    first_argument: str | None,
    rng: random.Random,
) -> str:
    """``<verb>_<noun>``: the verb for the op computing the last value (``HINT_NAMED``
    categories) or the category's, the noun from the first argument's name (or the verb's own
    nouns); never a name made of op names."""
    own = CATEGORY_VERBS.get(category, ("compute",))
    hinted = NAME_VERBS.get(last_hint or "") if category in HINT_NAMED else None
    verb = hinted or rng.choice(own)
    nouns = list(_VERBS[verb][1])
    if first_argument and first_argument not in KEY_NAMES + KEY_ARRAY_NAMES and not first_argument[-1].isdigit():
        nouns.insert(0, first_argument)
    nouns = nouns or ["values"]
    noun = nouns[0] if rng.random() < 0.7 else rng.choice(nouns)
    for name in (f"{verb}_{noun}", *(f"{verb}_{n}" for n in nouns), f"{verb}_values"):
        if name_ops(name) is None:
            return name
    return f"{verb}_step"


def summary_line(verb_of_name: str, argument_names: list[str]) -> str:
    """The first docstring line of a function named ``<verb>_...`` over ``argument_names``."""
    verb = verb_of_name.split("_", 1)[0]
    template = _VERBS[verb][2] if verb in _VERBS else "Computes values from {args}."
    quoted = [f"`{n}`" for n in argument_names]
    args = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" and {quoted[-1]}"
    return template.format(args=args)


def name_parses(function_name: str, op_names: Iterable[str] | None = None) -> list[list[str]]:
    """Every way ``function_name`` splits into op names joined by underscores (the generator's
    ``_fn`` filler allowed at the end), fewest parts first; empty if there is none.

    ``floor_divide`` is one op and also ``floor`` then ``divide``: both are returned.
    """
    names = set(OPS_BY_NAME) if op_names is None else set(op_names)
    tokens = function_name.split("_")
    if tokens[-1] == FILLER and len(tokens) > 1:
        tokens = tokens[:-1]

    @cache
    def rest(i: int) -> tuple[tuple[str, ...], ...]:
        if i == len(tokens):
            return ((),)
        out = []
        for j in range(i + 1, len(tokens) + 1):
            part = "_".join(tokens[i:j])
            if part in names:
                out += [(part, *tail) for tail in rest(j)]
        return tuple(out)

    return sorted((list(p) for p in rest(0) if p), key=len)


def name_ops(function_name: str, op_names: Iterable[str] | None = None) -> list[str] | None:
    """The op names ``function_name`` is made of, in the fewest parts; None if it is not made
    of op names (see ``name_parses``).

    ``name_ops("sum_multiply_polynomial") == ["sum", "multiply", "polynomial"]``,
    ``name_ops("abs_fn") == ["abs"]``, ``name_ops("moving_average") is None``.
    """
    parses = name_parses(function_name, op_names)
    return parses[0] if parses else None
