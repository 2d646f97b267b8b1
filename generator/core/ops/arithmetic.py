"""Arithmetic: +, -, *, /, powers and dtype casts, the glue every category mixes in."""

from __future__ import annotations

from ..types import FLOATS, INTS, NUMERIC
from .base import Binding, Op, binary, broadcast_partner, infer_binary, unary

CATEGORY = "arithmetic"


OPS: tuple[Op, ...] = (
    # arithmetic
    binary("add", "{0} + {1}", (CATEGORY, "broadcasting"), hint="total", weight=2.0),
    binary("subtract", "{0} - {1}", (CATEGORY, "broadcasting"), hint="diff", weight=1.5),
    binary("multiply", "{0} * {1}", (CATEGORY, "broadcasting"), hint="prod", weight=2.0),
    binary("divide", "{0} / {1}", (CATEGORY,), FLOATS, guard="nonzero", hint="ratio"),
    binary("floor_divide", "{0} // {1}", (CATEGORY,), INTS, guard="nonzero", hint="quot"),
    binary("remainder", "{0} % {1}", (CATEGORY,), INTS, guard="nonzero", hint="rem"),
    binary("maximum", "jnp.maximum({0}, {1})", (CATEGORY, "conditional"), hint="hi"),
    binary("minimum", "jnp.minimum({0}, {1})", (CATEGORY, "conditional"), hint="lo"),
    Op(
        "power",
        "{0} ** {n}",
        (CATEGORY,),
        NUMERIC,
        bind=lambda r, a: Binding(params={"n": r.choice((2, 3))}),
        hint="pw",
        weight=0.5,
    ),
    unary("negative", "-{0}", (CATEGORY,), NUMERIC, hint="neg"),
    unary("square", "jnp.square({0})", (CATEGORY, "elementwise"), NUMERIC, hint="sq"),
    unary("abs", "jnp.abs({0})", (CATEGORY, "elementwise"), NUMERIC, hint="mag"),
    Op(
        "axpy",
        "{0} * {p} + {1}",
        (CATEGORY,),
        FLOATS,
        infer=infer_binary(),
        bind=lambda r, a: Binding((broadcast_partner(r, a),), {"p": r.choice(("0.5", "2.0", "0.9"))}),
        hint="acc",
    ),
    Op(
        "lerp",
        "{0} + {p} * ({1} - {0})",
        (CATEGORY,),
        FLOATS,
        infer=infer_binary(),
        bind=lambda r, a: Binding((a,), {"p": r.choice(("0.1", "0.5", "0.25"))}),
        hint="mix",
    ),
    unary(
        "astype_float",
        "{0}.astype(jnp.float32)",
        (CATEGORY, "elementwise"),
        INTS + ("float16", "bfloat16"),
        out="float32",
        hint="xf",
    ),
    unary("astype_int", "{0}.astype(jnp.int32)", (CATEGORY,), FLOATS, out="int32", hint="xi", weight=0.5),
)
