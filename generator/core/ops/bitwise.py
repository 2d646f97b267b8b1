"""bitwise: integer arithmetic, shifts, popcount, clz, bitcasts and dtype conversions."""

from __future__ import annotations

import random

from ..types import BITS, TensorType
from .base import Binding, LiteralNeed, Op, broadcast_partner, longer_last_axis

CATEGORY = "bitwise"


def _int_input(rng: random.Random) -> TensorType:
    shape = tuple(rng.choice((2, 4, 8, 16)) for _ in range(rng.choice((0, 1, 1, 2, 2, 3))))
    return TensorType(shape, rng.choice(BITS))


def _bind_partner(rng: random.Random, a: TensorType) -> Binding:
    if rng.random() < 0.3:
        return Binding(needs=(LiteralNeed(("3", "5", "7", "15", "1")),))
    return Binding(needs=(broadcast_partner(rng, a),))


def _infer_broadcast(types, params):
    from .base import infer_binary

    return infer_binary()(types, params)


def _infer_int_sum(types, params):
    t = types[0]
    # Like NumPy, jnp.sum widens small signed integers to the default int.
    return TensorType(t.shape[:-1], "int32" if t.dtype == "int8" else t.dtype)


def _bind_shift(rng: random.Random, a: TensorType) -> Binding:
    bits = {"int8": 8, "int32": 32, "uint32": 32}[a.dtype]
    return Binding(params={"k": rng.randrange(1, bits), "dt": f"jnp.{a.dtype}"})


def _bind_convert(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"to": rng.choice([d for d in BITS + ("float32",) if d != a.dtype])})


def _bind_bitcast(rng: random.Random, a: TensorType) -> Binding:
    # Integers are never reinterpreted as floats: most bit patterns with an all-ones
    # exponent are NaN, and a dataset row should compute finite values.
    to = {"int32": ("uint32",), "uint32": ("int32",), "int8": ("uint8",), "float32": ("int32", "uint32")}[a.dtype]
    return Binding(params={"to": rng.choice(to)})


def _op(name, template, **kw):
    return Op(name, template, (CATEGORY,), kw.pop("dtypes", BITS), new_input=_int_input, **kw)


OPS: tuple[Op, ...] = (
    _op("bit_and", "{0} & {1}", infer=_infer_broadcast, bind=_bind_partner, hint="bits", weight=1.5),
    _op("bit_or", "{0} | {1}", infer=_infer_broadcast, bind=_bind_partner, hint="bits", weight=1.5),
    _op("bit_xor", "{0} ^ {1}", infer=_infer_broadcast, bind=_bind_partner, hint="bits", weight=1.5),
    _op("bit_not", "~{0}", hint="inv"),
    _op("shift_left", "{0} << {k}", bind=_bind_shift, hint="shl", weight=1.5),
    _op("shift_right", "{0} >> {k}", bind=_bind_shift, hint="shr", weight=1.5),
    _op("shift_right_logical", "lax.shift_right_logical({0}, {dt}({k}))", bind=_bind_shift, hint="shr"),
    _op(
        "shift_right_arithmetic", "lax.shift_right_arithmetic({0}, {dt}({k}))", bind=_bind_shift, hint="shr", weight=0.5
    ),
    _op("popcount", "lax.population_count({0})", hint="ones", weight=1.5),
    _op("clz", "lax.clz({0})", hint="lead", weight=1.5),
    _op("int_mul_add", "{0} * {1} + 7", infer=_infer_broadcast, bind=_bind_partner, hint="acc"),
    _op("int_rem", "lax.rem({0}, jnp.ones_like({0}) * 5)", hint="rem"),
    _op(
        "hash_mix", "h_{r} = ({0} ^ ({0} >> 7)) * {0}.dtype.type(0x2D)\nh_{r} ^ (h_{r} >> 3)", hint="hashed", weight=1.5
    ),
    _op(
        "convert",
        "{0}.astype(jnp.{to})",
        infer=lambda ts, p: ts[0].with_dtype(p["to"]),
        bind=_bind_convert,
        hint="cast",
        weight=1.5,
    ),
    _op(
        "bitcast",
        "lax.bitcast_convert_type({0}, jnp.{to})",
        infer=lambda ts, p: ts[0].with_dtype(p["to"]),
        bind=_bind_bitcast,
        dtypes=BITS + ("float32",),
        guards=("exact_bits",),  # a float is rounded to a multiple of 1/256 before its bits are read
        hint="raw",
        weight=1.5,
    ),
    _op("int_max", "jnp.maximum({0}, {1})", infer=_infer_broadcast, bind=_bind_partner, hint="hi"),
    _op("int_sum", "jnp.sum({0}, axis=-1)", infer=_infer_int_sum, min_rank=1, requires=longer_last_axis, hint="total"),
    _op("select_bits", "jnp.where(({0} & 1) == 1, {0} >> 1, {0} << 1)", hint="sel"),
)
