"""How much of the held-out splits a model could have memorized from train, measured on the rows.

A yardstick apart from the split rule (``core.structure``), sharing none of its code: it reads
only the rows' texts. A held-out row (validation or test) *leaks* if its IR op sequence (the
``stablehlo.*``/``chlo.*`` ops of its ``stablehlo_ir`` in order) or its source call sequence
(the ``jnp.``/``lax.``/``jax.``/``nnx.``/``eqx.``/``optax.`` calls of its code before
``example_args()``, in order) also occurs in a train row of the same config. Sizes, names and
constants change neither sequence, so a held-out program that is a train program at other sizes
or with other names counts as leaked.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HELD_OUT = ("validation", "test")
# An op of either dialect where it is used: after "=" or at a line's start (ops without results),
# or quoted in generic form; never an attribute (#stablehlo.gather<...>) or a type.
_IR_OP = re.compile(r'(?:^\s*|=\s*|\s"|\()((?:stablehlo|chlo)\.[a-z_0-9]+)\b', re.M)
_CALL = re.compile(r"(?<![\w.])((?:jnp|lax|jax|nnx|eqx|optax)(?:\.\w+)+)\s*\(")


def ir_op_sequence(ir: str) -> tuple[str, ...]:
    """The ops of a StableHLO module in the order they are written."""
    return tuple(_IR_OP.findall(ir))


def call_sequence(source: str) -> tuple[str, ...]:
    """The library calls of a source's code (not its ``example_args()``), in order."""
    code = source.split("\ndef example_args(", 1)[0]
    return tuple(_CALL.findall(code))


def measure(rows_by_split: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
    """Leakage of the held-out splits into train.

    Args:
      rows_by_split: each split's rows (``category``, ``python_source`` and ``stablehlo_ir``).

    Returns:
      ``{"train_rows": n, "held_out_rows": n, "ir": share, "calls": share, "either": share,
      "by_category": {category: {"held_out_rows", "ir", "calls", "either"}}}``, shares of
      held-out rows whose sequence occurs in train (``None`` without held-out rows).
    """
    train_ir: set[tuple[str, ...]] = set()
    train_calls: set[tuple[str, ...]] = set()
    train_rows = 0
    for row in rows_by_split.get("train", ()):
        train_rows += 1
        train_ir.add(ir_op_sequence(row["stablehlo_ir"]))
        train_calls.add(call_sequence(row["python_source"]))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # held out, ir, calls, either
    for split in HELD_OUT:
        for row in rows_by_split.get(split, ()):
            ir = ir_op_sequence(row["stablehlo_ir"]) in train_ir
            calls = call_sequence(row["python_source"]) in train_calls
            for c in (counts[row["category"]], counts["*"]):
                c[0] += 1
                c[1] += ir
                c[2] += calls
                c[3] += ir or calls

    def shares(c: list[int]) -> dict[str, Any]:
        n = c[0]
        return {"held_out_rows": n, **{k: (v / n if n else None) for k, v in zip(("ir", "calls", "either"), c[1:])}}

    total = shares(counts.pop("*", [0, 0, 0, 0]))
    return {"train_rows": train_rows, **total, "by_category": {k: shares(v) for k, v in sorted(counts.items())}}


def read_staged(folder: str | Path, config: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``config`` in a staged folder (``<folder>/<config>/<split>-*.parquet``), by split."""
    import pyarrow.parquet as pq

    root = Path(folder) / config
    if not root.is_dir():
        configs = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
        raise ValueError(f"no config {config!r} in {str(folder)!r}; configs there: {', '.join(configs) or 'none'}")
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.glob("*.parquet")):
        split = path.name.split("-", 1)[0]
        table = pq.read_table(path, columns=["category", "python_source", "stablehlo_ir"])
        out.setdefault(split, []).extend(table.to_pylist())
    return out


def staged_leakage(folder: str | Path, config: str) -> dict[str, Any]:
    """``measure`` of a staged config."""
    return measure(read_staged(folder, config))


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a table: one line per category, then all."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [f"{'category':<16} {'held out':>8} {'IR ops':>7} {'calls':>7} {'either':>7}"]
    for name, r in [*report["by_category"].items(), ("all", report)]:
        lines.append(f"{name:<16} {r['held_out_rows']:>8} {pct(r['ir']):>7} {pct(r['calls']):>7} {pct(r['either']):>7}")
    return "\n".join(lines)
