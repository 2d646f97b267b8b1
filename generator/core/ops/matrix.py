"""Matrix ops: matmul, einsum, tensordot, transposes, traces and diagonals."""

from __future__ import annotations

import random

from ...errors import Reject
from ..types import FLOATS, NUMERIC, TensorType, broadcast_shapes
from .base import Binding, Op, bind_same_type, scalar_of_first

CATEGORY = "matrix"
# bfloat16 is left out of triu: XLA's CPU compiler (jaxlib 0.12.0.1) aborts on a non-square
# bfloat16 triu ("LLVM ERROR: Do not know how to soft promote this operator's operand!"); tril is fine.
TRIU_DTYPES = tuple(d for d in NUMERIC if d != "bfloat16")


def _bind_matmul(rng: random.Random, a: TensorType) -> Binding:
    k = a.shape[-1]
    m = rng.choice((2, 3, 4, 8, 16))
    if a.rank == 1:
        need = a.with_shape((k, m)) if rng.random() < 0.7 else a
    elif a.rank == 2:
        need = a.with_shape((k, m)) if rng.random() < 0.8 else a.with_shape((k,))
    else:
        need = a.with_shape(a.shape[:-2] + (k, m)) if rng.random() < 0.6 else a.with_shape((k, m))
    return Binding(needs=(need,))


def _infer_matmul(types, params):
    a, b = types
    if a.rank == 1 and b.rank == 1:
        return a.with_shape(())
    if a.rank == 1:
        return a.with_shape(b.shape[:-2] + b.shape[-1:])
    if b.rank == 1:
        return a.with_shape(a.shape[:-1])
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if batch is None:
        raise Reject("matmul batch dims")
    return a.with_shape(batch + (a.shape[-2], b.shape[-1]))


def _bind_einsum(rng: random.Random, a: TensorType) -> Binding:
    m = rng.choice((2, 3, 4, 8))
    if a.rank == 1:
        spec, need = rng.choice((("i,j->ij", a.with_shape((m,))), ("i,i->", a)))
    elif a.rank == 2:
        i, j = a.shape
        spec, need = rng.choice(
            (
                ("ij,jk->ik", a.with_shape((j, m))),
                ("ij,ij->i", a),
                ("ij,kj->ik", a.with_shape((m, j))),
                ("ij,j->i", a.with_shape((j,))),
            )
        )
    else:
        b, i, j = a.shape[-3:]
        if a.rank != 3:
            raise Reject("einsum rank")
        spec, need = rng.choice((("bij,bjk->bik", a.with_shape((b, j, m))), ("bij,bkj->bik", a.with_shape((b, m, j)))))
    return Binding(needs=(need,), params={"spec": spec})


def _infer_einsum(types, params):
    ins, out = params["spec"].split("->")
    sizes: dict[str, int] = {}
    for sub, t in zip(ins.split(","), types):
        for ch, d in zip(sub, t.shape):
            if sizes.setdefault(ch, d) != d:
                raise Reject("einsum sizes")
    return types[0].with_shape(tuple(sizes[ch] for ch in out))


def _bind_transpose(rng: random.Random, a: TensorType) -> Binding:
    perm = list(range(a.rank))
    while perm == sorted(perm):
        rng.shuffle(perm)
    return Binding(params={"perm": tuple(perm)})


def _infer_transpose(types, params):
    return types[0].with_shape(tuple(types[0].shape[p] for p in params["perm"]))


def _bind_outer(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a.with_shape((rng.choice((2, 3, 4, 5, 8)),)),))


def _infer_outer(types, params):
    return types[0].with_shape((types[0].size, types[1].size))


def _bind_tensordot(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a.with_shape((a.shape[-1], rng.choice((2, 3, 4, 8)))),))


def _infer_tensordot(types, params):
    return types[0].with_shape(types[0].shape[:-1] + types[1].shape[1:])


def _infer_trace(types, params):
    return types[0].with_shape(types[0].shape[2:])


def _infer_diagonal(types, params):
    s = types[0].shape
    return types[0].with_shape(s[2:] + (min(s[0], s[1]),))


OPS: tuple[Op, ...] = (
    # matrix
    Op(
        "matmul",
        "{0} @ {1}",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_matmul,
        bind=_bind_matmul,
        min_rank=1,
        max_rank=3,
        hint="proj",
        weight=3.0,
    ),
    Op(
        "dot",
        "jnp.dot({0}, {1})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_matmul,
        bind=_bind_matmul,
        min_rank=1,
        max_rank=2,
        hint="dp",
    ),
    Op(
        "einsum",
        'jnp.einsum("{spec}", {0}, {1})',
        (CATEGORY,),
        NUMERIC,
        infer=_infer_einsum,
        bind=_bind_einsum,
        min_rank=1,
        max_rank=3,
        hint="contr",
        weight=2.0,
    ),
    Op(
        "transpose",
        "jnp.transpose({0}, {perm})",
        (CATEGORY, "broadcasting"),
        NUMERIC,
        infer=_infer_transpose,
        bind=_bind_transpose,
        min_rank=2,
        hint="tr",
    ),
    Op(
        "matrix_T",
        "{0}.T",
        (CATEGORY,),
        NUMERIC,
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[::-1]),
        min_rank=2,
        max_rank=2,
        hint="tr",
    ),
    Op(
        "outer",
        "jnp.outer({0}, {1})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_outer,
        bind=_bind_outer,
        min_rank=1,
        max_rank=1,
        hint="out",
    ),
    Op(
        "tensordot",
        "jnp.tensordot({0}, {1}, axes=1)",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_tensordot,
        bind=_bind_tensordot,
        min_rank=1,
        max_rank=3,
        hint="contr",
    ),
    Op(
        "trace",
        "jnp.trace({0})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_trace,
        min_rank=2,
        max_rank=3,
        hint="tr_sum",
        weight=0.5,
    ),
    Op(
        "diagonal",
        "jnp.diagonal({0})",
        (CATEGORY,),
        NUMERIC,
        infer=_infer_diagonal,
        min_rank=2,
        max_rank=3,
        hint="diag",
        weight=0.5,
    ),
    Op("triu", "jnp.triu({0})", (CATEGORY,), TRIU_DTYPES, min_rank=2, max_rank=3, hint="upper", weight=0.5),
    Op("tril", "jnp.tril({0})", (CATEGORY,), NUMERIC, min_rank=2, max_rank=3, hint="lower", weight=0.5),
    Op(
        "vdot",
        "jnp.vdot({0}, {1})",
        (CATEGORY,),
        FLOATS,
        infer=scalar_of_first,
        bind=bind_same_type,
        min_rank=1,
        max_rank=2,
        hint="dp",
        weight=0.5,
    ),
)
