"""Op building blocks: the ``Op`` entry, operand/parameter binding, and op families.

An op entry says which operand dtypes and ranks it accepts (``dtypes``, ``min_rank``,
``max_rank``), how it binds its other operands and parameters to the first operand
(``bind``: a pure function of a seeded ``random.Random``), the type of its result
(``infer``), which operands need a domain guard (``guards``) and how it renders
(``template``). Families (``unary``, ``binary``, ``reduction``...) build entries so that
most ops are a single line, in the spirit of JAX's own ``op_record`` test table.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ...errors import Reject
from ..types import FLOATS, NUMERIC, TensorType, broadcast_shapes

# Domain guards: operand rewrites that keep an op inside its domain (log of a positive
# number, division by a non-zero one). Keyed by guard name, then by "float"/"int".
GUARDS = {
    "positive": {"float": "(jnp.abs({v}) + 1e-3)", "int": "(jnp.abs({v}) + 1)"},
    "nonzero": {"float": "(jnp.abs({v}) + 1.0)", "int": "(jnp.abs({v}) + 1)"},
    "unit": {"float": "jnp.tanh({v})", "int": "{v}"},
    "open_unit": {"float": "(0.99 * jnp.tanh({v}))", "int": "{v}"},
    "nonnegative": {"float": "jnp.abs({v})", "int": "jnp.abs({v})"},
    "above_one": {"float": "(jnp.abs({v}) + 1.001)", "int": "(jnp.abs({v}) + 2)"},
    # Away from a pole at 0 (digamma, polygamma): near it any rounding difference in the
    # operand is amplified by 1/x^2, so two correct compilers disagree.
    "at_least_one": {"float": "(jnp.abs({v}) + 1.0)", "int": "(jnp.abs({v}) + 1)"},
    # Reading a computed float's bits exposes its last place, where correct compilers differ
    # (erf, tan...); rounded to an integer (of 256ths) first, it differs only when it lies
    # within rounding error of a half.
    "exact_bits": {"float": "jnp.round({v} * 256.0)", "int": "{v}"},
}


@dataclass(frozen=True)
class LiteralNeed:
    """A scalar literal operand of the first operand's dtype, drawn from ``choices``."""

    choices: tuple[str, ...]


Need = Union[TensorType, LiteralNeed]


@dataclass(frozen=True)
class Binding:
    """What ``Op.bind`` decides: the other operands' types and the op's parameters."""

    needs: tuple[Need, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


# A result type rule: operand types and bound parameters -> the result type.
Infer = Callable[[tuple[TensorType, ...], Mapping[str, Any]], TensorType]


def no_bind(rng: random.Random, first: TensorType) -> Binding:
    return Binding()


def same_type(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    return types[0]


def scalar_of_first(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    """A scalar of the first operand's dtype (losses, dot products, determinants...)."""
    return types[0].with_shape(())


def same_as_second(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    return types[1]


def bind_same_type(rng: random.Random, first: TensorType) -> Binding:
    """A second operand of exactly the first operand's type."""
    return Binding(needs=(first,))


@dataclass(frozen=True)
class Op:
    """One op: constraints, binding of operands/parameters, type rule and rendering.

    Attributes:
      name: unique id, also used in statistics.
      template: Python expression; ``{0}``, ``{1}``... are operands, ``{name}`` params.
      categories: categories whose programs draw this op.
      dtypes: dtypes accepted for the first operand.
      infer: result type from operand types and params.
      bind: draws the remaining operands' types and the params from the first operand.
      min_rank, max_rank: ranks accepted for the first operand.
      guards: per operand, a ``GUARDS`` key or ``None``.
      hint: base name for the result variable.
      weight: relative sampling weight within a category.
      requires: extra condition on the first operand's type (square matrix, PRNG key...).
      new_input: draws the type of a fresh input for this op (default: the policy's).
      transforms: JAX transforms the op applies (``grad``, ``vmap``...), for the row.
      devices: host devices a program using the op needs to lower (a mesh for shard_map).
      upcast: on bfloat16/float16 operands, real code computes this op in float32 and casts
        the result back (softmax, norms, variance, losses): the renderer writes it so.

    Templates may span several lines: every line but the last is emitted as is (helper
    ``def``s, decorators, intermediate names), the last is the result's expression.
    ``{r}`` is the result's name, for helper names that must be unique in the function.
    """

    name: str
    template: str
    categories: tuple[str, ...]
    dtypes: tuple[str, ...]
    infer: Callable[[tuple[TensorType, ...], Mapping[str, Any]], TensorType] = same_type
    bind: Callable[[random.Random, TensorType], Binding] = no_bind
    min_rank: int = 0
    max_rank: int = 4
    guards: tuple[str | None, ...] = ()
    hint: str = "y"
    weight: float = 1.0
    requires: Callable[[TensorType], bool] | None = None
    new_input: Callable[[random.Random], TensorType] | None = None
    transforms: tuple[str, ...] = ()
    devices: int = 1
    upcast: bool = False

    def accepts(self, t: TensorType) -> bool:
        return (
            t.dtype in self.dtypes
            and self.min_rank <= t.rank <= self.max_rank
            and (self.requires is None or self.requires(t))
        )


# --- helpers for binding ------------------------------------------------------------


def random_axis(rng: random.Random, t: TensorType) -> int:
    """An axis longer than one (the last, written ``-1``, 40% of the time when it is).

    Summing, sorting or normalizing over an axis of one element (or a scalar's no axis at
    all) computes nothing, and no one writes it: such operands are rejected.
    """
    axes = [i for i, d in enumerate(t.shape) if d > 1]
    if not axes:
        raise Reject(f"no axis of {t.spec()} is longer than one")
    if t.shape[-1] > 1 and rng.random() >= 0.6:
        return -1
    return rng.choice(axes)


def longer_last_axis(t: TensorType) -> bool:
    """An array whose last axis, which the op normalizes, sorts or reduces along, has more
    than one element."""
    return t.rank >= 1 and t.shape[-1] > 1


def normalize_axis(axis: int, rank: int) -> int:
    return axis % rank


def float_literals(t: TensorType) -> tuple[str, ...]:
    if t.is_float:
        return ("0.5", "2.0", "3.0", "0.1", "1.5", "10.0", "0.01")
    return ("2", "3", "5", "7", "1")


def broadcast_partner(rng: random.Random, t: TensorType) -> TensorType:
    """A shape that broadcasts against ``t``: equal, a suffix, or with some dims set to 1."""
    r = rng.random()
    if r < 0.5 or t.rank == 0:
        return t
    if r < 0.75:
        keep = rng.randrange(t.rank + 1)
        return t.with_shape(t.shape[t.rank - keep :])
    shape = tuple(1 if rng.random() < 0.5 else d for d in t.shape)
    return t.with_shape(shape)


def bind_binary(literals: bool = True) -> Callable[[random.Random, TensorType], Binding]:
    def bind(rng: random.Random, first: TensorType) -> Binding:
        if literals and rng.random() < 0.3:
            return Binding(needs=(LiteralNeed(float_literals(first)),))
        return Binding(needs=(broadcast_partner(rng, first),))

    return bind


def infer_binary(out_dtype: str | None = None) -> Infer:
    """The broadcast shape of all operands, of ``out_dtype`` or the first operand's dtype."""

    def infer(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
        shape = types[0].shape
        for t in types[1:]:
            shape = broadcast_shapes(shape, t.shape)
            if shape is None:
                raise Reject("shapes do not broadcast")
        return TensorType(shape, out_dtype or types[0].dtype)

    return infer


def to_dtype(dtype: str) -> Infer:
    """The first operand's shape, of ``dtype``."""

    def infer(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
        return types[0].with_dtype(dtype)

    return infer


def float_result(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    t = types[0]
    return t if t.is_float else t.with_dtype("float32")


# --- families -----------------------------------------------------------------------


def unary(
    name: str,
    expr: str,
    categories: tuple[str, ...],
    dtypes: tuple[str, ...] = FLOATS,
    *,
    guard: str | None = None,
    out: str | None = None,
    hint: str = "y",
    weight: float = 1.0,
    **kw: Any,
) -> Op:
    """Elementwise op of one operand: ``expr`` is written with ``{0}``."""
    infer = to_dtype(out) if out else kw.pop("infer", same_type)
    return Op(name, expr, categories, dtypes, infer=infer, guards=(guard,), hint=hint, weight=weight, **kw)


def binary(
    name: str,
    expr: str,
    categories: tuple[str, ...],
    dtypes: tuple[str, ...] = NUMERIC,
    *,
    guard: str | None = None,
    out: str | None = None,
    literals: bool = True,
    hint: str = "y",
    weight: float = 1.0,
) -> Op:
    """Elementwise op of two operands with NumPy broadcasting; the second may be a literal."""
    return Op(
        name,
        expr,
        categories,
        dtypes,
        infer=infer_binary(out),
        bind=bind_binary(literals),
        guards=(None, guard),
        hint=hint,
        weight=weight,
    )


def bind_reduce(rng: random.Random, first: TensorType) -> Binding:
    """All axes (30%) or one axis longer than one, sometimes keeping it."""
    axis = random_axis(rng, first)  # rejects operands with nothing to reduce
    if rng.random() < 0.3:
        return Binding(params={"axis": None, "keepdims": False, "kw": ""})
    keepdims = rng.random() < 0.25
    kw = f", axis={axis}" + (", keepdims=True" if keepdims else "")
    return Binding(params={"axis": axis, "keepdims": keepdims, "kw": kw})


def reduced_shape(t: TensorType, params: Mapping[str, Any]) -> tuple[int, ...]:
    axis = params["axis"]
    if axis is None:
        return tuple(1 for _ in t.shape) if params["keepdims"] else ()
    axis = normalize_axis(axis, t.rank)
    if params["keepdims"]:
        return t.shape[:axis] + (1,) + t.shape[axis + 1 :]
    return t.shape[:axis] + t.shape[axis + 1 :]


def reduction(
    name: str,
    fn: str,
    categories: tuple[str, ...],
    dtypes: tuple[str, ...] = NUMERIC,
    *,
    out: str = "same",
    hint: str = "r",
    weight: float = 1.0,
    upcast: bool = False,
    guard: str | None = None,
) -> Op:
    """``fn(x, axis=..., keepdims=...)``; ``out`` is "same", "float" (mean of ints) or a dtype.

    The operand is an array (a reduction of a scalar lowers to a reduce over no dimensions).
    """

    def infer(types, params):
        t = types[0]
        if out == "same":
            dtype = "int32" if t.dtype == "bool" else t.dtype
        elif out == "float":
            dtype = t.dtype if t.is_float else "float32"
        else:
            dtype = out
        return TensorType(reduced_shape(t, params), dtype)

    return Op(
        name,
        fn + "({0}{kw})",
        categories,
        dtypes,
        infer=infer,
        bind=bind_reduce,
        hint=hint,
        weight=weight,
        min_rank=1,
        upcast=upcast,
        guards=(guard,),
    )


def bind_axis(rng: random.Random, first: TensorType) -> Binding:
    return Binding(params={"axis": random_axis(rng, first)})


def bind_axis_nonnegative(rng: random.Random, first: TensorType) -> Binding:
    return Binding(params={"axis": normalize_axis(random_axis(rng, first), first.rank)})


def along_axis(
    name: str,
    expr: str,
    categories: tuple[str, ...],
    dtypes: tuple[str, ...] = NUMERIC,
    *,
    hint: str = "y",
    weight: float = 1.0,
    infer: Infer = same_type,
    out: str | None = None,
    lax_axis: bool = False,
    upcast: bool = False,
    guard: str | None = None,
) -> Op:
    """Op over one axis that keeps the shape (softmax, cumsum, sort...); ``{axis}`` in ``expr``.

    ``lax_axis``: the op is a ``lax`` primitive, which (unlike ``jnp``) rejects negative axes.
    """
    bind = bind_axis_nonnegative if lax_axis else bind_axis
    return Op(
        name,
        expr,
        categories,
        dtypes,
        infer=to_dtype(out) if out else infer,
        bind=bind,
        min_rank=1,
        hint=hint,
        weight=weight,
        upcast=upcast,
        guards=(guard,),
    )


def infer_last_axis_reduced(types: tuple[TensorType, ...], params: Mapping[str, Any]) -> TensorType:
    """The first operand with its last axis reduced away (norms, last-axis reductions)."""

    return types[0].with_shape(types[0].shape[:-1])
