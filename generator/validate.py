"""Checking built rows: structure, uniqueness, and that each source reproduces its IR."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import COLUMNS
from .stats import summarize


@dataclass
class Report:
    rows: int = 0
    checked: int = 0
    reproduced: int = 0
    unique_ids: int = 0
    unique_sources: int = 0
    cross_split_ir: int = 0
    missing_columns: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.missing_columns
            and not self.failures
            and self.unique_ids == self.rows
            and self.unique_sources == self.rows
            and self.cross_split_ir == 0
        )

    def format(self) -> str:
        from .stats import format_summary

        pct = (lambda a, b: 100.0 * a / b if b else 100.0)
        lines = [
            f"valid: {pct(self.reproduced, self.checked):.1f}% ({self.reproduced}/{self.checked} re-lowered rows reproduce their IR)",
            f"unique: ids {pct(self.unique_ids, self.rows):.1f}%, sources {pct(self.unique_sources, self.rows):.1f}%",
            f"IR shared across splits: {self.cross_split_ir}",
        ]
        if self.missing_columns:
            lines.append(f"missing columns: {', '.join(self.missing_columns)}")
        if self.summary:
            lines.append(format_summary(self.summary))
        lines += [f"FAIL {f}" for f in self.failures[:20]]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def validate_rows(rows_by_split: Mapping[str, list[dict[str, Any]]], *, sample: int | None = 50, seed: int = 0) -> Report:
    """Validate rows; re-lower ``sample`` random rows (``None``: all) and compare their IR."""
    from .extract import JAX_VERSION, lower_source, normalize_ir

    all_rows = [r for rows in rows_by_split.values() for r in rows]
    report = Report(rows=len(all_rows))
    present = set(all_rows[0]) if all_rows else set(COLUMNS)
    report.missing_columns = [c for c in COLUMNS if c not in present]
    if report.missing_columns:
        return report
    report.unique_ids = len({r["id"] for r in all_rows})
    report.unique_sources = len({r["python_source"] for r in all_rows})
    ir_splits: dict[str, set[str]] = {}
    for split, rows in rows_by_split.items():
        for r in rows:
            ir_splits.setdefault(normalize_ir(r["stablehlo_ir"]), set()).add(split)
    report.cross_split_ir = sum(len(s) > 1 for s in ir_splits.values())
    picked = all_rows if sample is None or sample >= len(all_rows) else random.Random(seed).sample(all_rows, sample)
    for r in picked:
        report.checked += 1
        if r["jax_version"] != JAX_VERSION:
            report.failures.append(f"{r['id']}: built with jax {r['jax_version']}, this is jax {JAX_VERSION}")
            continue
        try:
            ir = lower_source(r["python_source"], r["function_name"]).stablehlo_ir
        except Exception as e:
            report.failures.append(f"{r['id']}: does not lower: {type(e).__name__}: {e}")
            continue
        if ir == r["stablehlo_ir"]:
            report.reproduced += 1
        else:
            report.failures.append(f"{r['id']}: re-lowered IR differs from stablehlo_ir")
    report.summary = summarize(rows_by_split)
    return report
