"""Closing merges: how a function folds the values it computed into the ones it returns.

A sampled program computes more results than it returns, and real code reads everything it
computes, so the sampler folds left-over results into others (``ProgramBuilder.consume``).
Each ``Merge`` is one way code combines two of its values: a residual add, a gate, a masked
mean, a weighted sum of loss terms, a gradient step, noise from a left-over key. A category
folds with the merges its own code writes (``CATEGORY_MERGES``) and, when none fits, with the
generic ones (``GENERIC_MERGES``: add, mask, or, and ``FOLD``, which first reduces the
folded value over the leading axes the kept one lacks: a mean, a sum of integers, an ``any``
of a mask).

A merge writes a cast only to another dtype and a reduction only over axes that exist: it
never reduces a scalar nor casts a value to its own dtype.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..types import TensorType, broadcast_shapes
from .base import Infer, Op, same_type

# How much a kind keeps under JAX's type promotion: a float plus an int is a float...
_RICHNESS = {"bool": 0, "int": 1, "float": 2, "complex": 3}
# Floats whose range holds a sum over a whole array (float16's does not).
WIDE_FLOATS = ("float32", "bfloat16")


def kind(t: TensorType) -> str:
    """``"key"``, ``"complex"``, ``"float"``, ``"int"`` or ``"bool"``."""
    if t.is_key:
        return "key"
    return "complex" if t.is_complex else "float" if t.is_float else "int" if t.is_int else "bool"


def _numeric(t: TensorType) -> bool:
    return kind(t) in ("int", "float", "complex")


def _floats(kept: TensorType, folded: TensorType) -> bool:
    return kept.is_float and folded.is_float


def broadcasts_into(kept: TensorType, folded: TensorType) -> bool:
    """Whether ``folded`` broadcasts to ``kept``'s shape (so the result keeps that shape)."""
    return broadcast_shapes(kept.shape, folded.shape) == kept.shape


# Dtypes that keep theirs combined with another of their kind (int32 with uint32: JAX's
# promotion gives int64, which 32-bit JAX makes int32).
_WIDENS = {"float32": ("bfloat16", "float16"), "int32": ("int8", "uint32")}


def _keeps_dtype(kept: TensorType, dtype: str) -> bool:
    """Whether ``kept`` combined with a value of ``dtype`` stays of ``kept``'s dtype in JAX
    (a float with an int or a mask, complex with anything, float32 with a narrower float)."""
    other = kind(TensorType((), dtype))
    return (
        dtype == kept.dtype
        or _RICHNESS.get(kind(kept), -1) > _RICHNESS.get(other, 4)
        or dtype in _WIDENS.get(kept.dtype, ())
    )


def as_kept(expr: str, kept: TensorType, dtype: str) -> str:
    """``expr`` (of ``dtype``) cast to the kept value's dtype where JAX would not keep it."""
    return expr if _keeps_dtype(kept, dtype) else f"{expr}.astype({{0}}.dtype)"


def _folded(kept: TensorType, folded: TensorType) -> str:
    return as_kept("{1}", kept, folded.dtype)


def _zero(t: TensorType) -> str:
    return "0.0" if t.is_float else "0"


def _scalar(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    return types[0].with_shape(())


def _choices(**options: tuple[str, ...]) -> Callable[[random.Random], dict[str, str]]:
    """Draws one of ``options[name]`` for each constant ``name`` of a template."""

    def draw(rng: random.Random) -> dict[str, str]:
        return {name: rng.choice(values) for name, values in options.items()}

    return draw


def _no_params(rng: random.Random) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Merge:
    """One way to combine a kept value ``{0}`` with a folded one ``{1}``.

    Attributes:
      name: the statement's op name (part of a program's structure); unique, never an op's.
      fits: whether a kept and a folded type suit it.
      template: the expression for those types (``{0}``, ``{1}``, ``{name}`` for constants).
      infer: the result type from ``(kept, folded)`` and the constants, like ``Op.infer``.
      params: draws the constants (weights, rates) from the sampler's random source.
      hint: base name of the result.
      weight: relative weight among the merges that fit.
    """

    name: str
    fits: Callable[[TensorType, TensorType], bool]
    template: Callable[[TensorType, TensorType], str]
    infer: Infer = same_type
    params: Callable[[random.Random], dict[str, str]] = _no_params
    hint: str = "out"
    weight: float = 1.0

    def op(self, kept: TensorType, folded: TensorType) -> Op:
        """The op of a statement folding a value of type ``folded`` into one of type ``kept``."""
        return Op(self.name, self.template(kept, folded), (), (kept.dtype,), infer=self.infer, hint=self.hint)


# --- elementwise combinations of a value with one that broadcasts to its shape --------------


def _combinable(kept: TensorType, folded: TensorType) -> bool:
    """Numbers with numbers, the kept one at least as rich, the folded one broadcasting to it."""
    return (
        _numeric(kept)
        and _numeric(folded)
        and _RICHNESS[kind(kept)] >= _RICHNESS[kind(folded)]
        and broadcasts_into(kept, folded)
    )


def _real_combinable(kept: TensorType, folded: TensorType) -> bool:
    return _combinable(kept, folded) and not kept.is_complex


def _float_combinable(kept: TensorType, folded: TensorType) -> bool:
    return _floats(kept, folded) and broadcasts_into(kept, folded)


def _same_shape_floats(kept: TensorType, folded: TensorType) -> bool:
    return _floats(kept, folded) and kept.shape == folded.shape


def _bool_pair(kept: TensorType, folded: TensorType) -> bool:
    return kind(kept) == kind(folded) == "bool" and broadcasts_into(kept, folded)


def _same_int_pair(kept: TensorType, folded: TensorType) -> bool:
    return kind(kept) == kind(folded) == "int" and kept.dtype == folded.dtype and broadcasts_into(kept, folded)


def _masks(kept: TensorType, folded: TensorType) -> bool:
    return _numeric(kept) and kind(folded) == "bool" and broadcasts_into(kept, folded)


ADD = Merge("merge_add", _combinable, lambda k, f: "{0} + " + _folded(k, f))
SUBTRACT = Merge("merge_subtract", _real_combinable, lambda k, f: "{0} - " + _folded(k, f), hint="centered")
SCALE = Merge("merge_scale", _combinable, lambda k, f: "{0} * " + _folded(k, f), hint="scaled")
MAXIMUM = Merge("merge_maximum", _real_combinable, lambda k, f: f"jnp.maximum({{0}}, {_folded(k, f)})", hint="upper")
WEIGHTED_SUM = Merge(
    "merge_weighted_sum",
    _float_combinable,
    lambda k, f: "{0} + {w} * " + _folded(k, f),
    params=_choices(w=("0.1", "0.5", "0.25", "0.01")),
    hint="mixed",
)
# A running average: the kept value decays, the folded one comes in.
AVERAGE = Merge(
    "merge_average",
    _same_shape_floats,
    lambda k, f: "{keep} * {0} + {take} * " + _folded(k, f),
    params=lambda rng: dict(zip(("keep", "take"), rng.choice((("0.9", "0.1"), ("0.99", "0.01"), ("0.5", "0.5"))))),
    hint="smoothed",
)
# A gradient step: parameters minus a rate times their gradient.
STEP = Merge(
    "merge_step",
    _same_shape_floats,
    lambda k, f: "{0} - {lr} * " + _folded(k, f),
    params=_choices(lr=("0.1", "0.01", "1e-3")),
    hint="updated",
)
GATE = Merge("merge_gate", _float_combinable, lambda k, f: f"{{0}} * jax.nn.sigmoid({_folded(k, f)})", hint="gated")
MASK = Merge("merge_mask", _masks, lambda k, f: f"jnp.where({{1}}, {{0}}, {_zero(k)})", hint="masked")
BOTH = Merge("merge_and", _bool_pair, lambda k, f: "{0} & {1}", hint="both")
EITHER = Merge("merge_or", _bool_pair, lambda k, f: "{0} | {1}", hint="either")
XOR = Merge("merge_xor", _same_int_pair, lambda k, f: "{0} ^ {1}", hint="mixed_bits")


# --- combinations that reduce (only arrays: a reduction of a scalar computes nothing) -----------


def _masked_floats(kept: TensorType, folded: TensorType) -> bool:
    # no float16: a sum over thousands of elements leaves its range
    return kept.dtype in WIDE_FLOATS and kind(folded) == "bool" and kept.rank > 0 and folded.shape == kept.shape


def _loss_terms(kept: TensorType, folded: TensorType) -> bool:
    return _floats(kept, folded) and folded.rank > 0


def _decays(kept: TensorType, folded: TensorType) -> bool:
    # a sum of squares: not in float16 either
    return kept.rank == 0 and folded.rank > 0 and kept.dtype in WIDE_FLOATS and folded.dtype in WIDE_FLOATS


def _mean_of(t: TensorType, name: str) -> str:
    return f"jnp.mean({name})" if t.rank else name


# The mean of the kept values where the mask is set (a loss over the valid positions).
MASKED_MEAN = Merge(
    "merge_masked_mean",
    _masked_floats,
    lambda k, f: "jnp.sum(jnp.where({1}, {0}, 0.0)) / jnp.maximum(jnp.sum({1}), 1)",
    infer=_scalar,
    hint="masked_avg",
)
# A loss with an auxiliary term: the mean of each, the second weighted.
LOSS_TERMS = Merge(
    "merge_loss_terms",
    _loss_terms,
    lambda k, f: _mean_of(k, "{0}") + " + {w} * " + as_kept("jnp.mean({1})", k, f.dtype),
    infer=_scalar,
    params=_choices(w=("0.1", "0.5", "0.01")),
    hint="total_loss",
)
# A loss plus an L2 penalty on an array (weight decay).
WEIGHT_DECAY = Merge(
    "merge_weight_decay",
    _decays,
    lambda k, f: "{0} + {wd} * " + as_kept("jnp.sum(jnp.square({1}))", k, f.dtype),
    params=_choices(wd=("1e-4", "5e-4", "1e-2")),
    hint="penalized",
)


# Two arrays of one dtype packed into one vector (as a flattened parameter vector is).
def _packable(kept: TensorType, folded: TensorType) -> bool:
    return kept.dtype == folded.dtype and kind(kept) != "key" and kept.rank > 0 and folded.rank > 0


CONCAT = Merge(
    "merge_concat",
    _packable,
    lambda k, f: "jnp.concatenate([{0}.ravel(), {1}.ravel()])",
    infer=lambda types, params: types[0].with_shape((types[0].size + types[1].size,)),
    hint="packed",
)


# --- a left-over PRNG key: noise for a float value ------------------------------------------


def _noise_fits(kept: TensorType, folded: TensorType) -> bool:
    # one key: a key array (``jax.random.split(key, n)``) has no single normal draw
    return kept.is_float and folded.is_key and folded.rank == 0


NOISE = Merge(
    "merge_noise",
    _noise_fits,
    lambda k, f: "{0} + {s} * jax.random.normal({1}, {0}.shape, {0}.dtype)",
    params=_choices(s=("0.1", "0.01", "0.5")),
    hint="noisy",
)


# --- the fallback: reduce away the axes the kept value lacks, then combine -------------------


def extra_axes(kept: TensorType, folded: TensorType) -> tuple[int, ...]:
    """The fewest leading axes of ``folded`` whose reduction leaves a shape that broadcasts to
    ``kept``'s (all of them at worst: a scalar broadcasts to anything)."""
    for n in range(folded.rank + 1):
        if broadcast_shapes(kept.shape, folded.shape[n:]) == kept.shape:
            return tuple(range(n))
    raise AssertionError("a scalar broadcasts to any shape")


def _fold_fits(kept: TensorType, folded: TensorType) -> bool:
    # only where a reduction is needed: otherwise ADD, MASK and EITHER write the same code
    both = kind(kept) in _RICHNESS and kind(folded) in _RICHNESS
    return both and _RICHNESS[kind(kept)] >= _RICHNESS[kind(folded)] and not broadcasts_into(kept, folded)


_REDUCER = {"bool": "jnp.any", "int": "jnp.sum", "float": "jnp.mean", "complex": "jnp.mean"}


def _fold_template(kept: TensorType, folded: TensorType) -> str:
    axes = extra_axes(kept, folded)
    # axes is never empty: the folded value does not broadcast as it is (``_fold_fits``)
    kw = "" if len(axes) == folded.rank else f", axis={axes[0]}" if len(axes) == 1 else f", axis={axes}"
    reduced = f"{_REDUCER[kind(folded)]}({{1}}{kw})"
    if kind(folded) == "bool":
        return "{0} | " + reduced if kind(kept) == "bool" else f"jnp.where({reduced}, {{0}}, {_zero(kept)})"
    dtype = "int32" if folded.dtype == "int8" else folded.dtype  # jnp.sum widens int8
    return "{0} + " + as_kept(reduced, kept, dtype)


FOLD = Merge("merge_fold", _fold_fits, _fold_template, hint="combined")

# Every category may fall back on these; together they fold any two values but keys.
GENERIC_MERGES: tuple[Merge, ...] = (ADD, MASK, EITHER, FOLD)

# The merges each category's own code writes, tried first.
CATEGORY_MERGES: dict[str, tuple[Merge, ...]] = {
    "arithmetic": (ADD, SUBTRACT, SCALE, WEIGHTED_SUM),
    "conditional": (MASK, MAXIMUM, BOTH, EITHER),
    "reduction": (SUBTRACT, ADD, MASKED_MEAN, LOSS_TERMS),
    "matrix": (ADD, WEIGHTED_SUM),
    "elementwise": (ADD, SCALE),
    "broadcasting": (ADD, SCALE, CONCAT, FOLD),
    "composite": (GATE, ADD, LOSS_TERMS),
    "control_flow": (ADD, AVERAGE, MASK),
    "batching": (ADD, SCALE),
    "autodiff": (STEP, LOSS_TERMS, ADD),
    "indexing": (MASK, MASKED_MEAN, ADD),
    "linalg": (ADD, WEIGHTED_SUM),
    "random": (NOISE, WEIGHTED_SUM, MASK),
    "nn": (ADD, GATE, MASKED_MEAN, WEIGHT_DECAY, LOSS_TERMS, STEP, AVERAGE),
    "bitwise": (XOR, EITHER, BOTH, ADD),
    "dynamic_shapes": (ADD, MASK, SCALE),
    "multi_device": (ADD, WEIGHTED_SUM),
}

MERGES: tuple[Merge, ...] = tuple(
    dict.fromkeys(GENERIC_MERGES + tuple(m for ms in CATEGORY_MERGES.values() for m in ms))
)
