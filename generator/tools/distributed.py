"""Distributed generation on Ray: one task per shard, Parquet laid out as the Hub staging lays it.

Each shard of the builder's shard plan (``core.plan.plan_shards``) is one Ray task. A shard is
a pure function of its ``ShardTask``, so a task that fails (an exception, or its worker
process dying) is simply run again, and gives the same rows. Tasks return their rows as an
Arrow table; the driver writes each shard to ``<config>/<split>-0000i-of-0000N.parquet`` (the
file name is the shard index, so a retried shard cannot appear twice) in a hidden sibling
folder, checks that every split has exactly its planned rows and no id twice, then swaps the
folder in. Nothing needs a shared filesystem: rows travel through Ray's object store.

``ray.init()`` with no address starts a local Ray on this machine; ``address="auto"`` (or a
``ray://`` URL) joins a running cluster, whose nodes need this package installed (e.g.
``pip install jax-stablehlo-pairs[ray]``, or a ``runtime_env``).

Usage: ``python -m generator.tools.distributed --config balanced --output-dir staged``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.plan import ShardTask
from ..core.rows import ShardStats
from ..runtime.shards import generate_shard
from .io import atomic_write, replace_dir

DEFAULT_MAX_RETRIES = 3


def shard_table(task: ShardTask) -> tuple[Any, dict[str, Any]]:
    """One shard's rows as an Arrow table with the dataset's schema, and its ``ShardStats``."""
    import pyarrow as pa

    from ..core.schema import FEATURES

    stats = ShardStats()
    rows = [FEATURES.encode_example(row) for row in generate_shard(task, stats)]
    return pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema), stats.as_dict()


def shard_file_name(task: ShardTask, num_shards: int) -> str:
    """``<split>-0000i-of-0000N.parquet``, as ``push_to_hub`` names a split's files."""
    return f"{task.split}-{task.shard_index:05d}-of-{num_shards:05d}.parquet"


@dataclass
class RayBuildResult:
    """What a Ray build wrote.

    Attributes:
      path: the config's folder, ``<output_dir>/<config>``.
      files: Parquet files per split, in shard order.
      rows: rows per split.
      stats: the build's summed ``ShardStats``.
    """

    path: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    stats: ShardStats = field(default_factory=ShardStats)


def builder_config(config: str = "balanced", *, script: str | os.PathLike | None = None, **overrides):
    """The builder script's config ``config`` with field overrides (``train_size=...``), validated."""
    from .hub import DEFAULT_SCRIPT, check_configs, load_builder_module

    module = load_builder_module(script or DEFAULT_SCRIPT)
    check_configs(module, [config])
    base = next(c for c in module.JaxStablehloPairs.BUILDER_CONFIGS if c.name == config)
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    cfg.shard_plan()  # a bad size or seed fails here, before Ray starts
    return cfg


def _check_unique_ids(files: list[Path]) -> None:
    import pyarrow.parquet as pq

    seen: set[str] = set()
    for f in files:
        for i in pq.read_table(f, columns=["id"]).column("id").to_pylist():
            if i in seen:
                raise RuntimeError(f"row id {i} appears twice (second time in {f.name})")
            seen.add(i)


def generate_with_ray(
    output_dir: str | os.PathLike,
    *,
    config: str = "balanced",
    train_size: int | None = None,
    validation_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    rows_per_shard: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    address: str | None = None,
    script: str | os.PathLike | None = None,
    shard_fn: Callable[[ShardTask], tuple[Any, dict[str, Any]]] = shard_table,
) -> RayBuildResult:
    """Build one config on Ray into ``<output_dir>/<config>/<split>-0000i-of-0000N.parquet``.

    Args:
      output_dir: the staging folder; ``<config>`` inside it is replaced once every shard is in.
      config: a builder config name (``balanced``, ``mixed``, a category).
      train_size, validation_size, test_size, seed, rows_per_shard: override the config's fields.
      max_retries: how often Ray re-runs a failed shard (exception or lost worker).
      address: Ray address; ``None`` starts (or reuses) a local Ray.
      script: the builder script (default: the project's ``jax_stablehlo_pairs.py``).
      shard_fn: turns a ``ShardTask`` into (Arrow table, stats dict); replaceable for tests.

    Returns:
      A ``RayBuildResult``. Raises ``ValueError`` for a bad config or size before any work,
      and ``RuntimeError`` if a shard keeps failing or the rows do not add up.
    """
    import pyarrow.parquet as pq
    import ray

    cfg = builder_config(
        config,
        script=script,
        train_size=train_size,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        rows_per_shard=rows_per_shard,
    )
    plan = cfg.shard_plan()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=True)(shard_fn)
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{config}.ray-"))
    pending: dict = {}
    try:
        result = RayBuildResult(path=output_dir / config)
        pending = {remote.remote(task): task for tasks in plan.values() for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                table, stats = ray.get(done[0])
            except Exception as e:  # retries exhausted
                raise RuntimeError(
                    f"shard {task.split}/{task.shard_index} failed after {max_retries} retries: {e}"
                ) from e
            if table.num_rows != task.num_rows:
                raise RuntimeError(
                    f"shard {task.split}/{task.shard_index} gave {table.num_rows} rows, expected {task.num_rows}"
                )
            path = tmp / shard_file_name(task, len(plan[task.split]))
            with atomic_write(path) as part:
                pq.write_table(table, part)
            result.stats.add(ShardStats(**stats))
        for split, tasks in plan.items():
            files = [tmp / shard_file_name(t, len(tasks)) for t in tasks]
            result.files[split] = [result.path / f.name for f in files]
            result.rows[split] = sum(pq.read_metadata(f).num_rows for f in files)
        _check_unique_ids([f for tasks in plan.values() for f in (tmp / shard_file_name(t, len(tasks)) for t in tasks)])
        replace_dir(tmp, result.path)
        return result
    finally:
        for ref in pending:  # a failed build stops its other shards (a Ray we did not start lives on)
            ray.cancel(ref, force=True)
        shutil.rmtree(tmp, ignore_errors=True)
        if started_ray:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m generator.tools.distributed", description="Build a config on Ray into Parquet shards."
    )
    p.add_argument("--config", default="balanced")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--train-size", type=int)
    p.add_argument("--validation-size", type=int)
    p.add_argument("--test-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--rows-per-shard", type=int)
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES)
    p.add_argument("--address", default=None, help="Ray address (default: a local Ray; 'auto' joins a running cluster)")
    args = p.parse_args(argv)
    try:
        result = generate_with_ray(
            args.output_dir,
            config=args.config,
            train_size=args.train_size,
            validation_size=args.validation_size,
            test_size=args.test_size,
            seed=args.seed,
            rows_per_shard=args.rows_per_shard,
            max_retries=args.max_retries,
            address=args.address,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, files in result.files.items():
        print(f"{split}: {result.rows[split]} rows in {len(files)} files under {result.path}")
    print(f"stats: {result.stats.as_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
