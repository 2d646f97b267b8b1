"""Shape ops: reshape, expand/squeeze, broadcast, tile, repeat, concatenate, stack, pad, slice, roll."""

from __future__ import annotations

import random

from ...errors import Reject
from ..types import BOOL, NUMERIC, TensorType
from .base import Binding, Op, bind_axis

CATEGORY = "broadcasting"


def _factorizations(n: int) -> list[tuple[int, ...]]:
    divs = [d for d in range(1, n + 1) if n % d == 0]
    shapes = [(n,)] + [(d, n // d) for d in divs if 1 < d < n]
    shapes += [
        (d, e, n // (d * e))
        for d in divs
        if 1 < d < n
        for e in divs
        if 1 < e and (n // d) % e == 0 and n // (d * e) > 1
    ]
    return shapes


def _bind_reshape(rng: random.Random, a: TensorType) -> Binding:
    options = [s for s in _factorizations(a.size) if s != a.shape]
    if not options:
        raise Reject("no other shape")
    shape = rng.choice(options)
    return Binding(params={"shape": shape, "shape_text": ", ".join(map(str, shape))})


def _bind_expand_dims(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"axis": rng.randrange(a.rank + 1)})


def _infer_expand_dims(types, params):
    s = types[0].shape
    ax = params["axis"]
    return types[0].with_shape(s[:ax] + (1,) + s[ax:])


def _bind_squeeze(rng: random.Random, a: TensorType) -> Binding:
    ones = [i for i, d in enumerate(a.shape) if d == 1]
    if not ones:
        raise Reject("nothing to squeeze")
    return Binding(params={"axis": rng.choice(ones)})


def _infer_squeeze(types, params):
    s = types[0].shape
    return types[0].with_shape(s[: params["axis"]] + s[params["axis"] + 1 :])


def _bind_broadcast_to(rng: random.Random, a: TensorType) -> Binding:
    lead = rng.choice((2, 3, 4))
    shape = (lead,) + tuple(rng.choice((d, 2, 3)) if d == 1 else d for d in a.shape)
    return Binding(params={"shape": shape, "shape_text": ", ".join(map(str, shape))})


def _bind_tile(rng: random.Random, a: TensorType) -> Binding:
    reps = tuple(rng.choice((1, 2, 3)) for _ in a.shape)
    if all(r == 1 for r in reps):
        reps = (2,) + reps[1:]
    return Binding(params={"reps": reps})


def _infer_tile(types, params):
    return types[0].with_shape(tuple(d * r for d, r in zip(types[0].shape, params["reps"])))


def _bind_repeat(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"repeats": rng.choice((2, 3)), "axis": rng.randrange(a.rank)})


def _infer_repeat(types, params):
    s = list(types[0].shape)
    s[params["axis"]] *= params["repeats"]
    return types[0].with_shape(tuple(s))


def _bind_concat(rng: random.Random, a: TensorType) -> Binding:
    axis = rng.randrange(a.rank)
    shape = list(a.shape)
    shape[axis] = rng.choice((1, 2, 3, a.shape[axis]))
    return Binding(needs=(a.with_shape(tuple(shape)),), params={"axis": axis})


def _infer_concat(types, params):
    a, b = types
    s = list(a.shape)
    s[params["axis"]] += b.shape[params["axis"]]
    return a.with_shape(tuple(s))


def _bind_stack(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a,), params={"axis": rng.randrange(a.rank + 1)})


def _infer_stack(types, params):
    s = types[0].shape
    return types[0].with_shape(s[: params["axis"]] + (2,) + s[params["axis"] :])


def _bind_pad(rng: random.Random, a: TensorType) -> Binding:
    widths = tuple((rng.randrange(3), rng.randrange(3)) for _ in a.shape)
    if not any(sum(w) for w in widths):
        widths = ((1, 1),) + widths[1:]
    return Binding(params={"widths": widths})


def _infer_pad(types, params):
    return types[0].with_shape(tuple(d + lo + hi for d, (lo, hi) in zip(types[0].shape, params["widths"])))


def _bind_slice(rng: random.Random, a: TensorType) -> Binding:
    d = a.shape[0]
    if d < 2:
        raise Reject("too small to slice")
    start = rng.randrange(d - 1)
    step = rng.choice((1, 1, 2))
    return Binding(params={"start": start, "step": step, "text": f"{start}::{step}" if step > 1 else f"{start}:"})


def _infer_slice(types, params):
    s = types[0].shape
    n = len(range(params["start"], s[0], params["step"]))
    return types[0].with_shape((n,) + s[1:])


def _bind_roll(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"shift": rng.choice((1, 2, -1)), "axis": rng.randrange(a.rank)})


def _bind_outer_broadcast(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a.with_shape((rng.choice((2, 3, 4, 5)),)),))


def _infer_outer_broadcast(types, params):
    return types[0].with_shape((types[0].shape[0], types[1].shape[0]))


OPS: tuple[Op, ...] = (
    # broadcasting / shape
    Op(
        "reshape",
        "{0}.reshape({shape_text})",
        (CATEGORY, "matrix"),
        NUMERIC + BOOL,
        infer=lambda ts, p: ts[0].with_shape(p["shape"]),
        bind=_bind_reshape,
        hint="flat",
    ),
    Op(
        "expand_dims",
        "jnp.expand_dims({0}, {axis})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_expand_dims,
        bind=_bind_expand_dims,
        max_rank=3,
        hint="ex",
    ),
    Op(
        "squeeze",
        "jnp.squeeze({0}, axis={axis})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_squeeze,
        bind=_bind_squeeze,
        min_rank=1,
        hint="sq",
    ),
    Op(
        "broadcast_to",
        "jnp.broadcast_to({0}, ({shape_text}))",
        (CATEGORY,),
        NUMERIC,
        infer=lambda ts, p: ts[0].with_shape(p["shape"]),
        bind=_bind_broadcast_to,
        max_rank=2,
        hint="bc",
    ),
    Op(
        "tile",
        "jnp.tile({0}, {reps})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_tile,
        bind=_bind_tile,
        min_rank=1,
        max_rank=3,
        hint="tiled",
    ),
    Op(
        "repeat",
        "jnp.repeat({0}, {repeats}, axis={axis})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_repeat,
        bind=_bind_repeat,
        min_rank=1,
        hint="rep",
    ),
    Op(
        "concatenate",
        "jnp.concatenate([{0}, {1}], axis={axis})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_concat,
        bind=_bind_concat,
        min_rank=1,
        hint="cat",
    ),
    Op(
        "stack",
        "jnp.stack([{0}, {1}], axis={axis})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_stack,
        bind=_bind_stack,
        max_rank=3,
        hint="stk",
    ),
    Op(
        "pad",
        "jnp.pad({0}, {widths})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_pad,
        bind=_bind_pad,
        min_rank=1,
        max_rank=3,
        hint="padded",
    ),
    Op("slice", "{0}[{text}]", (CATEGORY,), NUMERIC, infer=_infer_slice, bind=_bind_slice, min_rank=1, hint="part"),
    Op("flip", "jnp.flip({0}, axis={axis})", (CATEGORY,), NUMERIC, bind=bind_axis, min_rank=1, hint="rev"),
    Op("roll", "jnp.roll({0}, {shift}, axis={axis})", (CATEGORY,), NUMERIC, bind=_bind_roll, min_rank=1, hint="rolled"),
    Op(
        "outer_broadcast",
        "{0}[:, None] * {1}[None, :]",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_outer_broadcast,
        bind=_bind_outer_broadcast,
        min_rank=1,
        max_rank=1,
        hint="grid",
    ),
)
