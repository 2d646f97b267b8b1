"""dynamic_shapes: programs over a symbolic leading dimension ``b`` (``jax.export.symbolic_shape``).

Inputs these ops create have ``SYMBOLIC_SIZE`` rows; the renderer writes that dimension as
the symbol ``b`` in ``example_args()``, so the lowered IR has ``?`` dimensions and shape ops
(``get_dimension_size``, ``dynamic_iota``, ``dynamic_broadcast_in_dim``...). The sampler
tracks ``b`` by its example value; every op here is polymorphic in it.
"""

from __future__ import annotations

import random

from ..types import FLOAT32, TensorType
from .base import Binding, Op

CATEGORY = "dynamic_shapes"

SYMBOLIC_SIZE = 7  # no other sampler draws 7, so only the symbolic dimension has this size
SYMBOL = "b"
FLOAT32_INT32 = ("float32", "int32")


def _batch_first(t: TensorType) -> bool:
    return t.rank >= 1 and t.shape[0] == SYMBOLIC_SIZE


def _batched_input(rng: random.Random) -> TensorType:
    rest = tuple(rng.choice((2, 4, 8, 16)) for _ in range(rng.choice((0, 1, 1, 2))))
    return TensorType((SYMBOLIC_SIZE,) + rest, rng.choice(("float32", "float32", "int32")))


def _dyn(name, template, dtypes=FLOAT32_INT32, **kw):
    kw.setdefault("min_rank", 1)
    return Op(name, template, (CATEGORY,), dtypes, requires=_batch_first, new_input=_batched_input, **kw)


def _bind_dense(rng: random.Random, x: TensorType) -> Binding:
    h = rng.choice((4, 8, 16))
    return Binding(
        needs=(x.with_shape((x.shape[-1], h)),), params={"act": rng.choice(("jnp.tanh", "jax.nn.relu", "jax.nn.gelu"))}
    )


def _infer_dense(types, params):
    return types[0].with_shape(types[0].shape[:-1] + types[1].shape[-1:])


def _drop_batch(types, params):
    return types[0].with_shape(types[0].shape[1:])


OPS: tuple[Op, ...] = (
    _dyn(
        "dyn_dense",
        "{act}({0} @ {1})",
        FLOAT32,
        infer=_infer_dense,
        bind=_bind_dense,
        min_rank=2,
        hint="hidden",
        weight=2.0,
    ),
    _dyn("dyn_batch_mean", "jnp.mean({0}, axis=0)", FLOAT32, infer=_drop_batch, hint="avg", weight=1.5),
    _dyn("dyn_batch_max", "jnp.max({0}, axis=0)", infer=_drop_batch, hint="peak"),
    _dyn(
        "dyn_position_scale",
        "{0} * jnp.arange({0}.shape[0], dtype={0}.dtype).reshape((-1,) + (1,) * ({0}.ndim - 1))",
        hint="scaled",
        weight=1.5,
    ),
    _dyn("dyn_center", "{0} - jnp.mean({0}, axis=0, keepdims=True)", FLOAT32, hint="centered", weight=1.5),
    _dyn("dyn_cumsum", "jnp.cumsum({0}, axis=0)", hint="run"),
    _dyn("dyn_sort", "jnp.sort({0}, axis=0)", hint="srt"),
    _dyn("dyn_softmax_batch", "jax.nn.softmax({0}, axis=0)", FLOAT32, hint="probs"),
    _dyn("dyn_broadcast_row", "jnp.broadcast_to({0}[:1], {0}.shape) + {0}", hint="bc"),
    _dyn(
        "dyn_flatten",
        "{0}.reshape({0}.shape[0], -1)",
        infer=lambda ts, p: ts[0].with_shape((ts[0].shape[0], ts[0].size // ts[0].shape[0])),
        min_rank=2,
        hint="flat",
    ),
    _dyn("dyn_ones_like_batch", "{0} + jnp.ones(({0}.shape[0],) + {0}.shape[1:], dtype={0}.dtype)", hint="shifted"),
    _dyn("dyn_where_mean", "jnp.where({0} > jnp.mean({0}), {0}, jnp.zeros_like({0}))", FLOAT32, hint="masked"),
    _dyn(
        "dyn_norm_rows", "{0} / (jnp.linalg.norm({0}, axis=-1, keepdims=True) + 1e-6)", FLOAT32, min_rank=2, hint="unit"
    ),
    _dyn(
        "dyn_count",
        "jnp.sum(jnp.ones_like({0}, dtype=jnp.int32), axis=0)",
        infer=lambda ts, p: TensorType(ts[0].shape[1:], "int32"),
        hint="counts",
    ),
)
