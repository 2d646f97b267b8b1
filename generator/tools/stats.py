"""Statistics of a set of rows: counts, op coverage, line and FLOP distributions, and how the
programs read (``realism``: dead statements, op-table names, sizes, docstrings and hints)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.models import MODEL_CATEGORIES
from ..core.ops import CATEGORIES, OPS
from .reachable import coverage
from .realism import RealismTally, nearest_rank


def percentiles(values: list[float], qs=(5, 50, 95)) -> dict[str, float]:
    return {f"p{q}": nearest_rank(values, q) for q in qs}


def summarize(rows_by_split: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
    """Counts per split and category, op coverage, line/FLOP percentiles and ``realism``
    (``generator.tools.realism.realism_summary``)."""
    out: dict[str, Any] = {"splits": {}, "by_category": Counter()}
    realism = RealismTally()
    ops: Counter = Counter()
    py_lines: list[int] = []
    ir_lines: list[int] = []
    flops: list[float] = []
    ir_texts: list[str] = []
    styles: Counter = Counter()
    per_category: dict[str, dict[str, list[float]]] = {}
    tokens: dict[str, list[int]] = {"python": [], "stablehlo": [], "optimized_hlo": []}
    for split, rows in rows_by_split.items():
        n = 0
        for row in rows:
            n += 1
            out["by_category"][row["category"]] += 1
            ops.update(row["stablehlo_ops"])
            py_lines.append(row["python_lines"])
            ir_lines.append(row["stablehlo_lines"])
            ir_texts.append(row["stablehlo_ir"])
            styles[row.get("style") or "jax"] += 1
            if row["category"] in MODEL_CATEGORIES:
                c = per_category.setdefault(row["category"], {"ir": [], "py": [], "dim": [], "styles": Counter()})
                c["ir"].append(row["stablehlo_lines"])
                c["py"].append(row["python_lines"])
                c["dim"].append(max((d for s in row["input_signature"] for d in s["shape"]), default=0))
                c["styles"][row.get("style") or "jax"] += 1
            if row.get("flops") is not None:
                flops.append(row["flops"])
            if row.get("python_tokens") is not None:  # rows of 2.0.0 and later
                tokens["python"].append(row["python_tokens"])
                tokens["stablehlo"].append(row["stablehlo_tokens"])
                tokens["optimized_hlo"].append(row.get("optimized_hlo_tokens") or 0)
            realism.add(row)
        out["splits"][split] = n
    out["rows"] = sum(out["splits"].values())
    out["by_category"] = dict(sorted(out["by_category"].items()))
    out["near_duplicates"] = near_duplicates(ir_texts)
    out["op_coverage"] = len(ops)
    out["reachable_coverage"] = coverage(ops)
    out["op_frequency"] = dict(ops.most_common())
    out["python_lines"] = percentiles(py_lines) | {"median": statistics.median(py_lines) if py_lines else float("nan")}
    out["stablehlo_lines"] = percentiles(ir_lines) | {
        "median": statistics.median(ir_lines) if ir_lines else float("nan")
    }
    out["flops"] = percentiles(flops)
    out["styles"] = dict(styles.most_common())
    out["models"] = {
        category: {
            "rows": len(c["ir"]),
            "stablehlo_lines": {
                "median": statistics.median(c["ir"]),
                "p95": nearest_rank(c["ir"], 95),
                "max": max(c["ir"]),
            },
            "python_lines": {"median": statistics.median(c["py"]), "max": max(c["py"])},
            "largest_input_dim": {"median": statistics.median(c["dim"]), "max": max(c["dim"])},
            "styles": dict(c["styles"].most_common()),
        }
        for category, c in sorted(per_category.items(), key=lambda kv: MODEL_CATEGORIES.index(kv[0]))
    }
    if tokens["python"]:
        pair = [p + i for p, i in zip(tokens["python"], tokens["stablehlo"])]
        out["tokens"] = {
            "rows": len(pair),
            "python": sum(tokens["python"]),
            "stablehlo": sum(tokens["stablehlo"]),
            "optimized_hlo": sum(tokens["optimized_hlo"]),
            "pair": {"median": statistics.median(pair), "p95": nearest_rank(pair, 95), "max": max(pair)},
            "python_median": statistics.median(tokens["python"]),
            "stablehlo_median": statistics.median(tokens["stablehlo"]),
        }
    out["realism"] = realism.summary()
    return out


def near_duplicates(irs: Iterable[str]) -> dict[str, float]:
    """Rows whose IR equals an earlier row's after renaming SSA values and constants."""
    from ..core.irtext import skeleton_ir

    seen: set[str] = set()
    n = dups = 0
    for ir in irs:
        n += 1
        key = skeleton_ir(ir)
        dups += key in seen
        seen.add(key)
    return {"rows": dups, "rate": dups / n if n else 0.0}


def generator_summary() -> dict[str, Any]:
    """The op table: how many ops each category draws from."""
    return {
        "ops": len(OPS),
        "ops_per_category": {c: sum(c in op.categories for op in OPS) for c in CATEGORIES},
    }


def format_summary(s: Mapping[str, Any]) -> str:
    lines = [f"rows: {s['rows']}  (" + ", ".join(f"{k}: {v}" for k, v in s["splits"].items()) + ")"]
    lines.append("by category: " + ", ".join(f"{k} {v}" for k, v in s["by_category"].items()))
    lines.append(f"op coverage: {s['op_coverage']} distinct stablehlo/chlo ops")
    if "reachable_coverage" in s:
        rc = s["reachable_coverage"]
        lines.append(
            f"reachable coverage: {rc['covered']} of {rc['reachable']} ops JAX can emit; missing: {', '.join(rc['missing']) or 'none'}"
        )
    pl, il, fl = s["python_lines"], s["stablehlo_lines"], s["flops"]
    lines.append(f"python lines: median {pl['median']:g}, p5 {pl['p5']:g}, p95 {pl['p95']:g}")
    lines.append(f"stablehlo lines: median {il['median']:g}, p5 {il['p5']:g}, p95 {il['p95']:g}")
    lines.append(f"flops: p5 {fl['p5']:g}, median {fl['p50']:g}, p95 {fl['p95']:g}")
    if "near_duplicates" in s:
        nd = s["near_duplicates"]
        lines.append(
            f"near-duplicates (IR equal up to SSA names and constants): {nd['rows']} rows ({100 * nd['rate']:.2f}%)"
        )
    if s.get("tokens"):
        from ..core.tokens import TOKENIZER_NAME

        t = s["tokens"]
        lines.append(
            f"tokens ({TOKENIZER_NAME}): python {t['python']:,} (median {t['python_median']:g}), stablehlo "
            f"{t['stablehlo']:,} (median {t['stablehlo_median']:g}); per pair (python + stablehlo) median "
            f"{t['pair']['median']:g}, p95 {t['pair']['p95']:g}, max {t['pair']['max']:g}"
        )
    if s.get("styles"):
        lines.append("styles: " + ", ".join(f"{k} {v}" for k, v in s["styles"].items()))
    for category, m in (s.get("models") or {}).items():
        il, pl, dim = m["stablehlo_lines"], m["python_lines"], m["largest_input_dim"]
        lines.append(
            f"  {category}: {m['rows']} rows; IR lines median {il['median']:g}, p95 {il['p95']:g}, max {il['max']:g}; "
            f"python lines median {pl['median']:g}; largest input dim median {dim['median']:g}, max {dim['max']:g}; "
            + ", ".join(f"{k} {v}" for k, v in m["styles"].items())
        )
    if "realism" in s:
        lines += format_realism(s["realism"])
    return "\n".join(lines)


def format_realism(r: Mapping[str, Any]) -> list[str]:
    """The lines of ``format_summary`` on how the programs read."""
    d, dim, out = r["dead"], r["largest_input_dim"], r["outputs"]
    lines = [
        f"dead statements (value never reaches the return): {100 * d['share']:.1f}% of {d['statements']} "
        f"top-level statements; rows with one: {100 * d['rows_share']:.1f}%",
        "  by category: "
        + ", ".join(f"{c} {100 * v['share']:.0f}%" for c, v in r["dead_by_category"].items() if v["statements"]),
        f"function names made of op names: {100 * r['op_named']['share']:.1f}% of rows; "
        f"naming an op whose statement is dead: {100 * r['dead_named_op']['share']:.1f}%",
        f"docstrings: {100 * r['docstring']['share']:.1f}% of functions; type hints: {100 * r['type_hints']['share']:.1f}%",
        f"largest input dimension: median {dim['median']:g}, p95 {dim['p95']:g}; "
        f"rows with a dimension >= 128: {100 * dim['large_share']:.1f}%",
        "input dtypes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["input_dtypes"].items()),
        f"values returned per function: median {out['median']:g}, p95 {out['p95']:g}",
    ]
    if r["unparsed"]:
        lines.append(f"rows whose source has no such function (not measured): {r['unparsed']}")
    return lines
