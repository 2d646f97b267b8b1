"""Conditionals: where, select, lax.cond, clipping, comparisons and logical ops."""

from __future__ import annotations

import random

from ..types import BOOL, NUMERIC, TensorType
from .base import Binding, LiteralNeed, Need, Op, binary, float_literals, infer_binary, unary

CATEGORY = "conditional"
_FLOAT_BRANCHES = (
    "jnp.sin",
    "jnp.cos",
    "jnp.tanh",
    "lambda v: v * 2.0",
    "lambda v: -v",
    "lambda v: v - 1.0",
    "jnp.abs",
)
_INT_BRANCHES = ("lambda v: v + 1", "lambda v: -v", "lambda v: v * 2", "jnp.abs", "lambda v: v // 2")


def _bind_where_threshold(rng: random.Random, a: TensorType) -> Binding:
    if rng.random() < 0.4:
        need: Need = LiteralNeed(float_literals(a))
    else:
        need = a
    return Binding(needs=(need,), params={"cmp": rng.choice((">", "<", ">=")), "c": "0" if a.is_int else "0.0"})


def _bind_select(rng: random.Random, mask: TensorType) -> Binding:
    dtype = rng.choice(("float32", "float32", "int32"))
    return Binding(needs=(mask.with_dtype(dtype), mask.with_dtype(dtype)))


def _infer_select(types, params):
    return types[1]


def _bind_cond(rng: random.Random, a: TensorType) -> Binding:
    branches = _FLOAT_BRANCHES if a.is_float else _INT_BRANCHES
    t, f = rng.sample(branches, 2)
    return Binding(params={"t": t, "f": f, "red": rng.choice(("jnp.sum", "jnp.mean", "jnp.max"))})


def _bind_cond2(rng: random.Random, a: TensorType) -> Binding:
    t, f = rng.sample(
        ("lambda a, b: a - b", "lambda a, b: a + b", "lambda a, b: a * b", "lambda a, b: jnp.maximum(a, b)"), 2
    )
    return Binding(needs=(a,), params={"t": t, "f": f})


def _bind_clip(rng: random.Random, a: TensorType) -> Binding:
    lo, hi = (
        rng.choice((("-1.0", "1.0"), ("0.0", "6.0"), ("-3.0", "3.0")))
        if a.is_float
        else rng.choice((("0", "10"), ("-5", "5")))
    )
    return Binding(params={"lo": lo, "hi": hi})


def _bind_compare(rng: random.Random, a: TensorType) -> Binding:
    need: Need = LiteralNeed(float_literals(a)) if rng.random() < 0.4 else a
    return Binding(needs=(need,), params={"cmp": rng.choice((">", "<", ">=", "<=", "==", "!="))})


OPS: tuple[Op, ...] = (
    # conditional
    Op(
        "where_threshold",
        "jnp.where({0} {cmp} {c}, {0}, {1})",
        (CATEGORY,),
        NUMERIC,
        infer=infer_binary(),
        bind=_bind_where_threshold,
        hint="sel",
        weight=2.0,
    ),
    Op(
        "select_mask",
        "jnp.where({0}, {1}, {2})",
        (CATEGORY,),
        BOOL,
        infer=_infer_select,
        bind=_bind_select,
        hint="sel",
        weight=1.5,
    ),
    Op(
        "lax_select", "lax.select({0}, {1}, {2})", (CATEGORY,), BOOL, infer=_infer_select, bind=_bind_select, hint="sel"
    ),
    Op(
        "compare",
        "{0} {cmp} {1}",
        (CATEGORY,),
        NUMERIC,
        infer=infer_binary("bool"),
        bind=_bind_compare,
        hint="mask",
        weight=2.0,
    ),
    # An array's branch is chosen by a summary of it; a scalar's by the scalar itself.
    Op(
        "cond",
        "lax.cond({red}({0}) > 0, {t}, {f}, {0})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond,
        min_rank=1,
        hint="branch",
        weight=1.5,
    ),
    Op(
        "cond_scalar",
        "lax.cond({0} > 0, {t}, {f}, {0})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond,
        max_rank=0,
        hint="branch",
        weight=0.5,
    ),
    Op(
        "cond2",
        "lax.cond(jnp.sum({0}) > jnp.sum({1}), {t}, {f}, {0}, {1})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond2,
        min_rank=1,
        hint="branch",
    ),
    Op(
        "cond2_scalar",
        "lax.cond({0} > {1}, {t}, {f}, {0}, {1})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond2,
        max_rank=0,
        hint="branch",
        weight=0.3,
    ),
    Op("clip", "jnp.clip({0}, {lo}, {hi})", (CATEGORY, "arithmetic"), NUMERIC, bind=_bind_clip, hint="clipped"),
    binary("logical_and", "jnp.logical_and({0}, {1})", (CATEGORY,), BOOL, literals=False, hint="both"),
    binary("logical_or", "jnp.logical_or({0}, {1})", (CATEGORY,), BOOL, literals=False, hint="either"),
    binary("logical_xor", "jnp.logical_xor({0}, {1})", (CATEGORY,), BOOL, literals=False, hint="diff_mask", weight=0.5),
    unary("logical_not", "~{0}", (CATEGORY,), BOOL, hint="inv_mask", weight=0.5),
)
