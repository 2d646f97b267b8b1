"""batching: jax.vmap with varied in_axes/out_axes, nested vmap, vmap over control flow."""

from __future__ import annotations

import random

from ..types import FLOATS, NUMERIC, TensorType
from .base import Binding, Op

CATEGORY = "batching"

_PER_EXAMPLE = (
    "lambda a: a / (jnp.linalg.norm(a) + 1e-6)",
    "lambda a: jnp.cumsum(a, axis=-1) * 0.5",
    "lambda a: jax.nn.softmax(a)",
    "lambda a: a - jnp.mean(a)",
    "lambda a: jnp.sort(a)",
    "lambda a: lax.cond(jnp.sum(a) > 0, jnp.sin, jnp.cos, a)",
    "lambda a: lax.fori_loop(0, 3, lambda i, c: c * 0.5 + jnp.tanh(c), a)",
    "lambda a: lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1] * 0.9 + 0.1), (0, a))[1]",
)
_PAIRWISE = (
    "lambda a, b: a * b + jnp.sin(a)",
    "lambda a, b: jnp.maximum(a, b) - 0.5 * a",
    "lambda a, b: jnp.where(a > b, a, b * 2.0)",
)


def _bind_vmap_matmul(rng: random.Random, a: TensorType) -> Binding:
    b, n, k = a.shape
    return Binding(needs=(a.with_shape((b, k, rng.choice((2, 4, 8)))),))


def _infer_vmap_matmul(types, params):
    return types[0].with_shape(types[0].shape[:2] + types[1].shape[2:])


def _bind_vmap_shared(rng: random.Random, a: TensorType) -> Binding:
    return Binding(
        needs=(a.with_shape((a.shape[1], rng.choice((2, 4, 8, 16)))),),
        params={"act": rng.choice(("jnp.tanh", "jax.nn.relu", "jax.nn.gelu"))},
    )


def _infer_vmap_shared(types, params):
    return types[0].with_shape((types[0].shape[0], types[1].shape[1]))


def _bind_per_example(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"fn": rng.choice(_PER_EXAMPLE)})


def _infer_swap01(types, params):
    s = types[0].shape
    return types[0].with_shape((s[1], s[0]) + s[2:])


def _bind_pairwise(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a,), params={"fn": rng.choice(_PAIRWISE)})


def _bind_dot_batched(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a,))


def _infer_batch_only(types, params):
    return types[0].with_shape(types[0].shape[:1])


OPS: tuple[Op, ...] = (
    Op(
        "vmap_matmul",
        "jax.vmap(lambda a, b: a @ b)({0}, {1})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_vmap_matmul,
        bind=_bind_vmap_matmul,
        min_rank=3,
        max_rank=3,
        hint="bmm",
        transforms=("vmap",),
        weight=1.5,
    ),
    Op(
        "vmap_shared_weights",
        "jax.vmap(lambda a, w: {act}(a @ w), in_axes=(0, None))({0}, {1})",
        (CATEGORY,),
        FLOATS,
        infer=_infer_vmap_shared,
        bind=_bind_vmap_shared,
        min_rank=2,
        max_rank=2,
        hint="feats",
        transforms=("vmap",),
        weight=2.0,
    ),
    Op(
        "vmap_rows",
        "jax.vmap({fn})({0})",
        (CATEGORY,),
        FLOATS,
        bind=_bind_per_example,
        min_rank=2,
        max_rank=3,
        hint="rows",
        transforms=("vmap",),
        weight=2.0,
    ),
    Op(
        "vmap_columns",
        "jax.vmap({fn}, in_axes=1, out_axes=1)({0})",
        (CATEGORY,),
        FLOATS,
        bind=_bind_per_example,
        min_rank=2,
        max_rank=2,
        hint="cols",
        transforms=("vmap",),
        weight=1.5,
    ),
    Op(
        "vmap_out_axes",
        "jax.vmap({fn}, out_axes=1)({0})",
        (CATEGORY,),
        FLOATS,
        infer=_infer_swap01,
        bind=_bind_per_example,
        min_rank=2,
        max_rank=2,
        hint="cols",
        transforms=("vmap",),
    ),
    Op(
        "vmap_nested",
        "jax.vmap(jax.vmap({fn}))({0}, {1})",
        (CATEGORY,),
        FLOATS,
        bind=_bind_pairwise,
        min_rank=2,
        max_rank=3,
        hint="grid",
        transforms=("vmap",),
        weight=1.5,
    ),
    Op(
        "vmap_dot",
        "jax.vmap(jnp.dot)({0}, {1})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_batch_only,
        bind=_bind_dot_batched,
        min_rank=2,
        max_rank=2,
        hint="dots",
        transforms=("vmap",),
    ),
    Op(
        "vmap_scalar_param",
        "jax.vmap(lambda a, s: a * s + jnp.tanh(a), in_axes=(0, 0))({0}, jnp.arange({0}.shape[0], dtype={0}.dtype))",
        (CATEGORY,),
        FLOATS,
        min_rank=1,
        max_rank=3,
        hint="scaled",
        transforms=("vmap",),
    ),
)
