"""Reductions: sums, means, extrema, arg-reductions, cumulative ops, sorting and top-k."""

from __future__ import annotations

from ..types import BOOL, FLOATS, NUMERIC
from .base import Binding, Op, along_axis, infer_last_axis_reduced, longer_last_axis, reduction

CATEGORY = "reduction"


OPS: tuple[Op, ...] = (
    # reduction
    reduction("sum", "jnp.sum", (CATEGORY, "arithmetic"), NUMERIC + BOOL, hint="total", weight=2.0),
    reduction("mean", "jnp.mean", (CATEGORY,), NUMERIC, out="float", hint="avg", weight=2.0),
    reduction("max", "jnp.max", (CATEGORY,), NUMERIC, hint="peak"),
    reduction("min", "jnp.min", (CATEGORY,), NUMERIC, hint="low"),
    # products of hundreds of factors overflow unless each factor is below one in magnitude
    reduction("prod", "jnp.prod", (CATEGORY,), NUMERIC, hint="prod", weight=0.5, guard="open_unit"),
    reduction("var", "jnp.var", (CATEGORY,), NUMERIC, out="float", hint="var", upcast=True),
    reduction("std", "jnp.std", (CATEGORY,), NUMERIC, out="float", hint="sd", upcast=True),
    reduction("any", "jnp.any", (CATEGORY, "conditional"), BOOL, out="bool", hint="flag", weight=0.5),
    reduction("all", "jnp.all", (CATEGORY, "conditional"), BOOL, out="bool", hint="flag", weight=0.5),
    reduction("argmax", "jnp.argmax", (CATEGORY,), NUMERIC, out="int32", hint="idx"),
    reduction("argmin", "jnp.argmin", (CATEGORY,), NUMERIC, out="int32", hint="idx"),
    reduction("logsumexp", "jax.nn.logsumexp", (CATEGORY, "composite"), FLOATS, hint="lse", upcast=True),
    along_axis("cumsum", "jnp.cumsum({0}, axis={axis})", (CATEGORY,), hint="run"),
    along_axis(
        "cumprod", "jnp.cumprod({0}, axis={axis})", (CATEGORY,), FLOATS, hint="run", weight=0.5, guard="open_unit"
    ),
    along_axis("cummax", "lax.cummax({0}, axis={axis})", (CATEGORY,), NUMERIC, hint="run", weight=0.5, lax_axis=True),
    along_axis("sort", "jnp.sort({0}, axis={axis})", (CATEGORY,), NUMERIC, hint="srt"),
    along_axis("argsort", "jnp.argsort({0}, axis={axis})", (CATEGORY,), NUMERIC, out="int32", hint="order", weight=0.5),
    Op(
        "norm",
        "jnp.linalg.norm({0}, axis=-1)",
        (CATEGORY, "matrix"),
        FLOATS,
        infer=infer_last_axis_reduced,
        min_rank=1,
        requires=longer_last_axis,
        hint="nrm",
    ),
    Op(
        "top_k",
        "lax.top_k({0}, {k})[0]",
        (CATEGORY,),
        ("float32", "int32"),
        infer=lambda ts, p: ts[0].with_shape(ts[0].shape[:-1] + (p["k"],)),
        bind=lambda r, a: Binding(params={"k": r.randint(1, a.shape[-1])}),
        min_rank=1,
        requires=longer_last_axis,
        hint="best",
    ),
)
