"""indexing: gather/scatter via x[idx] and .at[], dynamic_slice/update, take, masks."""

from __future__ import annotations

import random

from ...errors import Reject
from ..types import NUMERIC, TensorType
from .base import Binding, Op, longer_last_axis

CATEGORY = "indexing"

_I32 = "int32"


def _index_vector(rng: random.Random) -> TensorType:
    return TensorType((rng.choice((2, 3, 4, 6, 8)),), _I32)


def _bind_gather(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(_index_vector(rng),), params={"d": a.shape[0]})


def _infer_gather(types, params):
    a, idx = types
    return a.with_shape(idx.shape + a.shape[1:])


def _bind_scatter(rng: random.Random, a: TensorType) -> Binding:
    idx = _index_vector(rng)
    method = rng.choice(("set", "add", "min", "max", "multiply"))
    return Binding(needs=(idx, a.with_shape(idx.shape + a.shape[1:])), params={"d": a.shape[0], "method": method})


def _bind_scatter_literal(rng: random.Random, a: TensorType) -> Binding:
    value = "1.0" if a.is_float else "1"
    return Binding(
        needs=(_index_vector(rng),),
        params={"d": a.shape[0], "method": rng.choice(("set", "add", "max")), "value": value},
    )


def _bind_dynamic_slice(rng: random.Random, a: TensorType) -> Binding:
    sizes = tuple(rng.randint(1, d) for d in a.shape)
    zeros = ", ".join("0" for _ in a.shape[1:])
    return Binding(needs=(TensorType((), _I32),), params={"sizes": sizes, "rest": (", " + zeros) if zeros else ","})


def _infer_dynamic_slice(types, params):
    return types[0].with_shape(params["sizes"])


def _bind_dynamic_update(rng: random.Random, a: TensorType) -> Binding:
    sizes = tuple(rng.randint(1, d) for d in a.shape)
    zeros = ", ".join("0" for _ in a.shape[1:])
    return Binding(needs=(a.with_shape(sizes), TensorType((), _I32)), params={"rest": (", " + zeros) if zeros else ","})


def _bind_take(rng: random.Random, a: TensorType) -> Binding:
    axis = rng.randrange(a.rank)
    return Binding(needs=(_index_vector(rng),), params={"axis": axis, "d": a.shape[axis]})


def _infer_take(types, params):
    a, idx = types
    ax = params["axis"]
    return a.with_shape(a.shape[:ax] + idx.shape + a.shape[ax + 1 :])


def _bind_two_axis_gather(rng: random.Random, a: TensorType) -> Binding:
    idx = _index_vector(rng)
    return Binding(needs=(idx, idx), params={"d0": a.shape[0], "d1": a.shape[1]})


def _infer_two_axis_gather(types, params):
    a, idx, _ = types
    return a.with_shape(idx.shape + a.shape[2:])


def _bind_static_slice(rng: random.Random, a: TensorType) -> Binding:
    parts = []
    shape = []
    for d in a.shape:
        kind = rng.choice(("all", "head", "step", "index")) if d > 1 else "all"
        if kind == "all":
            parts.append(":")
            shape.append(d)
        elif kind == "head":
            k = rng.randint(1, d - 1)
            parts.append(f":{k}")
            shape.append(k)
        elif kind == "step":
            parts.append("::2")
            shape.append(len(range(0, d, 2)))
        else:
            parts.append(str(rng.randrange(d)))
    if all(p == ":" for p in parts):
        raise Reject("slice selects everything")
    return Binding(params={"index": ", ".join(parts), "shape": tuple(shape)})


def _bind_take_along(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"sign": rng.choice(("", "-"))})


def _bind_mask_fill(rng: random.Random, a: TensorType) -> Binding:
    return Binding(
        params={"fill": "0.0" if a.is_float else "0", "stat": rng.choice(("jnp.mean", "jnp.median", "jnp.max"))}
    )


GATHER_DTYPES = ("float32", "int32", "bfloat16")

OPS: tuple[Op, ...] = (
    Op(
        "gather_rows",
        "{0}[{1} % {d}]",
        (CATEGORY,),
        GATHER_DTYPES,
        infer=_infer_gather,
        bind=_bind_gather,
        min_rank=1,
        hint="picked",
        weight=2.0,
    ),
    Op(
        "scatter_at",
        "{0}.at[{1} % {d}].{method}({2})",
        (CATEGORY,),
        GATHER_DTYPES,
        bind=_bind_scatter,
        min_rank=1,
        hint="updated",
        weight=2.0,
    ),
    Op(
        "scatter_at_literal",
        "{0}.at[{1} % {d}].{method}({value})",
        (CATEGORY,),
        GATHER_DTYPES,
        bind=_bind_scatter_literal,
        min_rank=1,
        hint="updated",
    ),
    Op(
        "dynamic_slice",
        "lax.dynamic_slice({0}, ({1}{rest}), {sizes})",
        (CATEGORY,),
        GATHER_DTYPES,
        infer=_infer_dynamic_slice,
        bind=_bind_dynamic_slice,
        min_rank=1,
        hint="window",
        weight=1.5,
    ),
    Op(
        "dynamic_update_slice",
        "lax.dynamic_update_slice({0}, {1}, ({2}{rest}))",
        (CATEGORY,),
        GATHER_DTYPES,
        bind=_bind_dynamic_update,
        min_rank=1,
        hint="patched",
        weight=1.5,
    ),
    Op(
        "take",
        "jnp.take({0}, {1} % {d}, axis={axis})",
        (CATEGORY,),
        GATHER_DTYPES,
        infer=_infer_take,
        bind=_bind_take,
        min_rank=1,
        hint="taken",
    ),
    Op(
        "gather_2d",
        "{0}[{1} % {d0}, {2} % {d1}]",
        (CATEGORY,),
        GATHER_DTYPES,
        infer=_infer_two_axis_gather,
        bind=_bind_two_axis_gather,
        min_rank=2,
        hint="picked",
    ),
    Op(
        "static_slice",
        "{0}[{index}]",
        (CATEGORY,),
        NUMERIC,
        infer=lambda ts, p: ts[0].with_shape(p["shape"]),
        bind=_bind_static_slice,
        min_rank=1,
        hint="part",
        weight=1.5,
    ),
    Op(
        "take_along_axis",
        "jnp.take_along_axis({0}, jnp.argsort({sign}{0}, axis=-1), axis=-1)",
        (CATEGORY,),
        ("float32", "int32"),
        bind=_bind_take_along,
        min_rank=1,
        requires=longer_last_axis,
        hint="ordered",
    ),
    Op(
        "mask_fill",
        "jnp.where({0} > {stat}({0}), {0}, {fill})",
        (CATEGORY,),
        ("float32", "int32"),
        bind=_bind_mask_fill,
        min_rank=1,
        hint="masked",
    ),
    Op(
        "masked_sum",
        "jnp.sum(jnp.where(jnp.isfinite({0}) & ({0} > 0), {0}, 0.0))",
        (CATEGORY,),
        ("float32",),
        infer=lambda ts, p: ts[0].with_shape(()),
        min_rank=1,
        hint="total",
    ),
    Op(
        "argmax_gather",
        "jnp.take_along_axis({0}, jnp.argmax({0}, axis=-1, keepdims=True), axis=-1)",
        (CATEGORY,),
        ("float32", "int32"),
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[:-1] + (1,)),
        min_rank=1,
        requires=longer_last_axis,
        hint="best",
    ),
)
