"""How many distinct programs the model families can draw, and whether they keep growing.

For each model category, ``draws`` programs are drawn as a build draws them (``family.sample``,
then ``family.render``) and counted by their ordered ``jnp.``/``lax.``/``jax.``/``nnx.``/
``eqx.``/``optax.`` calls (``leakage.call_sequence``: sizes, names and constants do not count),
and by their ``structure`` key (what decides the split). A family whose call sequences stop
growing repeats the same programs at other sizes however many rows a build asks for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from ..core.models import FAMILIES, MODEL_CATEGORIES
from ..core.structure import structure_key
from .leakage import call_sequence

CHECKPOINTS = (1_000, 5_000, 20_000)
WINDOW = 1_000  # the share of new call sequences among the last this many draws


def model_diversity(
    categories: Sequence[str] = MODEL_CATEGORIES,
    *,
    draws: int = 20_000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Distinct call sequences and structures of ``draws`` programs per model category.

    Returns, per category: ``draws``; ``call_sequences`` and ``structures`` (distinct counts
    after every checkpoint of ``CHECKPOINTS`` up to ``draws``, and at ``draws``); ``new_in_last``
    (the share of the last ``WINDOW`` draws whose call sequence was new).

    Raises:
      ValueError: an unknown category (naming the valid ones) or ``draws`` < 1.
    """
    bad = [c for c in categories if c not in FAMILIES]
    if bad:
        raise ValueError(f"unknown model categories {bad}; valid: {', '.join(MODEL_CATEGORIES)}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    points = sorted({*(c for c in CHECKPOINTS if c < draws), draws})
    out = {}
    for category in categories:
        family = FAMILIES[category]
        rng = random.Random(f"diversity:{seed}:{category}")
        calls: set[tuple[str, ...]] = set()
        structures: set[str] = set()
        curve_calls, curve_structures, recent_new = {}, {}, 0
        for i in range(1, draws + 1):
            spec = family.sample(rng)
            sequence = call_sequence(family.render(spec).source)
            new = sequence not in calls
            calls.add(sequence)
            structures.add(structure_key(family.structure_of(spec)))
            if i > draws - WINDOW:
                recent_new += new
            if i in points:
                curve_calls[i], curve_structures[i] = len(calls), len(structures)
            if progress is not None:
                progress(1)
        out[category] = {
            "draws": draws,
            "call_sequences": curve_calls,
            "structures": curve_structures,
            "new_in_last": recent_new / min(WINDOW, draws),
        }
    return out


def format_diversity(report: dict[str, dict[str, Any]]) -> str:
    """The report as a table: distinct call sequences (and structures) at each checkpoint."""
    points = sorted({p for r in report.values() for p in r["call_sequences"]})
    head = f"{'category':<12}" + "".join(f"{f'at {p:,}':>16}" for p in points) + f"{'new in last':>13}"
    lines = [head, f"{'':<12}" + "".join(f"{'calls / structs':>16}" for _ in points)]
    for category, r in report.items():
        cells = "".join(f"{r['call_sequences'][p]:>9,} / {r['structures'][p]:<4,}" for p in points)
        lines.append(f"{category:<12}{cells}{r['new_in_last']:>12.1%}")
    window = min(WINDOW, min(r["draws"] for r in report.values()))
    lines.append(f"(calls: distinct ordered library call sequences; new in last: share of the last {window:,} draws)")
    return "\n".join(lines)
