"""Degenerate steps in op-table rows: how many rows reduce a value over zero dimensions.

A reduction of a scalar (``jnp.sum`` of a loss, ``jnp.max`` of a maximum) lowers to
``stablehlo.reduce ... across dimensions = []``; no engineer writes one. This runs the real
pipeline (``SynthesisPipeline``: sample, render, lower, deduplicate) over ``--rows`` train rows
of each op-table category and prints, per category, the rows whose IR holds such a reduction.

Usage: ``python benchmarks/degenerate_steps.py [--rows 150] [--seed 0] [--categories a,b]
[--output table.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.core.irtext import reductions_over_no_dimensions  # noqa: E402
from generator.core.ops import CATEGORIES  # noqa: E402
from generator.tools.api import SynthesisPipeline  # noqa: E402


def measure(categories: tuple[str, ...], rows: int, seed: int) -> dict[str, dict[str, int]]:
    """Per category: ``rows`` made and ``degenerate`` rows (a reduction over no dimensions)."""
    table = {}
    for category in categories:
        made = SynthesisPipeline(seed=seed).generate_batch(rows, categories=(category,))
        degenerate = sum(reductions_over_no_dimensions(row["stablehlo_ir"]) > 0 for row in made)
        table[category] = {"rows": len(made), "degenerate": degenerate}
        print(f"{category:15s} {degenerate:4d} / {len(made)}", flush=True)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=150, help="train rows per category (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="op-table categories, comma-separated")
    parser.add_argument("--output", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    categories = tuple(c for c in args.categories.split(",") if c)
    if unknown := [c for c in categories if c not in CATEGORIES]:
        parser.error(f"not op-table categories: {', '.join(unknown)}; valid: {', '.join(CATEGORIES)}")
    start = time.monotonic()
    table = measure(categories, args.rows, args.seed)
    rows = sum(t["rows"] for t in table.values())
    degenerate = sum(t["degenerate"] for t in table.values())
    print(f"{'total':15s} {degenerate:4d} / {rows} ({degenerate / max(rows, 1):.1%}), {time.monotonic() - start:.0f} s")
    if args.output:
        args.output.write_text(
            json.dumps({"rows_per_category": args.rows, "seed": args.seed, "table": table}, indent=1)
        )


if __name__ == "__main__":
    main()
