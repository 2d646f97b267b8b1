"""The core ops: arithmetic, conditional, reduction, matrix, elementwise, broadcasting, composite."""

from __future__ import annotations

import random

from .errors import Reject
from .opbase import (
    B,
    Binding,
    F,
    I,
    LiteralNeed,
    N,
    Need,
    Op,
    _bind_axis,
    _bind_binary,
    _bind_same_type,
    _broadcast_partner,
    _float_literals,
    _infer_binary,
    _scalar_of_first,
    along_axis,
    binary,
    reduction,
    unary,
)
from .types import TensorType, broadcast_shapes

# --- shape-changing and matrix ops --------------------------------------------------


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


def _factorizations(n: int) -> list[tuple[int, ...]]:
    divs = [d for d in range(1, n + 1) if n % d == 0]
    shapes = [(n,)] + [(d, n // d) for d in divs if 1 < d < n]
    shapes += [
        (d, e, n // (d * e))
        for d in divs
        if 1 < d < n
        for e in divs
        if 1 < e and (n // d) % e == 0 and n // (d * e) > 1
    ]
    return shapes


def _bind_reshape(rng: random.Random, a: TensorType) -> Binding:
    options = [s for s in _factorizations(a.size) if s != a.shape]
    if not options:
        raise Reject("no other shape")
    shape = rng.choice(options)
    return Binding(params={"shape": shape, "shape_text": ", ".join(map(str, shape))})


def _bind_expand_dims(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"axis": rng.randrange(a.rank + 1)})


def _infer_expand_dims(types, params):
    s = types[0].shape
    ax = params["axis"]
    return types[0].with_shape(s[:ax] + (1,) + s[ax:])


def _bind_squeeze(rng: random.Random, a: TensorType) -> Binding:
    ones = [i for i, d in enumerate(a.shape) if d == 1]
    if not ones:
        raise Reject("nothing to squeeze")
    return Binding(params={"axis": rng.choice(ones)})


def _infer_squeeze(types, params):
    s = types[0].shape
    return types[0].with_shape(s[: params["axis"]] + s[params["axis"] + 1 :])


def _bind_broadcast_to(rng: random.Random, a: TensorType) -> Binding:
    lead = rng.choice((2, 3, 4))
    shape = (lead,) + tuple(rng.choice((d, 2, 3)) if d == 1 else d for d in a.shape)
    return Binding(params={"shape": shape, "shape_text": ", ".join(map(str, shape))})


def _bind_tile(rng: random.Random, a: TensorType) -> Binding:
    reps = tuple(rng.choice((1, 2, 3)) for _ in a.shape)
    if all(r == 1 for r in reps):
        reps = (2,) + reps[1:]
    return Binding(params={"reps": reps})


def _infer_tile(types, params):
    return types[0].with_shape(tuple(d * r for d, r in zip(types[0].shape, params["reps"])))


def _bind_repeat(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"repeats": rng.choice((2, 3)), "axis": rng.randrange(a.rank)})


def _infer_repeat(types, params):
    s = list(types[0].shape)
    s[params["axis"]] *= params["repeats"]
    return types[0].with_shape(tuple(s))


def _bind_concat(rng: random.Random, a: TensorType) -> Binding:
    axis = rng.randrange(a.rank)
    shape = list(a.shape)
    shape[axis] = rng.choice((1, 2, 3, a.shape[axis]))
    return Binding(needs=(a.with_shape(tuple(shape)),), params={"axis": axis})


def _infer_concat(types, params):
    a, b = types
    s = list(a.shape)
    s[params["axis"]] += b.shape[params["axis"]]
    return a.with_shape(tuple(s))


def _bind_stack(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a,), params={"axis": rng.randrange(a.rank + 1)})


def _infer_stack(types, params):
    s = types[0].shape
    return types[0].with_shape(s[: params["axis"]] + (2,) + s[params["axis"] :])


def _bind_pad(rng: random.Random, a: TensorType) -> Binding:
    widths = tuple((rng.randrange(3), rng.randrange(3)) for _ in a.shape)
    if not any(sum(w) for w in widths):
        widths = ((1, 1),) + widths[1:]
    return Binding(params={"widths": widths})


def _infer_pad(types, params):
    return types[0].with_shape(tuple(d + lo + hi for d, (lo, hi) in zip(types[0].shape, params["widths"])))


def _bind_slice(rng: random.Random, a: TensorType) -> Binding:
    d = a.shape[0]
    if d < 2:
        raise Reject("too small to slice")
    start = rng.randrange(d - 1)
    step = rng.choice((1, 1, 2))
    return Binding(params={"start": start, "step": step, "text": f"{start}::{step}" if step > 1 else f"{start}:"})


def _infer_slice(types, params):
    s = types[0].shape
    n = len(range(params["start"], s[0], params["step"]))
    return types[0].with_shape((n,) + s[1:])


def _bind_roll(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"shift": rng.choice((1, 2, -1)), "axis": rng.randrange(a.rank)})


def _bind_outer_broadcast(rng: random.Random, a: TensorType) -> Binding:
    return Binding(needs=(a.with_shape((rng.choice((2, 3, 4, 5)),)),))


def _infer_outer_broadcast(types, params):
    return types[0].with_shape((types[0].shape[0], types[1].shape[0]))


# --- conditional ops ------------------------------------------------------------------


def _bind_where_threshold(rng: random.Random, a: TensorType) -> Binding:
    if rng.random() < 0.4:
        need: Need = LiteralNeed(_float_literals(a))
    else:
        need = a
    return Binding(needs=(need,), params={"cmp": rng.choice((">", "<", ">=")), "c": "0" if a.is_int else "0.0"})


def _bind_select(rng: random.Random, mask: TensorType) -> Binding:
    dtype = rng.choice(("float32", "float32", "int32"))
    return Binding(needs=(mask.with_dtype(dtype), mask.with_dtype(dtype)))


def _infer_select(types, params):
    return types[1]


_FLOAT_BRANCHES = (
    "jnp.sin",
    "jnp.cos",
    "jnp.tanh",
    "lambda v: v * 2.0",
    "lambda v: -v",
    "lambda v: v - 1.0",
    "jnp.abs",
)
_INT_BRANCHES = ("lambda v: v + 1", "lambda v: -v", "lambda v: v * 2", "jnp.abs", "lambda v: v // 2")


def _bind_cond(rng: random.Random, a: TensorType) -> Binding:
    branches = _FLOAT_BRANCHES if a.is_float else _INT_BRANCHES
    t, f = rng.sample(branches, 2)
    return Binding(params={"t": t, "f": f, "red": rng.choice(("jnp.sum", "jnp.mean", "jnp.max"))})


def _bind_cond2(rng: random.Random, a: TensorType) -> Binding:
    t, f = rng.sample(
        ("lambda a, b: a - b", "lambda a, b: a + b", "lambda a, b: a * b", "lambda a, b: jnp.maximum(a, b)"), 2
    )
    return Binding(needs=(a,), params={"t": t, "f": f})


def _bind_clip(rng: random.Random, a: TensorType) -> Binding:
    lo, hi = (
        rng.choice((("-1.0", "1.0"), ("0.0", "6.0"), ("-3.0", "3.0")))
        if a.is_float
        else rng.choice((("0", "10"), ("-5", "5")))
    )
    return Binding(params={"lo": lo, "hi": hi})


def _bind_compare(rng: random.Random, a: TensorType) -> Binding:
    need: Need = LiteralNeed(_float_literals(a)) if rng.random() < 0.4 else a
    return Binding(needs=(need,), params={"cmp": rng.choice((">", "<", ">=", "<=", "==", "!="))})


# --- composite ops --------------------------------------------------------------------


def _bind_poly(rng: random.Random, a: TensorType) -> Binding:
    cs = [rng.choice(("0.5", "1.5", "2.0", "0.25", "3.0", "1.0")) for _ in range(4)]
    return Binding(params={f"c{i}": c for i, c in enumerate(cs)})


def _bind_onehot(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"k": rng.choice((4, 8, 10))})


def _infer_onehot(types, params):
    return TensorType(types[0].shape + (params["k"],), "float32")


def _infer_last_axis_reduced(types, params):
    return types[0].with_shape(types[0].shape[:-1])


F32 = ("float32",)
C64 = ("complex64",)
_A = ("arithmetic",)
_C = ("conditional",)
_R = ("reduction",)
_M = ("matrix",)
_E = ("elementwise",)
_BR = ("broadcasting",)
_CO = ("composite",)

CORE_OPS: tuple[Op, ...] = (
    # arithmetic
    binary("add", "{0} + {1}", _A + _BR, hint="total", weight=2.0),
    binary("subtract", "{0} - {1}", _A + _BR, hint="diff", weight=1.5),
    binary("multiply", "{0} * {1}", _A + _BR, hint="prod", weight=2.0),
    binary("divide", "{0} / {1}", _A, F, guard="nonzero", hint="ratio"),
    binary("floor_divide", "{0} // {1}", _A, I, guard="nonzero", hint="quot"),
    binary("remainder", "{0} % {1}", _A, I, guard="nonzero", hint="rem"),
    binary("maximum", "jnp.maximum({0}, {1})", _A + _C, hint="hi"),
    binary("minimum", "jnp.minimum({0}, {1})", _A + _C, hint="lo"),
    Op("power", "{0} ** {n}", _A, N, bind=lambda r, a: Binding(params={"n": r.choice((2, 3))}), hint="pw", weight=0.5),
    unary("negative", "-{0}", _A, N, hint="neg"),
    unary("square", "jnp.square({0})", _A + _E, N, hint="sq"),
    unary("abs", "jnp.abs({0})", _A + _E, N, hint="mag"),
    Op(
        "axpy",
        "{0} * {p} + {1}",
        _A,
        F,
        infer=_infer_binary(),
        bind=lambda r, a: Binding((_broadcast_partner(r, a),), {"p": r.choice(("0.5", "2.0", "0.9"))}),
        hint="acc",
    ),
    Op(
        "lerp",
        "{0} + {p} * ({1} - {0})",
        _A,
        F,
        infer=_infer_binary(),
        bind=lambda r, a: Binding((a,), {"p": r.choice(("0.1", "0.5", "0.25"))}),
        hint="mix",
    ),
    unary("astype_float", "{0}.astype(jnp.float32)", _A + _E, I + ("float16", "bfloat16"), out="float32", hint="xf"),
    unary("astype_int", "{0}.astype(jnp.int32)", _A, F, out="int32", hint="xi", weight=0.5),
    # elementwise
    unary("exp", "jnp.exp({0})", _E, guard="unit", hint="e"),
    unary("log", "jnp.log({0})", _E, guard="positive", hint="lg"),
    unary("log1p", "jnp.log1p({0})", _E, guard="positive", hint="lg"),
    unary("expm1", "jnp.expm1({0})", _E, guard="unit", hint="e"),
    unary("sin", "jnp.sin({0})", _E, hint="s"),
    unary("cos", "jnp.cos({0})", _E, hint="c"),
    unary("tan", "jnp.tan({0})", _E, guard="unit", hint="t", weight=0.5),
    unary("tanh", "jnp.tanh({0})", _E, hint="th"),
    unary("sinh", "jnp.sinh({0})", _E, guard="unit", hint="sh", weight=0.5),
    unary("cosh", "jnp.cosh({0})", _E, guard="unit", hint="ch", weight=0.5),
    unary("arctan", "jnp.arctan({0})", _E, hint="ang", weight=0.5),
    unary("arcsin", "jnp.arcsin({0})", _E, guard="unit", hint="ang", weight=0.5),
    unary("sqrt", "jnp.sqrt({0})", _E, guard="positive", hint="rt"),
    unary("rsqrt", "lax.rsqrt({0})", _E, guard="positive", hint="inv_rt"),
    unary("cbrt", "jnp.cbrt({0})", _E, hint="rt", weight=0.5),
    unary("reciprocal", "jnp.reciprocal({0})", _E, guard="nonzero", hint="inv"),
    unary("floor", "jnp.floor({0})", _E, hint="fl"),
    unary("ceil", "jnp.ceil({0})", _E, hint="cl"),
    unary("round", "jnp.round({0})", _E, hint="rd"),
    unary("sign", "jnp.sign({0})", _E + _A, N, hint="sgn"),
    unary("sigmoid", "jax.nn.sigmoid({0})", _E + _CO, hint="gate"),
    unary("erf", "jax.scipy.special.erf({0})", _E, hint="er", weight=0.5),
    unary("exp2", "jnp.exp2({0})", _E, guard="unit", hint="e", weight=0.5),
    unary("logistic", "lax.logistic({0})", _E, hint="gate", weight=0.5),
    unary("isfinite", "jnp.isfinite({0})", _E + _C, out="bool", hint="ok", weight=0.3),
    binary("arctan2", "jnp.arctan2({0}, {1})", _E, F, literals=False, hint="ang", weight=0.5),
    binary("hypot", "jnp.hypot({0}, {1})", _E, F, literals=False, hint="dist", weight=0.3),
    # special functions (each lowers to its own chlo op)
    unary("arccos", "jnp.arccos({0})", _E, F32, guard="unit", hint="ang", weight=0.4),
    unary("arccosh", "jnp.arccosh({0})", _E, F32, guard="above_one", hint="ang", weight=0.3),
    unary("arcsinh", "jnp.arcsinh({0})", _E, F32, hint="ang", weight=0.3),
    unary("arctanh", "jnp.arctanh({0})", _E, F32, guard="open_unit", hint="ang", weight=0.3),
    unary("erfc", "jax.scipy.special.erfc({0})", _E, F32, hint="er", weight=0.3),
    unary("erfinv", "jax.scipy.special.erfinv({0})", _E, F32, guard="open_unit", hint="er", weight=0.3),
    unary("gammaln", "jax.scipy.special.gammaln({0})", _E, F32, guard="positive", hint="lgam", weight=0.3),
    unary("digamma", "jax.scipy.special.digamma({0})", _E, F32, guard="at_least_one", hint="psi", weight=0.3),
    unary("i1e", "jax.scipy.special.i1e({0})", _E, F32, hint="bessel", weight=0.3),
    unary("isinf", "jnp.isinf({0})", _E + _C, F32, out="bool", hint="inf_mask", weight=0.3),
    unary("round_half_away", "lax.round({0})", _E, F32, hint="rd", weight=0.3),
    unary(
        "reduce_precision",
        "lax.reduce_precision({0}, exponent_bits=5, mantissa_bits=10)",
        _E,
        F32,
        hint="lowp",
        weight=0.3,
    ),
    unary("optimization_barrier", "lax.optimization_barrier({0})", _E, F32, hint="fenced", weight=0.2),
    binary("nextafter", "jnp.nextafter({0}, {1})", _E, F32, literals=False, hint="nxt", weight=0.3),
    # A negative base to a fractional power is NaN: the base is kept positive.
    Op(
        "power_arrays",
        "jnp.power({0}, {1})",
        _E,
        F32,
        infer=_infer_binary(),
        bind=_bind_binary(literals=False),
        guards=("positive", None),
        hint="pw",
        weight=0.3,
    ),
    Op("polygamma", "jax.scipy.special.polygamma(1, {0})", _E, F32, guards=("at_least_one",), hint="psi1", weight=0.2),
    Op("zeta", "jax.scipy.special.zeta({0}, 2.0)", _E, F32, guards=("above_one",), hint="zeta", weight=0.2),
    Op(
        "lax_clamp",
        "lax.clamp({lo}, {0}, {hi})",
        _E + _C,
        F32,
        bind=lambda r, a: Binding(params={"lo": "-2.0", "hi": r.choice(("2.0", "0.5"))}),
        hint="clamped",
        weight=0.3,
    ),
    # complex numbers
    Op(
        "make_complex",
        "lax.complex({0}, {1})",
        _E,
        F32,
        infer=lambda ts, p: ts[0].with_dtype("complex64"),
        bind=_bind_same_type,
        hint="z",
        weight=0.5,
    ),
    unary("complex_abs", "jnp.abs({0})", _E, C64, out="float32", hint="mag", weight=0.5),
    unary("complex_real", "jnp.real({0})", _E, C64, out="float32", hint="re", weight=0.5),
    unary("complex_imag", "jnp.imag({0})", _E, C64, out="float32", hint="im", weight=0.5),
    unary("complex_conj", "jnp.conj({0}) * {0}", _E, C64, hint="power", weight=0.3),
    unary("complex_exp", "jnp.exp({0})", _E, C64, hint="phasor", weight=0.3),
    # reduction
    reduction("sum", "jnp.sum", _R + _A, N + B, hint="total", weight=2.0),
    reduction("mean", "jnp.mean", _R, N, out="float", hint="avg", weight=2.0),
    reduction("max", "jnp.max", _R, N, hint="peak"),
    reduction("min", "jnp.min", _R, N, hint="low"),
    reduction("prod", "jnp.prod", _R, N, hint="prod", weight=0.5),
    reduction("var", "jnp.var", _R, N, out="float", hint="var"),
    reduction("std", "jnp.std", _R, N, out="float", hint="sd"),
    reduction("any", "jnp.any", _R + _C, B, out="bool", hint="flag", weight=0.5),
    reduction("all", "jnp.all", _R + _C, B, out="bool", hint="flag", weight=0.5),
    reduction("argmax", "jnp.argmax", _R, N, out="int32", hint="idx", min_rank=1),
    reduction("argmin", "jnp.argmin", _R, N, out="int32", hint="idx", min_rank=1),
    reduction("logsumexp", "jax.nn.logsumexp", _R + _CO, F, hint="lse"),
    along_axis("cumsum", "jnp.cumsum({0}, axis={axis})", _R, hint="run"),
    along_axis("cumprod", "jnp.cumprod({0}, axis={axis})", _R, F, hint="run", weight=0.5),
    along_axis("cummax", "lax.cummax({0}, axis={axis})", _R, N, hint="run", weight=0.5, lax_axis=True),
    along_axis("sort", "jnp.sort({0}, axis={axis})", _R, N, hint="srt"),
    along_axis("argsort", "jnp.argsort({0}, axis={axis})", _R, N, out="int32", hint="order", weight=0.5),
    Op("norm", "jnp.linalg.norm({0}, axis=-1)", _R + _M, F, infer=_infer_last_axis_reduced, min_rank=1, hint="nrm"),
    # matrix
    Op(
        "matmul",
        "{0} @ {1}",
        _M,
        N,
        infer=_infer_matmul,
        bind=_bind_matmul,
        min_rank=1,
        max_rank=3,
        hint="proj",
        weight=3.0,
    ),
    Op("dot", "jnp.dot({0}, {1})", _M, N, infer=_infer_matmul, bind=_bind_matmul, min_rank=1, max_rank=2, hint="dp"),
    Op(
        "einsum",
        'jnp.einsum("{spec}", {0}, {1})',
        _M,
        N,
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
        _M + _BR,
        N,
        infer=_infer_transpose,
        bind=_bind_transpose,
        min_rank=2,
        hint="tr",
    ),
    Op(
        "matrix_T",
        "{0}.T",
        _M,
        N,
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[::-1]),
        min_rank=2,
        max_rank=2,
        hint="tr",
    ),
    Op("outer", "jnp.outer({0}, {1})", _M, N, infer=_infer_outer, bind=_bind_outer, min_rank=1, max_rank=1, hint="out"),
    Op(
        "tensordot",
        "jnp.tensordot({0}, {1}, axes=1)",
        _M,
        N,
        infer=_infer_tensordot,
        bind=_bind_tensordot,
        min_rank=1,
        max_rank=3,
        hint="contr",
    ),
    Op("trace", "jnp.trace({0})", _M, N, infer=_infer_trace, min_rank=2, max_rank=3, hint="tr_sum", weight=0.5),
    Op("diagonal", "jnp.diagonal({0})", _M, N, infer=_infer_diagonal, min_rank=2, max_rank=3, hint="diag", weight=0.5),
    Op("triu", "jnp.triu({0})", _M, N, min_rank=2, max_rank=3, hint="upper", weight=0.5),
    Op("tril", "jnp.tril({0})", _M, N, min_rank=2, max_rank=3, hint="lower", weight=0.5),
    Op(
        "vdot",
        "jnp.vdot({0}, {1})",
        _M,
        F,
        infer=_scalar_of_first,
        bind=_bind_same_type,
        min_rank=1,
        max_rank=2,
        hint="dp",
        weight=0.5,
    ),
    # broadcasting / shape
    Op(
        "reshape",
        "{0}.reshape({shape_text})",
        _BR + _M,
        N + B,
        infer=lambda ts, p: ts[0].with_shape(p["shape"]),
        bind=_bind_reshape,
        hint="flat",
    ),
    Op(
        "expand_dims",
        "jnp.expand_dims({0}, {axis})",
        _BR,
        N,
        infer=_infer_expand_dims,
        bind=_bind_expand_dims,
        max_rank=3,
        hint="ex",
    ),
    Op(
        "squeeze",
        "jnp.squeeze({0}, axis={axis})",
        _BR,
        N,
        infer=_infer_squeeze,
        bind=_bind_squeeze,
        min_rank=1,
        hint="sq",
    ),
    Op(
        "broadcast_to",
        "jnp.broadcast_to({0}, ({shape_text}))",
        _BR,
        N,
        infer=lambda ts, p: ts[0].with_shape(p["shape"]),
        bind=_bind_broadcast_to,
        max_rank=2,
        hint="bc",
    ),
    Op(
        "tile",
        "jnp.tile({0}, {reps})",
        _BR,
        N,
        infer=_infer_tile,
        bind=_bind_tile,
        min_rank=1,
        max_rank=3,
        hint="tiled",
    ),
    Op(
        "repeat",
        "jnp.repeat({0}, {repeats}, axis={axis})",
        _BR,
        N,
        infer=_infer_repeat,
        bind=_bind_repeat,
        min_rank=1,
        hint="rep",
    ),
    Op(
        "concatenate",
        "jnp.concatenate([{0}, {1}], axis={axis})",
        _BR,
        N,
        infer=_infer_concat,
        bind=_bind_concat,
        min_rank=1,
        hint="cat",
    ),
    Op(
        "stack",
        "jnp.stack([{0}, {1}], axis={axis})",
        _BR,
        N,
        infer=_infer_stack,
        bind=_bind_stack,
        max_rank=3,
        hint="stk",
    ),
    Op(
        "pad", "jnp.pad({0}, {widths})", _BR, N, infer=_infer_pad, bind=_bind_pad, min_rank=1, max_rank=3, hint="padded"
    ),
    Op("slice", "{0}[{text}]", _BR, N, infer=_infer_slice, bind=_bind_slice, min_rank=1, hint="part"),
    Op("flip", "jnp.flip({0}, axis={axis})", _BR, N, bind=_bind_axis, min_rank=1, hint="rev"),
    Op("roll", "jnp.roll({0}, {shift}, axis={axis})", _BR, N, bind=_bind_roll, min_rank=1, hint="rolled"),
    Op(
        "outer_broadcast",
        "{0}[:, None] * {1}[None, :]",
        _BR,
        N,
        infer=_infer_outer_broadcast,
        bind=_bind_outer_broadcast,
        min_rank=1,
        max_rank=1,
        hint="grid",
    ),
    # conditional
    Op(
        "where_threshold",
        "jnp.where({0} {cmp} {c}, {0}, {1})",
        _C,
        N,
        infer=_infer_binary(),
        bind=_bind_where_threshold,
        hint="sel",
        weight=2.0,
    ),
    Op(
        "select_mask", "jnp.where({0}, {1}, {2})", _C, B, infer=_infer_select, bind=_bind_select, hint="sel", weight=1.5
    ),
    Op("lax_select", "lax.select({0}, {1}, {2})", _C, B, infer=_infer_select, bind=_bind_select, hint="sel"),
    Op("compare", "{0} {cmp} {1}", _C, N, infer=_infer_binary("bool"), bind=_bind_compare, hint="mask", weight=2.0),
    Op("cond", "lax.cond({red}({0}) > 0, {t}, {f}, {0})", _C, N, bind=_bind_cond, hint="branch", weight=2.0),
    Op("cond2", "lax.cond(jnp.sum({0}) > jnp.sum({1}), {t}, {f}, {0}, {1})", _C, N, bind=_bind_cond2, hint="branch"),
    Op("clip", "jnp.clip({0}, {lo}, {hi})", _C + _A, N, bind=_bind_clip, hint="clipped"),
    binary("logical_and", "jnp.logical_and({0}, {1})", _C, B, literals=False, hint="both"),
    binary("logical_or", "jnp.logical_or({0}, {1})", _C, B, literals=False, hint="either"),
    binary("logical_xor", "jnp.logical_xor({0}, {1})", _C, B, literals=False, hint="diff_mask", weight=0.5),
    unary("logical_not", "~{0}", _C, B, hint="inv_mask", weight=0.5),
    # composite
    along_axis("softmax", "jax.nn.softmax({0}, axis={axis})", _CO, F, hint="probs", weight=2.0),
    along_axis("log_softmax", "jax.nn.log_softmax({0}, axis={axis})", _CO, F, hint="logp"),
    Op(
        "layer_norm",
        "({0} - jnp.mean({0}, axis=-1, keepdims=True)) / jnp.sqrt(jnp.var({0}, axis=-1, keepdims=True) + 1e-5)",
        _CO,
        F,
        min_rank=1,
        hint="normed",
        weight=1.5,
    ),
    Op(
        "rms_norm",
        "{0} * lax.rsqrt(jnp.mean(jnp.square({0}), axis=-1, keepdims=True) + 1e-6)",
        _CO,
        F,
        min_rank=1,
        hint="normed",
    ),
    Op("l2_normalize", "{0} / (jnp.linalg.norm({0}, axis=-1, keepdims=True) + 1e-6)", _CO, F, min_rank=1, hint="unit"),
    unary("relu", "jax.nn.relu({0})", _CO, hint="act", weight=1.5),
    unary("gelu", "jax.nn.gelu({0})", _CO, hint="act", weight=1.5),
    unary("gelu_exact", "jax.nn.gelu({0}, approximate=False)", _CO, hint="act", weight=0.5),
    unary("silu", "jax.nn.silu({0})", _CO, hint="act"),
    unary("softplus", "jax.nn.softplus({0})", _CO, hint="act"),
    unary("leaky_relu", "jax.nn.leaky_relu({0}, 0.1)", _CO, hint="act"),
    unary("elu", "jax.nn.elu({0})", _CO, hint="act", weight=0.5),
    unary("log_sigmoid", "jax.nn.log_sigmoid({0})", _CO, hint="logp", weight=0.5),
    Op("polynomial", "(({c3} * {0} + {c2}) * {0} + {c1}) * {0} + {c0}", _CO + _A, F, bind=_bind_poly, hint="poly"),
    Op("mse", "jnp.mean(({0} - {1}) ** 2)", _CO, F, infer=_scalar_of_first, bind=_bind_same_type, hint="loss"),
    Op(
        "cosine_similarity",
        "jnp.sum({0} * {1}, axis=-1) / (jnp.linalg.norm({0}, axis=-1) * jnp.linalg.norm({1}, axis=-1) + 1e-8)",
        _CO,
        F,
        infer=_infer_last_axis_reduced,
        bind=_bind_same_type,
        min_rank=1,
        hint="sim",
    ),
    Op(
        "one_hot", "jax.nn.one_hot({0}, {k})", _CO, I, infer=_infer_onehot, bind=_bind_onehot, max_rank=2, hint="onehot"
    ),
    Op("standardize", "jax.nn.standardize({0}, axis=-1)", _CO, F, min_rank=1, hint="z"),
    # spectral idioms
    Op(
        "fft",
        "jnp.fft.fft({0}.astype(jnp.complex64))",
        _CO,
        F32 + C64,
        infer=lambda ts, p: ts[0].with_dtype("complex64"),
        min_rank=1,
        hint="spec",
        weight=0.5,
    ),
    Op(
        "rfft_power",
        "jnp.abs(jnp.fft.rfft({0})) ** 2",
        _CO,
        F32,
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[:-1] + (ts[0].shape[-1] // 2 + 1,)),
        min_rank=1,
        hint="psd",
        weight=0.5,
    ),
    Op(
        "spectral_lowpass",
        "spec_{r} = jnp.fft.rfft({0})\njnp.fft.irfft(spec_{r} * (jnp.arange(spec_{r}.shape[-1]) < {keep}), n={0}.shape[-1])",
        _CO,
        F32,
        bind=lambda r, a: Binding(params={"keep": r.choice((1, 2, 4))}),
        min_rank=1,
        hint="smooth",
        weight=0.5,
    ),
    Op(
        "top_k",
        "lax.top_k({0}, {k})[0]",
        _R,
        ("float32", "int32"),
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[:-1] + (p["k"],)),
        bind=lambda r, a: Binding(params={"k": r.randint(1, a.shape[-1])}),
        min_rank=1,
        hint="best",
    ),
)
