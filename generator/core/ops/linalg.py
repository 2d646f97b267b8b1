"""linalg: jnp.linalg / jax.scipy.linalg on (batches of) square float32 matrices.

Inputs are made well-posed in the source itself (a shifted diagonal for solve/inv, A Aᵀ + nI
for cholesky, A + Aᵀ for eigh), as careful numerical code does.
"""

from __future__ import annotations

import random

from ..types import FLOAT32, TensorType
from .base import Binding, Op

CATEGORY = "linalg"


def _square(t: TensorType) -> bool:
    return t.rank >= 2 and t.shape[-1] == t.shape[-2]


def _square_input(rng: random.Random) -> TensorType:
    n = rng.choice((2, 3, 4, 6, 8))
    batch = (rng.choice((2, 3)),) if rng.random() < 0.25 else ()
    return TensorType(batch + (n, n), "float32")


def _n(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"n": a.shape[-1]})


def _bind_rhs(rng: random.Random, a: TensorType) -> Binding:
    n = a.shape[-1]
    rhs = a.with_shape(a.shape[:-2] + (n, rng.choice((1, 2, 4))))
    return Binding(needs=(rhs,), params={"n": n})


def _infer_rhs(types, params):
    return types[1]


def _infer_eigvals(types, params):
    return types[0].with_shape(types[0].shape[:-1])


def _infer_batch_scalar(types, params):
    return types[0].with_shape(types[0].shape[:-2])


def _sq(name, template, *, infer=None, bind=_n, hint="m", weight=1.0):
    kw = {"infer": infer} if infer else {}
    return Op(
        name,
        template,
        (CATEGORY,),
        FLOAT32,
        bind=bind,
        min_rank=2,
        max_rank=3,
        requires=_square,
        new_input=_square_input,
        hint=hint,
        weight=weight,
        **kw,
    )


_T = "jnp.swapaxes({0}, -1, -2)"

OPS: tuple[Op, ...] = (
    _sq(
        "solve",
        "jnp.linalg.solve({0} + {n} * jnp.eye({n}), {1})",
        infer=_infer_rhs,
        bind=_bind_rhs,
        hint="sol",
        weight=2.0,
    ),
    _sq("cholesky", f"jnp.linalg.cholesky({{0}} @ {_T} + {{n}} * jnp.eye({{n}}))", hint="chol", weight=1.5),
    _sq("qr_q", "jnp.linalg.qr({0})[0]", hint="q"),
    _sq("qr_r", "jnp.linalg.qr({0})[1]", hint="r_factor"),
    _sq("eigh_values", f"jnp.linalg.eigh({{0}} + {_T})[0]", infer=_infer_eigvals, hint="evals", weight=1.5),
    _sq("eigh_vectors", f"jnp.linalg.eigh({{0}} + {_T})[1]", hint="evecs"),
    _sq("svd_values", "jnp.linalg.svd({0}, compute_uv=False)", infer=_infer_eigvals, hint="sv", weight=1.5),
    _sq("svd_u", "jnp.linalg.svd({0})[0]", hint="u"),
    _sq(
        "solve_triangular",
        "jax.scipy.linalg.solve_triangular(jnp.tril({0}) + {n} * jnp.eye({n}), {1}, lower=True)",
        infer=_infer_rhs,
        bind=_bind_rhs,
        hint="sol",
    ),
    _sq("det", "jnp.linalg.det({0})", infer=_infer_batch_scalar, hint="det"),
    _sq("slogdet", "jnp.linalg.slogdet({0} + {n} * jnp.eye({n}))[1]", infer=_infer_batch_scalar, hint="logdet"),
    _sq("inv", "jnp.linalg.inv({0} + {n} * jnp.eye({n}))", hint="inv", weight=1.5),
    _sq("expm", "jax.scipy.linalg.expm(0.1 * {0})", hint="expm"),
    _sq("pinv", "jnp.linalg.pinv({0})", hint="pinv"),
    _sq("matrix_power", "jnp.linalg.matrix_power({0}, 3)", hint="cube"),
    _sq("lu_factor", "jax.scipy.linalg.lu_factor({0} + {n} * jnp.eye({n}))[0]", hint="lu"),
    _sq("eigvals_real", "jnp.real(jnp.linalg.eigvals({0}))", infer=_infer_eigvals, hint="evals"),
    _sq("frobenius", "jnp.linalg.norm({0}, axis=(-2, -1))", infer=_infer_batch_scalar, hint="nrm"),
    _sq("gram", f"{_T} @ {{0}}", hint="gram"),
    _sq("trace_sq", "jnp.trace({0} @ {0}, axis1=-2, axis2=-1)", infer=_infer_batch_scalar, hint="tr"),
)
