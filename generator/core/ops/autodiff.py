"""autodiff: grad, value_and_grad, jvp, vjp, hessian/jacfwd/jacrev, checkpoint, custom rules."""

from __future__ import annotations

import random

from ..types import FLOAT32, TensorType
from .base import Binding, Op, bind_same_type, same_as_second, scalar_of_first

CATEGORY = "autodiff"

# Scalar-valued objectives of an array ``a``...
_OBJECTIVES = (
    "jnp.sum(jnp.tanh(a) ** 2)",
    "jnp.sum(jnp.sin(a) * a)",
    "jnp.mean(jnp.exp(-a * a))",
    "jnp.sum(jax.nn.softplus(a))",
    "jnp.sum(jnp.log1p(a * a))",
    "jax.nn.logsumexp(a)",
)
# ...and of a scalar ``a``, which is its own objective: there is nothing to sum.
_SCALAR_OBJECTIVES = (
    "jnp.tanh(a) ** 2",
    "jnp.sin(a) * a",
    "jnp.exp(-a * a)",
    "jax.nn.softplus(a)",
    "jnp.log1p(a * a)",
)
# Array-valued maps of ``a`` (same shape): elementwise ones (for scalars too), then ones that
# read the whole array.
_ELEMENTWISE_MAPS = (
    "jnp.sin(a) * a",
    "jnp.tanh(a) * 2.0",
    "jnp.exp(-a) + a ** 2",
)
_MAPS = (*_ELEMENTWISE_MAPS, "a * jnp.sum(a)", "jax.nn.softmax(a, axis=None)")


def _vector(rng: random.Random) -> TensorType:
    return TensorType((rng.choice((2, 3, 4, 5, 8)),), "float32")


def _bind_objective(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"f": rng.choice(_OBJECTIVES if a.rank else _SCALAR_OBJECTIVES)})


def _bind_map(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"f": rng.choice(_MAPS if a.rank else _ELEMENTWISE_MAPS)})


def _infer_jacobian(types, params):
    n = types[0].shape[0]
    return types[0].with_shape((n, n))


def _bind_value_and_grad(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a.with_shape((a.shape[-1], rng.choice((2, 4, 8)))),))


OPS: tuple[Op, ...] = (
    Op(
        "grad",
        "jax.grad(lambda a: {f})({0})",
        (CATEGORY,),
        FLOAT32,
        bind=_bind_objective,
        hint="g",
        transforms=("grad",),
        weight=2.0,
    ),
    Op(
        "value_and_grad",
        "loss_{r}, grad_{r} = jax.value_and_grad(lambda w: jnp.mean(jnp.tanh({0} @ w) ** 2))({1})\n{1} - 0.1 * loss_{r} * grad_{r}",
        (CATEGORY,),
        FLOAT32,
        infer=same_as_second,
        bind=_bind_value_and_grad,
        min_rank=2,
        max_rank=2,
        hint="w_new",
        transforms=("value_and_grad",),
        weight=2.0,
    ),
    Op(
        "jvp",
        "jax.jvp(lambda a: {f}, ({0},), (jnp.ones_like({0}),))[1]",
        (CATEGORY,),
        FLOAT32,
        bind=_bind_map,
        hint="tangent",
        transforms=("jvp",),
    ),
    Op(
        "vjp",
        "out_{r}, pullback_{r} = jax.vjp(lambda a: {f}, {0})\npullback_{r}(jnp.ones_like(out_{r}))[0]",
        (CATEGORY,),
        FLOAT32,
        bind=_bind_map,
        hint="cotangent",
        transforms=("vjp",),
    ),
    Op(
        "hessian",
        "jax.hessian(lambda a: {f})({0})",
        (CATEGORY,),
        FLOAT32,
        infer=_infer_jacobian,
        bind=_bind_objective,
        min_rank=1,
        max_rank=1,
        new_input=_vector,
        hint="hess",
        transforms=("hessian",),
    ),
    Op(
        "jacfwd",
        "jax.jacfwd(lambda a: {f})({0})",
        (CATEGORY,),
        FLOAT32,
        infer=_infer_jacobian,
        bind=_bind_map,
        min_rank=1,
        max_rank=1,
        new_input=_vector,
        hint="jac",
        transforms=("jacfwd",),
    ),
    Op(
        "jacrev",
        "jax.jacrev(lambda a: {f})({0})",
        (CATEGORY,),
        FLOAT32,
        infer=_infer_jacobian,
        bind=_bind_map,
        min_rank=1,
        max_rank=1,
        new_input=_vector,
        hint="jac",
        transforms=("jacrev",),
    ),
    Op(
        "checkpoint_grad",
        "jax.grad(lambda a: jnp.sum(jax.checkpoint(lambda b: jnp.sin(jnp.sin(b)) * b)(a)))({0})",
        (CATEGORY,),
        FLOAT32,
        min_rank=1,  # its objective reduces the array
        hint="g",
        transforms=("grad", "checkpoint"),
    ),
    Op(
        "custom_vjp",
        "@jax.custom_vjp\ndef clipped_{r}(a):\n    return jnp.tanh(a)\n"
        "def clipped_{r}_fwd(a):\n    return jnp.tanh(a), a\n"
        "def clipped_{r}_bwd(res, g):\n    return (jnp.clip(g * (1.0 - jnp.tanh(res) ** 2), -1.0, 1.0),)\n"
        "clipped_{r}.defvjp(clipped_{r}_fwd, clipped_{r}_bwd)\n"
        "jax.grad(lambda a: jnp.sum(clipped_{r}(a) * a))({0})",
        (CATEGORY,),
        FLOAT32,
        min_rank=1,  # its objective reduces the array
        hint="g",
        transforms=("custom_vjp", "grad"),
        weight=1.5,
    ),
    Op(
        "custom_jvp",
        "@jax.custom_jvp\ndef softplus_{r}(a):\n    return jnp.logaddexp(a, 0.0)\n"
        "@softplus_{r}.defjvp\ndef softplus_{r}_jvp(primals, tangents):\n    (a,), (t,) = primals, tangents\n"
        "    return softplus_{r}(a), jax.nn.sigmoid(a) * t\n"
        "jax.grad(lambda a: jnp.sum(softplus_{r}(a)))({0})",
        (CATEGORY,),
        FLOAT32,
        min_rank=1,  # its objective reduces the array
        hint="g",
        transforms=("custom_jvp", "grad"),
        weight=1.5,
    ),
    Op(
        "grad_max_pool",
        'jax.grad(lambda a: jnp.sum(lax.reduce_window(a, -jnp.inf, lax.max, (2, 2), (2, 2), "VALID") ** 2))({0})',
        (CATEGORY,),
        FLOAT32,
        requires=lambda t: t.shape[0] % 2 == 0 and t.shape[1] % 2 == 0,
        new_input=lambda r: TensorType((r.choice((2, 4, 8)), r.choice((2, 4, 8))), "float32"),
        min_rank=2,
        max_rank=2,
        hint="g",
        transforms=("grad",),
    ),
    Op(
        "grad_of_loss",
        "jax.grad(lambda a: jnp.mean((a - {1}) ** 2))({0})",
        (CATEGORY,),
        FLOAT32,
        bind=bind_same_type,
        min_rank=1,  # its objective reduces the array
        hint="g",
        transforms=("grad",),
    ),
    Op(
        "value_scalar",
        "jax.value_and_grad(lambda a: {f})({0})[0]",
        (CATEGORY,),
        FLOAT32,
        infer=scalar_of_first,
        bind=_bind_objective,
        hint="val",
        transforms=("value_and_grad",),
    ),
)
