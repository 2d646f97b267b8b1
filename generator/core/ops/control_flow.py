"""control_flow: lax.cond, lax.switch, lax.while_loop, lax.fori_loop, lax.scan, nested."""

from __future__ import annotations

import random

from ..types import FLOATS, NUMERIC, TensorType
from .base import Binding, Op

CATEGORY = "control_flow"

# Loop bodies by dtype kind: expressions of the carry ``c`` (and the counter ``i``).
_FLOAT_STEPS = (
    "c * 0.9 + jnp.sin(c)",
    "jnp.tanh(c) + 0.5 * c",
    "c - 0.1 * jnp.cos(c) * c",
    "jnp.where(c > 0, c * 0.5, c + 1.0)",
)
# A branch on the carry: on its sum when it is an array, on itself when it is a scalar.
_FLOAT_COND_STEP = "lax.cond({pred} > 0, lambda v: v * 0.5, lambda v: v + 1.0, c)"
_INT_STEPS = ("c + i", "c * 2 - i", "jnp.abs(c - i)", "jnp.where(c % 2 == 0, c // 2, 3 * c + 1)")
_FLOAT_WHILE_STEPS = ("c * 0.9 + jnp.sin(c) / (k + 1)", "jnp.tanh(c) + 0.5 * c", "c - 0.1 * k * c")
_INT_WHILE_STEPS = ("c + k", "c * 2 - k", "jnp.where(c % 2 == 0, c // 2, 3 * c + 1)")
_FLOAT_PAIR = ("a * b", "a - jnp.sin(b)", "jnp.maximum(a, b) * 0.5", "a + jnp.tanh(b)", "(a + b) / 2.0")
_INT_PAIR = ("a + b", "a * b - 1", "jnp.maximum(a, b)", "a - b // 2")
_FLOAT_BRANCHES = ("jnp.sin", "jnp.cos", "jnp.tanh", "lambda v: v * 2.0", "lambda v: -v", "lambda v: jnp.exp(-v * v)")
_INT_BRANCHES = ("lambda v: v + 1", "lambda v: -v", "lambda v: v * 3", "jnp.abs", "lambda v: v // 2")


def _steps(t: TensorType) -> tuple[str, ...]:
    if not t.is_float:
        return _INT_STEPS
    return (*_FLOAT_STEPS, _FLOAT_COND_STEP.format(pred="jnp.sum(c)" if t.rank else "c"))


def _bind_loop(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"n": rng.choice((2, 3, 5, 8, 10)), "step": rng.choice(_steps(a))})


def _bind_while(rng: random.Random, a: TensorType) -> Binding:
    steps = _FLOAT_WHILE_STEPS if a.is_float else _INT_WHILE_STEPS
    return Binding(params={"n": rng.choice((3, 4, 6, 10)), "step": rng.choice(steps)})


def _bind_switch(rng: random.Random, a: TensorType) -> Binding:
    pool = _FLOAT_BRANCHES if a.is_float else _INT_BRANCHES
    n = rng.choice((2, 3, 4))
    return Binding(params={"n": n, "branches": ", ".join(rng.sample(pool, n))})


def _bind_cond_defs(rng: random.Random, a: TensorType) -> Binding:
    t, f = rng.sample(_FLOAT_PAIR if a.is_float else _INT_PAIR, 2)
    return Binding(needs=(a,), params={"t": t, "f": f})


def _bind_scan(rng: random.Random, a: TensorType) -> Binding:
    return Binding(
        params={"decay": rng.choice(("0.9", "0.5", "0.99")), "act": rng.choice(("jnp.tanh", "jnp.sin", "jax.nn.relu"))}
    )


def _bind_scan_totals(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"length": a.shape[0]})


def _infer_scan_totals(types, params):
    return types[0].with_shape(types[0].shape[1:])


def _bind_nested(rng: random.Random, a: TensorType) -> Binding:
    return Binding(params={"outer": rng.choice((2, 3)), "inner": rng.choice((2, 4)), "step": rng.choice(_FLOAT_STEPS)})


_BRANCH_DEFS = "def then_{r}(a, b):\n    return {t}\ndef else_{r}(a, b):\n    return {f}\n"

OPS: tuple[Op, ...] = (
    Op(
        "fori_loop",
        "def body_{r}(i, c):\n    return {step}\nlax.fori_loop(0, {n}, body_{r}, {0})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_loop,
        hint="loop",
        weight=2.0,
    ),
    Op(
        "while_loop",
        "def cond_{r}(state):\n    k, c = state\n    return k < {n}\n"
        "def body_{r}(state):\n    k, c = state\n    return k + 1, {step}\n"
        "lax.while_loop(cond_{r}, body_{r}, (0, {0}))[1]",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_while,
        hint="loop",
        weight=2.0,
    ),
    Op(
        "switch",
        "lax.switch(jnp.argmax(jnp.ravel({0})) % {n}, [{branches}], {0})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_switch,
        min_rank=1,  # the index is the position of the array's maximum
        hint="branch",
        weight=1.5,
    ),
    Op(
        "cond_defs",
        _BRANCH_DEFS + "lax.cond(jnp.mean({0}) > jnp.mean({1}), then_{r}, else_{r}, {0}, {1})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond_defs,
        min_rank=1,
        hint="branch",
        weight=1.2,
    ),
    Op(
        "cond_defs_scalar",
        _BRANCH_DEFS + "lax.cond({0} > {1}, then_{r}, else_{r}, {0}, {1})",
        (CATEGORY,),
        NUMERIC,
        bind=_bind_cond_defs,
        max_rank=0,
        hint="branch",
        weight=0.3,
    ),
    Op(
        "scan_pytree",
        "def step_{r}(carry, x_t):\n    total, prev = carry\n    h = {act}(x_t + {decay} * prev)\n    return (total + h, h), h * 2.0\n"
        "lax.scan(step_{r}, (jnp.zeros_like({0}[0]), jnp.zeros_like({0}[0])), {0})[1]",
        (CATEGORY,),
        FLOATS,
        bind=_bind_scan,
        min_rank=1,
        hint="seq",
        weight=2.0,
    ),
    Op(
        "scan_totals",
        "def step_{r}(s, x_t):\n    return s + x_t, jnp.max(x_t)\n"
        "total_{r}, peaks_{r} = lax.scan(step_{r}, jnp.zeros_like({0}[0]), {0})\n"
        "total_{r} / {length} + jnp.max(peaks_{r})",
        (CATEGORY,),
        FLOATS,
        infer=_infer_scan_totals,
        bind=_bind_scan_totals,
        min_rank=2,  # each step's peak is over a row (of a vector, a step is a scalar)
        hint="avg",
    ),
    Op(
        "nested_loops",
        "def inner_{r}(j, c):\n    return {step}\n"
        "def outer_{r}(i, c):\n    c = lax.fori_loop(0, {inner}, inner_{r}, c)\n    return lax.cond(i % 2 == 0, lambda v: v * 0.5, lambda v: -v, c)\n"
        "lax.fori_loop(0, {outer}, outer_{r}, {0})",
        (CATEGORY,),
        FLOATS,
        bind=_bind_nested,
        hint="loop",
    ),
    Op(
        "cumulative_scan",
        "lax.associative_scan(jnp.add, {0}, axis=0)",
        (CATEGORY,),
        NUMERIC,
        min_rank=1,
        hint="prefix",
        weight=0.5,
    ),
)
