"""random: jax.random keys, splits and samplers (raw uint32[2] keys, threefry by default)."""

from __future__ import annotations

import random

from ..types import TensorType
from .base import Binding, Op

CATEGORY = "random"

KEY = TensorType((2,), "uint32")
KEY_DTYPES = ("uint32",)


def _is_key(t: TensorType) -> bool:
    return t == KEY


def _key_input(rng: random.Random) -> TensorType:
    return KEY


def _bind_shape(rng: random.Random, key: TensorType) -> Binding:
    rank = rng.choice((0, 1, 2, 2, 3))
    shape = tuple(rng.choice((2, 3, 4, 8, 16)) for _ in range(rank))
    return Binding(params={"shape": shape})


def _bind_uniform(rng: random.Random, key: TensorType) -> Binding:
    b = _bind_shape(rng, key)
    lo, hi = rng.choice((("0.0", "1.0"), ("-1.0", "1.0"), ("-0.5", "2.0")))
    return Binding(params={**b.params, "lo": lo, "hi": hi})


def _bind_randint(rng: random.Random, key: TensorType) -> Binding:
    b = _bind_shape(rng, key)
    return Binding(params={**b.params, "hi": rng.choice((2, 10, 100, 1000))})


def _bind_categorical(rng: random.Random, key: TensorType) -> Binding:
    logits = TensorType((rng.choice((1, 2, 4, 8)), rng.choice((3, 5, 10))), "float32")
    return Binding(needs=(logits,))


def _bind_dropout(rng: random.Random, key: TensorType) -> Binding:
    x = TensorType(tuple(rng.choice((4, 8, 16)) for _ in range(rng.choice((1, 2, 3)))), "float32")
    return Binding(needs=(x,), params={"keep": rng.choice(("0.9", "0.8", "0.5"))})


def _bind_permutation(rng: random.Random, key: TensorType) -> Binding:
    return Binding(params={"n": rng.choice((4, 8, 10, 16))})


def _bind_fold(rng: random.Random, key: TensorType) -> Binding:
    return Binding(params={"data": rng.choice((1, 7, 42, 1234))})


def _of(dtype):
    def infer(types, params):
        return TensorType(tuple(params["shape"]), dtype)

    return infer


def _sampler(name, template, out, bind=_bind_shape, hint="sample", weight=1.0, **kw):
    return Op(
        name,
        template,
        (CATEGORY,),
        KEY_DTYPES,
        infer=kw.pop("infer", _of(out)),
        bind=bind,
        requires=_is_key,
        new_input=_key_input,
        hint=hint,
        weight=weight,
        min_rank=1,
        max_rank=1,
        **kw,
    )


OPS: tuple[Op, ...] = (
    _sampler("normal", "jax.random.normal({0}, {shape})", "float32", hint="noise", weight=2.0),
    _sampler(
        "uniform",
        "jax.random.uniform({0}, {shape}, minval={lo}, maxval={hi})",
        "float32",
        bind=_bind_uniform,
        hint="u",
        weight=1.5,
    ),
    _sampler("bernoulli", "jax.random.bernoulli({0}, 0.3, {shape})", "bool", hint="coin"),
    _sampler("randint", "jax.random.randint({0}, {shape}, 0, {hi})", "int32", bind=_bind_randint, hint="ints"),
    _sampler("truncated_normal", "jax.random.truncated_normal({0}, -2.0, 2.0, {shape})", "float32", hint="noise"),
    _sampler("gumbel", "jax.random.gumbel({0}, {shape})", "float32", hint="g_noise", weight=0.5),
    _sampler("exponential", "jax.random.exponential({0}, {shape})", "float32", hint="waits", weight=0.5),
    _sampler("laplace", "jax.random.laplace({0}, {shape})", "float32", hint="noise", weight=0.5),
    _sampler("bits", "jax.random.bits({0}, {shape})", "uint32", hint="raw_bits", weight=0.5),
    _sampler(
        "rng_bit_generator",
        "lax.rng_bit_generator(jnp.concatenate([{0}, {0}]), {shape})[1]",
        "uint32",
        hint="raw_bits",
        weight=0.5,
    ),
    _sampler(
        "permutation",
        "jax.random.permutation({0}, {n})",
        "int32",
        bind=_bind_permutation,
        infer=lambda ts, p: TensorType((p["n"],), "int32"),
        hint="perm",
    ),
    _sampler(
        "categorical",
        "jax.random.categorical({0}, {1})",
        "int32",
        bind=_bind_categorical,
        infer=lambda ts, p: TensorType(ts[1].shape[:-1], "int32"),
        hint="choice",
    ),
    _sampler(
        "split",
        "jax.random.split({0})[1]",
        "uint32",
        bind=lambda r, k: Binding(),
        infer=lambda ts, p: KEY,
        hint="subkey",
        weight=2.0,
    ),
    _sampler(
        "split_many",
        "jax.random.split({0}, 4)[{i}]",
        "uint32",
        bind=lambda r, k: Binding(params={"i": r.randrange(4)}),
        infer=lambda ts, p: KEY,
        hint="subkey",
    ),
    _sampler(
        "fold_in", "jax.random.fold_in({0}, {data})", "uint32", bind=_bind_fold, infer=lambda ts, p: KEY, hint="subkey"
    ),
    _sampler(
        "dropout",
        "jnp.where(jax.random.bernoulli({0}, {keep}, {1}.shape), {1} / {keep}, 0.0)",
        "float32",
        bind=_bind_dropout,
        infer=lambda ts, p: ts[1],
        hint="dropped",
        weight=1.5,
    ),
)
