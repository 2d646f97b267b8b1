"""random: typed PRNG keys as current JAX code uses them.

Programs take typed keys (``jax.random.key``: ``key<fry>``, threefry2x32) and key arrays
(``jax.random.split(key, n)``: ``key<fry>[n]``) as arguments, or make a key from a traced seed
(``jax.random.key(step)``, also with ``dtype="rbg"``, whose samplers lower to XLA's
``RngBitGenerator``); they split keys, fold data into them (a constant, or a traced step),
index key arrays, sample from keys and map samplers over key arrays with ``jax.vmap``. A key
never enters an array op: ``jax.random.key_data`` is the only way to its bits, and no program
needs it.
"""

from __future__ import annotations

import random

from ..types import TensorType
from .base import Binding, Op

CATEGORY = "random"

KEY = "key<fry>"  # jax.random.key(seed): threefry2x32, JAX's default implementation
RBG_KEY = "key<rbg>"  # jax.random.key(seed, dtype="rbg"): XLA's RngBitGenerator
KEY_DTYPES = (KEY, RBG_KEY)
KEY_ARRAY_SIZES = (2, 4, 8, 16)


def _key_input(rng: random.Random) -> TensorType:
    return TensorType((), KEY)


def _keys_input(rng: random.Random) -> TensorType:
    return TensorType((rng.choice(KEY_ARRAY_SIZES),), KEY)


def _seed_input(rng: random.Random) -> TensorType:
    return TensorType((), "int32")


def _shape(rng: random.Random) -> tuple[int, ...]:
    rank = rng.choice((0, 1, 2, 2, 3))
    return tuple(rng.choice((2, 3, 4, 8, 16)) for _ in range(rank))


def _bind_shape(rng: random.Random, key: TensorType) -> Binding:
    return Binding(params={"shape": _shape(rng)})


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


def _bind_step(rng: random.Random, key: TensorType) -> Binding:
    return Binding(needs=(TensorType((), "int32"),))


def _bind_split_keys(rng: random.Random, key: TensorType) -> Binding:
    return Binding(params={"n": rng.choice(KEY_ARRAY_SIZES)})


def _bind_index(rng: random.Random, keys: TensorType) -> Binding:
    return Binding(params={"i": rng.randrange(keys.shape[0])})


def _bind_batch_dropout(rng: random.Random, keys: TensorType) -> Binding:
    """One example per key: the batch's leading dimension is the key array's."""
    rest = tuple(rng.choice((4, 8, 16, 32)) for _ in range(rng.choice((1, 2))))
    return Binding(needs=(TensorType(keys.shape + rest, "float32"),), params={"keep": rng.choice(("0.9", "0.8"))})


def _of(dtype):
    def infer(types, params):
        return TensorType(tuple(params["shape"]), dtype)

    return infer


def _same_key(types, params):
    """A key of the operand key's implementation."""
    return TensorType((), types[0].dtype)


def _per_key(dtype):
    """One sample of ``shape`` per key of the key array."""

    def infer(types, params):
        return TensorType(types[0].shape + tuple(params["shape"]), dtype)

    return infer


def _sampler(name, template, out, bind=_bind_shape, hint="sample", weight=1.0, **kw):
    """An op on one typed key (of either implementation)."""
    return Op(
        name,
        template,
        (CATEGORY,),
        KEY_DTYPES,
        infer=kw.pop("infer", _of(out)),
        bind=bind,
        new_input=_key_input,
        hint=hint,
        weight=weight,
        min_rank=0,
        max_rank=0,
        **kw,
    )


def _over_keys(name, template, infer, bind=_bind_shape, hint="sample", weight=1.0, **kw):
    """An op on a key array (``jax.random.split(key, n)``, one key per example)."""
    return Op(
        name,
        template,
        (CATEGORY,),
        (KEY,),
        infer=infer,
        bind=bind,
        new_input=_keys_input,
        hint=hint,
        weight=weight,
        min_rank=1,
        max_rank=1,
        **kw,
    )


def _from_seed(name, template, key_dtype, weight):
    """A key made from a traced integer seed (``jax.random.key(step)``)."""
    return Op(
        name,
        template,
        (CATEGORY,),
        ("int32",),
        infer=lambda ts, p: TensorType((), key_dtype),
        new_input=_seed_input,
        hint="key",
        weight=weight,
        min_rank=0,
        max_rank=0,
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
        "dropout",
        "jnp.where(jax.random.bernoulli({0}, {keep}, {1}.shape), {1} / {keep}, 0.0)",
        "float32",
        bind=_bind_dropout,
        infer=lambda ts, p: ts[1],
        hint="dropped",
        weight=1.5,
    ),
    # keys from keys
    _sampler(
        "split",
        "jax.random.split({0})[1]",
        KEY,
        bind=lambda r, k: Binding(),
        infer=_same_key,
        hint="subkey",
        weight=2.0,
    ),
    _sampler(
        "split_many",
        "jax.random.split({0}, 4)[{i}]",
        KEY,
        bind=lambda r, k: Binding(params={"i": r.randrange(4)}),
        infer=_same_key,
        hint="subkey",
    ),
    _sampler("fold_in", "jax.random.fold_in({0}, {data})", KEY, bind=_bind_fold, infer=_same_key, hint="subkey"),
    _sampler("fold_in_step", "jax.random.fold_in({0}, {1})", KEY, bind=_bind_step, infer=_same_key, hint="step_key"),
    _sampler(
        "split_keys",
        "jax.random.split({0}, {n})",
        KEY,
        bind=_bind_split_keys,
        infer=lambda ts, p: TensorType((p["n"],), ts[0].dtype),
        hint="keys",
    ),
    # key arrays
    _over_keys("key_at", "{0}[{i}]", lambda ts, p: TensorType((), ts[0].dtype), bind=_bind_index, hint="subkey"),
    _over_keys(
        "vmap_normal",
        "jax.vmap(lambda k: jax.random.normal(k, {shape}))({0})",
        _per_key("float32"),
        hint="noise",
        transforms=("vmap",),
    ),
    _over_keys(
        "vmap_uniform",
        "jax.vmap(lambda k: jax.random.uniform(k, {shape}))({0})",
        _per_key("float32"),
        hint="u",
        transforms=("vmap",),
        weight=0.5,
    ),
    _over_keys(
        "vmap_dropout",
        "jax.vmap(lambda k, x: jnp.where(jax.random.bernoulli(k, {keep}, x.shape), x / {keep}, 0.0))({0}, {1})",
        lambda ts, p: ts[1],
        bind=_bind_batch_dropout,
        hint="dropped",
        transforms=("vmap",),
    ),
    # keys from seeds
    _from_seed("key", "jax.random.key({0})", KEY, weight=0.7),
    _from_seed("key_rbg", 'jax.random.key({0}, dtype="rbg")', RBG_KEY, weight=0.4),
)
