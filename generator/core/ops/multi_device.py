"""multi_device: shard_map with collectives and sharding constraints on a mesh of host CPUs.

These programs need ``HOST_DEVICES`` devices: the module header makes a 4x2 mesh (``MESH``,
axes ``data`` and ``model``); lowering happens in a process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (``generator.runtime.device_server``).
"""

from __future__ import annotations

import random

from ..types import FLOAT32, TensorType
from .base import Binding, Op

CATEGORY = "multi_device"

HOST_DEVICES = 8
MESH_SHAPE = {"data": 4, "model": 2}
MESH_HEADER = (
    "from functools import partial\n"
    "from jax.sharding import AxisType, NamedSharding, PartitionSpec as P\n\n"
    'MESH = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))\n'
)


def _divisible(t: TensorType) -> bool:
    return t.rank == 2 and t.shape[0] % 16 == 0 and t.shape[1] % 8 == 0


def _sharded_input(rng: random.Random) -> TensorType:
    return TensorType((rng.choice((16, 32, 64)), rng.choice((8, 16, 32))), "float32")


def _md(name, template, **kw):
    return Op(
        name,
        template,
        (CATEGORY,),
        FLOAT32,
        requires=_divisible,
        new_input=_sharded_input,
        min_rank=2,
        max_rank=2,
        devices=HOST_DEVICES,
        **kw,
    )


_SM = "@partial(jax.shard_map, mesh=MESH, in_specs={ins}, out_specs={outs}{extra})\ndef {kind}_{r}({args}):\n"


def _shard_map(kind, ins, outs, args, body, call, extra=""):
    return _SM.format(kind=kind, ins=ins, outs=outs, args=args, extra=extra, r="{r}") + body + "\n" + call


def _bind_tp(rng: random.Random, x: TensorType) -> Binding:
    return Binding(
        needs=(x.with_shape((x.shape[1], rng.choice((8, 16, 32)))),),
        params={"act": rng.choice(("jax.nn.relu", "jnp.tanh", "jax.nn.gelu"))},
    )


def _infer_tp(types, params):
    return types[0].with_shape((types[0].shape[0], types[1].shape[1]))


def _bind_ring(rng: random.Random, x: TensorType) -> Binding:
    return Binding(params={"shift": rng.choice((1, 2, 3))})


OPS: tuple[Op, ...] = (
    _md(
        "tensor_parallel_matmul",
        _shard_map(
            "tp",
            '(P("data", "model"), P("model", None))',
            'P("data", None)',
            "a, w",
            '    return lax.psum(a @ w, "model")',
            "{act}(tp_{r}({0}, {1}))",
        ),
        infer=_infer_tp,
        bind=_bind_tp,
        hint="hidden",
        weight=2.0,
    ),
    _md(
        "psum_rows",
        _shard_map(
            "colsum",
            'P("data", None)',
            "P()",
            "a",
            '    return lax.psum(jnp.sum(a, axis=0), "data")',
            "colsum_{r}({0})",
        ),
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[1:]),
        hint="totals",
    ),
    _md(
        "pmean_normalize",
        _shard_map(
            "norm",
            'P("data", None)',
            'P("data", None)',
            "a",
            '    mu = lax.pmean(jnp.mean(a, axis=0), "data")\n    return a - mu',
            "norm_{r}({0})",
        ),
        hint="centered",
    ),
    _md(
        "pmax_scale",
        _shard_map(
            "scale",
            'P("data", None)',
            'P("data", None)',
            "a",
            '    return a / (lax.pmax(jnp.max(jnp.abs(a)), "data") + 1e-6)',
            "scale_{r}({0})",
        ),
        hint="scaled",
    ),
    _md(
        "all_gather",
        _shard_map(
            "gather",
            'P("data", None)',
            "P()",
            "a",
            '    return lax.all_gather(a, "data", tiled=True) * 2.0',
            "gather_{r}({0})",
            extra=", check_vma=False",
        ),
        hint="gathered",
    ),
    _md(
        "ring_ppermute",
        _shard_map(
            "ring",
            'P("data", None)',
            'P("data", None)',
            "a",
            '    return lax.ppermute(a, "data", perm=[(i, (i + {shift}) % 4) for i in range(4)])',
            "ring_{r}({0})",
        ),
        bind=_bind_ring,
        hint="shifted",
        weight=1.5,
    ),
    _md(
        "all_to_all",
        _shard_map(
            "a2a",
            'P("data", None)',
            'P(None, "data")',
            "a",
            '    return lax.all_to_all(a, "data", 1, 0, tiled=True)',
            "a2a_{r}({0})",
        ),
        hint="transposed",
    ),
    _md(
        "psum_scatter",
        _shard_map(
            "rs",
            'P("data", None)',
            'P("data", None)',
            "a",
            '    return lax.psum_scatter(a, "data", scatter_dimension=0, tiled=True)',
            "rs_{r}({0})",
        ),
        infer=lambda ts, p: ts[0].with_shape((ts[0].shape[0] // 4,) + ts[0].shape[1:]),
        hint="reduced",
    ),
    _md(
        "axis_index_offset",
        _shard_map(
            "offset",
            'P("data", "model")',
            'P("data", "model")',
            "a",
            '    return a + lax.axis_index("data") * 10.0 + lax.axis_index("model")',
            "offset_{r}({0})",
        ),
        hint="tagged",
    ),
    _md(
        "sharding_constraint",
        'lax.with_sharding_constraint({0} * 2.0, NamedSharding(MESH, P("data", "model")))',
        hint="placed",
        weight=1.5,
    ),
)
