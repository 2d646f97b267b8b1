"""``SynthesisPipeline``: the original design's library entry point, on top of the shard pipeline."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.categories import CATEGORIES
from ..core.plan import check_size, plan_shards
from ..core.rows import ShardStats
from ..runtime.shards import generate_shard
from .io import ensure_writable_dir, write_jsonl

__all__ = ["SynthesisPipeline", "ensure_writable_dir"]


class SynthesisPipeline:
    """Generate (Python, StableHLO) pairs outside ``datasets``.

    Example:
      >>> pipe = SynthesisPipeline(output_dir="data/samples", seed=0)
      >>> row = pipe.generate_single("matrix")
      >>> rows = pipe.generate_batch(100, save=True)   # writes data/samples/batch-00001.jsonl
      >>> pipe.get_statistics()["total_pairs"]
      101
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, seed: int = 0):
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.seed = check_size("seed", seed)
        self._stats = ShardStats()
        self._by_category: dict[str, int] = {}
        self._calls = 0

    def _rows(self, count: int, categories: tuple[str, ...], mixture: str) -> Iterator[dict[str, Any]]:
        # Each call is its own shard stream (its shard index is the call number, which seeds its
        # draws), so calls rarely repeat each other's programs and a rerun with the same seed
        # repeats all of them. Its rows are train rows: programs of train structures.
        (task,) = plan_shards(
            min_shards_per_split=1,
            train_size=count,
            validation_size=0,
            seed=self.seed,
            categories=categories,
            mixture=mixture,
            rows_per_shard=max(count, 1),
        )["train"]
        task = dataclasses.replace(task, shard_index=self._calls)
        self._calls += 1
        for row in generate_shard(task, self._stats):
            self._by_category[row["category"]] = self._by_category.get(row["category"], 0) + 1
            yield row

    def _save(self, rows: list[dict[str, Any]], stem: str) -> Path:
        if self.output_dir is None:
            raise ValueError("save=True needs an output_dir")
        out = ensure_writable_dir(self.output_dir)
        return write_jsonl(rows, out / f"{stem}-{self._calls - 1:05d}.jsonl")

    def generate_single(self, category: str, save: bool = False) -> dict[str, Any]:
        """One row of ``category``."""
        (row,) = self._rows(1, (category,), "balanced")
        if save:
            self._save([row], "single")
        return row

    def generate_batch(
        self, count: int, save: bool = False, verbose: bool = False, *, categories=CATEGORIES, balanced: bool = True
    ) -> list[dict[str, Any]]:
        """``count`` rows, an equal share per category (``balanced``) or drawn at random."""
        check_size("count", count)
        rows_iter = self._rows(count, tuple(categories), "balanced" if balanced else "mixed")
        if verbose:
            from tqdm.auto import tqdm

            rows_iter = tqdm(rows_iter, total=count, unit="pair", desc="generating")
        rows = list(rows_iter)
        if save:
            self._save(rows, "batch")
        return rows

    def get_statistics(self) -> dict[str, Any]:
        """Over this pipeline's life: ``total_pairs`` (the rows it returned, as the original
        design named them), the shard counters (``rows``, ``attempts``, resamples by cause,
        ``failure_examples``) and ``by_category``, rows per category."""
        stats = self._stats.as_dict()
        stats["by_category"] = dict(sorted(self._by_category.items()))
        stats["total_pairs"] = sum(self._by_category.values())
        return stats
