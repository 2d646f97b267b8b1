"""Composite idioms: softmax, normalizations, losses, one-hot, polynomials and spectral filters."""

from __future__ import annotations

import random

from ..types import COMPLEX64, FLOAT32, FLOATS, INTS, TensorType
from .base import (
    Binding,
    Op,
    along_axis,
    bind_same_type,
    infer_last_axis_reduced,
    longer_last_axis,
    scalar_of_first,
    unary,
)

CATEGORY = "composite"


def _bind_poly(rng: random.Random, a: TensorType) -> Binding:
    cs = [rng.choice(("0.5", "1.5", "2.0", "0.25", "3.0", "1.0")) for _ in range(4)]
    return Binding(params={f"c{i}": c for i, c in enumerate(cs)})


def _bind_onehot(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"k": rng.choice((4, 8, 10))})


def _infer_onehot(types, params):
    return TensorType(types[0].shape + (params["k"],), "float32")


OPS: tuple[Op, ...] = (
    # composite
    along_axis(
        "softmax", "jax.nn.softmax({0}, axis={axis})", (CATEGORY,), FLOATS, hint="probs", weight=2.0, upcast=True
    ),
    along_axis("log_softmax", "jax.nn.log_softmax({0}, axis={axis})", (CATEGORY,), FLOATS, hint="logp", upcast=True),
    Op(
        "layer_norm",
        "({0} - jnp.mean({0}, axis=-1, keepdims=True)) / jnp.sqrt(jnp.var({0}, axis=-1, keepdims=True) + 1e-5)",
        (CATEGORY,),
        FLOATS,
        min_rank=1,
        requires=longer_last_axis,
        hint="normed",
        weight=1.5,
        upcast=True,
    ),
    Op(
        "rms_norm",
        "{0} * lax.rsqrt(jnp.mean(jnp.square({0}), axis=-1, keepdims=True) + 1e-6)",
        (CATEGORY,),
        FLOATS,
        min_rank=1,
        requires=longer_last_axis,
        hint="normed",
        upcast=True,
    ),
    Op(
        "l2_normalize",
        "{0} / (jnp.linalg.norm({0}, axis=-1, keepdims=True) + 1e-6)",
        (CATEGORY,),
        FLOATS,
        min_rank=1,
        requires=longer_last_axis,
        hint="unit",
        upcast=True,
    ),
    unary("relu", "jax.nn.relu({0})", (CATEGORY,), hint="act", weight=1.5),
    unary("gelu", "jax.nn.gelu({0})", (CATEGORY,), hint="act", weight=1.5),
    unary("gelu_exact", "jax.nn.gelu({0}, approximate=False)", (CATEGORY,), hint="act", weight=0.5),
    unary("silu", "jax.nn.silu({0})", (CATEGORY,), hint="act"),
    unary("softplus", "jax.nn.softplus({0})", (CATEGORY,), hint="act"),
    unary("leaky_relu", "jax.nn.leaky_relu({0}, 0.1)", (CATEGORY,), hint="act"),
    unary("elu", "jax.nn.elu({0})", (CATEGORY,), hint="act", weight=0.5),
    unary("log_sigmoid", "jax.nn.log_sigmoid({0})", (CATEGORY,), hint="logp", weight=0.5),
    Op(
        "polynomial",
        "(({c3} * {0} + {c2}) * {0} + {c1}) * {0} + {c0}",
        (CATEGORY, "arithmetic"),
        FLOATS,
        bind=_bind_poly,
        hint="poly",
    ),
    Op(
        "mse",
        "jnp.mean(({0} - {1}) ** 2)",
        (CATEGORY,),
        FLOATS,
        infer=scalar_of_first,
        bind=bind_same_type,
        min_rank=1,
        hint="loss",
        upcast=True,
    ),
    Op(
        "cosine_similarity",
        "jnp.sum({0} * {1}, axis=-1) / (jnp.linalg.norm({0}, axis=-1) * jnp.linalg.norm({1}, axis=-1) + 1e-8)",
        (CATEGORY,),
        FLOATS,
        infer=infer_last_axis_reduced,
        bind=bind_same_type,
        min_rank=1,
        requires=longer_last_axis,
        hint="sim",
        upcast=True,
    ),
    Op(
        "one_hot",
        "jax.nn.one_hot({0}, {k})",
        (CATEGORY,),
        INTS,
        infer=_infer_onehot,
        bind=_bind_onehot,
        max_rank=2,
        hint="onehot",
    ),
    Op(
        "standardize",
        "jax.nn.standardize({0}, axis=-1)",
        (CATEGORY,),
        FLOATS,
        min_rank=1,
        requires=longer_last_axis,
        hint="z",
        upcast=True,
    ),
    # spectral idioms
    Op(
        "fft",
        "jnp.fft.fft({0})",  # a float32 signal is made complex by fft itself
        (CATEGORY,),
        FLOAT32 + COMPLEX64,
        infer=lambda ts, p: ts[0].with_dtype("complex64"),
        min_rank=1,
        hint="spec",
        weight=0.5,
    ),
    Op(
        "rfft_power",
        "jnp.abs(jnp.fft.rfft({0})) ** 2",
        (CATEGORY,),
        FLOAT32,
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[:-1] + (ts[0].shape[-1] // 2 + 1,)),
        min_rank=1,
        hint="psd",
        weight=0.5,
    ),
    Op(
        "spectral_lowpass",
        "spec_{r} = jnp.fft.rfft({0})\njnp.fft.irfft(spec_{r} * (jnp.arange(spec_{r}.shape[-1]) < {keep}), n={0}.shape[-1])",
        (CATEGORY,),
        FLOAT32,
        bind=lambda r, a: Binding(params={"keep": r.choice((1, 2, 4))}),
        min_rank=1,
        hint="smooth",
        weight=0.5,
    ),
)
