"""Elementwise math: transcendental and special functions (each its own chlo op), rounding, complex numbers."""

from __future__ import annotations

from ..types import COMPLEX64, FLOAT32, FLOATS, NUMERIC
from .base import Binding, Op, binary, bind_binary, bind_same_type, infer_binary, unary

CATEGORY = "elementwise"


OPS: tuple[Op, ...] = (
    # elementwise
    unary("exp", "jnp.exp({0})", (CATEGORY,), guard="unit", hint="e"),
    unary("log", "jnp.log({0})", (CATEGORY,), guard="positive", hint="lg"),
    unary("log1p", "jnp.log1p({0})", (CATEGORY,), guard="positive", hint="lg"),
    unary("expm1", "jnp.expm1({0})", (CATEGORY,), guard="unit", hint="e"),
    unary("sin", "jnp.sin({0})", (CATEGORY,), hint="s"),
    unary("cos", "jnp.cos({0})", (CATEGORY,), hint="c"),
    unary("tan", "jnp.tan({0})", (CATEGORY,), guard="unit", hint="t", weight=0.5),
    unary("tanh", "jnp.tanh({0})", (CATEGORY,), hint="th"),
    unary("sinh", "jnp.sinh({0})", (CATEGORY,), guard="unit", hint="sh", weight=0.5),
    unary("cosh", "jnp.cosh({0})", (CATEGORY,), guard="unit", hint="ch", weight=0.5),
    unary("arctan", "jnp.arctan({0})", (CATEGORY,), hint="ang", weight=0.5),
    unary("arcsin", "jnp.arcsin({0})", (CATEGORY,), guard="unit", hint="ang", weight=0.5),
    unary("sqrt", "jnp.sqrt({0})", (CATEGORY,), guard="positive", hint="rt"),
    unary("rsqrt", "lax.rsqrt({0})", (CATEGORY,), guard="positive", hint="inv_rt"),
    unary("cbrt", "jnp.cbrt({0})", (CATEGORY,), hint="rt", weight=0.5),
    unary("reciprocal", "jnp.reciprocal({0})", (CATEGORY,), guard="nonzero", hint="inv"),
    unary("floor", "jnp.floor({0})", (CATEGORY,), hint="fl"),
    unary("ceil", "jnp.ceil({0})", (CATEGORY,), hint="cl"),
    unary("round", "jnp.round({0})", (CATEGORY,), hint="rd"),
    unary("sign", "jnp.sign({0})", (CATEGORY, "arithmetic"), NUMERIC, hint="sgn"),
    unary("sigmoid", "jax.nn.sigmoid({0})", (CATEGORY, "composite"), hint="gate"),
    unary("erf", "jax.scipy.special.erf({0})", (CATEGORY,), hint="er", weight=0.5),
    unary("exp2", "jnp.exp2({0})", (CATEGORY,), guard="unit", hint="e", weight=0.5),
    unary("logistic", "lax.logistic({0})", (CATEGORY,), hint="gate", weight=0.5),
    unary("isfinite", "jnp.isfinite({0})", (CATEGORY, "conditional"), out="bool", hint="ok", weight=0.3),
    binary("arctan2", "jnp.arctan2({0}, {1})", (CATEGORY,), FLOATS, literals=False, hint="ang", weight=0.5),
    binary("hypot", "jnp.hypot({0}, {1})", (CATEGORY,), FLOATS, literals=False, hint="dist", weight=0.3),
    # special functions (each lowers to its own chlo op)
    unary("arccos", "jnp.arccos({0})", (CATEGORY,), FLOAT32, guard="unit", hint="ang", weight=0.4),
    unary("arccosh", "jnp.arccosh({0})", (CATEGORY,), FLOAT32, guard="above_one", hint="ang", weight=0.3),
    unary("arcsinh", "jnp.arcsinh({0})", (CATEGORY,), FLOAT32, hint="ang", weight=0.3),
    unary("arctanh", "jnp.arctanh({0})", (CATEGORY,), FLOAT32, guard="open_unit", hint="ang", weight=0.3),
    unary("erfc", "jax.scipy.special.erfc({0})", (CATEGORY,), FLOAT32, hint="er", weight=0.3),
    unary("erfinv", "jax.scipy.special.erfinv({0})", (CATEGORY,), FLOAT32, guard="open_unit", hint="er", weight=0.3),
    unary("gammaln", "jax.scipy.special.gammaln({0})", (CATEGORY,), FLOAT32, guard="positive", hint="lgam", weight=0.3),
    unary(
        "digamma", "jax.scipy.special.digamma({0})", (CATEGORY,), FLOAT32, guard="at_least_one", hint="psi", weight=0.3
    ),
    unary("i1e", "jax.scipy.special.i1e({0})", (CATEGORY,), FLOAT32, hint="bessel", weight=0.3),
    unary("isinf", "jnp.isinf({0})", (CATEGORY, "conditional"), FLOAT32, out="bool", hint="inf_mask", weight=0.3),
    unary("round_half_away", "lax.round({0})", (CATEGORY,), FLOAT32, hint="rd", weight=0.3),
    unary(
        "reduce_precision",
        "lax.reduce_precision({0}, exponent_bits=5, mantissa_bits=10)",
        (CATEGORY,),
        FLOAT32,
        hint="lowp",
        weight=0.3,
    ),
    unary("optimization_barrier", "lax.optimization_barrier({0})", (CATEGORY,), FLOAT32, hint="fenced", weight=0.2),
    binary("nextafter", "jnp.nextafter({0}, {1})", (CATEGORY,), FLOAT32, literals=False, hint="nxt", weight=0.3),
    # A negative base to a fractional power is NaN: the base is kept positive.
    Op(
        "power_arrays",
        "jnp.power({0}, {1})",
        (CATEGORY,),
        FLOAT32,
        infer=infer_binary(),
        bind=bind_binary(literals=False),
        guards=("positive", None),
        hint="pw",
        weight=0.3,
    ),
    Op(
        "polygamma",
        "jax.scipy.special.polygamma(1, {0})",
        (CATEGORY,),
        FLOAT32,
        guards=("at_least_one",),
        hint="psi1",
        weight=0.2,
    ),
    Op(
        "zeta", "jax.scipy.special.zeta({0}, 2.0)", (CATEGORY,), FLOAT32, guards=("above_one",), hint="zeta", weight=0.2
    ),
    Op(
        "lax_clamp",
        "lax.clamp({lo}, {0}, {hi})",
        (CATEGORY, "conditional"),
        FLOAT32,
        bind=lambda r, a: Binding(params={"lo": "-2.0", "hi": r.choice(("2.0", "0.5"))}),
        hint="clamped",
        weight=0.3,
    ),
    # complex numbers
    Op(
        "make_complex",
        "lax.complex({0}, {1})",
        (CATEGORY,),
        FLOAT32,
        infer=lambda ts, p: ts[0].with_dtype("complex64"),
        bind=bind_same_type,
        hint="z",
        weight=0.5,
    ),
    unary("complex_abs", "jnp.abs({0})", (CATEGORY,), COMPLEX64, out="float32", hint="mag", weight=0.5),
    unary("complex_real", "jnp.real({0})", (CATEGORY,), COMPLEX64, out="float32", hint="re", weight=0.5),
    unary("complex_imag", "jnp.imag({0})", (CATEGORY,), COMPLEX64, out="float32", hint="im", weight=0.5),
    unary("complex_conj", "jnp.conj({0}) * {0}", (CATEGORY,), COMPLEX64, hint="power", weight=0.3),
    unary("complex_exp", "jnp.exp({0})", (CATEGORY,), COMPLEX64, hint="phasor", weight=0.3),
)
