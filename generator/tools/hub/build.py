"""Building configs through the builder script: loading it, checking config names, building one
config while collecting its shards' resample counts, and the row digest the viewer check compares."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import DatasetBuilder, DatasetDict

ROOT = Path(__file__).resolve().parents[3]  # the repository: generator/tools/hub/build.py
DEFAULT_SCRIPT = ROOT / "jax_stablehlo_pairs.py"


def load_builder_module(script: str | os.PathLike = DEFAULT_SCRIPT) -> ModuleType:
    """The builder script as a module (as the tests and README's datasets>=4 recipe load it)."""
    name = Path(script).stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == Path(script).resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load builder script {str(script)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (and pickling for num_proc) look the module up by name
    spec.loader.exec_module(module)
    return module


def config_names(module: ModuleType) -> list[str]:
    """The builder script's config names, in its order."""
    return [c.name for c in module.JaxStablehloPairs.BUILDER_CONFIGS]


def check_configs(module: ModuleType, configs: Sequence[str] | None) -> list[str]:
    """``configs`` (all of them if empty), or a ``ValueError`` naming the unknown ones."""
    valid = config_names(module)
    if not configs:
        return valid
    bad = [c for c in configs if c not in valid]
    if bad:
        raise ValueError(f"unknown configs {bad}; valid configs: {', '.join(valid)}")
    return list(dict.fromkeys(configs))


@contextmanager
def _shard_stats_observed() -> Iterator[list[dict[str, Any]]]:
    """Collect the per-shard stats ``runtime.shards`` logs, from this process and its forked workers.

    The builder script runs its shards through ``runtime.shards.generate_shard``, which keeps
    each shard's ``ShardStats`` to itself and reports it only as the log record
    ``shards.logger.info("shard %s/%d: %s", split, index, stats.as_dict())``. That record is
    the contract: a record of ``shards.logger`` whose last argument is a dict with exactly the
    fields of ``ShardStats`` is one shard's stats; every other record is ignored.

    The handler appends JSON lines to a file, which forked ``num_proc`` workers inherit; the
    list yielded is filled when the block ends.
    """
    import dataclasses

    from ...core.rows import ShardStats
    from ...runtime import shards

    fields = {f.name for f in dataclasses.fields(ShardStats)}
    seen: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def __init__(self, path: str):
            super().__init__(logging.INFO)
            self.path = path

        def emit(self, record: logging.LogRecord) -> None:
            args = record.args
            if isinstance(args, tuple) and args and isinstance(args[-1], dict) and args[-1].keys() == fields:
                stats = {k: v for k, v in args[-1].items() if isinstance(v, int)}
                with open(self.path, "a", encoding="utf-8") as f:  # one short O_APPEND write per shard
                    f.write(json.dumps(stats) + "\n")

    logger = shards.logger
    level, propagate = logger.level, logger.propagate
    with tempfile.TemporaryDirectory(prefix="jsp-shard-stats-") as tmp:
        handler = Collect(str(Path(tmp) / "stats.jsonl"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield seen
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
            if Path(handler.path).exists():
                seen.extend(json.loads(line) for line in Path(handler.path).read_text().splitlines() if line)


def build_config(
    module: ModuleType, name: str, *, cache_dir: str, num_proc: int | None = None, **config_kwargs: Any
) -> tuple[DatasetBuilder, DatasetDict, dict[str, int] | None]:
    """Build one config through the builder class; returns ``(builder, DatasetDict, shard stats or None)``."""
    builder = module.JaxStablehloPairs(config_name=name, cache_dir=cache_dir, **config_kwargs)
    planned = sum(len(tasks) for tasks in builder.config.shard_plan().values())
    with _shard_stats_observed() as seen:
        builder.download_and_prepare(num_proc=num_proc)
    stats = None
    if len(seen) == planned:  # every shard reported: the numbers are complete
        keys = (
            "rows",
            "attempts",
            "other_bucket",
            "other_split",
            "sampling_rejects",
            "lowering_failures",
            "large_constants",
            "over_budget",
            "duplicates",
        )
        stats = {k: sum(int(s.get(k, 0)) for s in seen) for k in keys}
    return builder, builder.as_dataset(), stats


def row_digest(row: Mapping[str, Any]) -> str:
    """A digest of one row's values, the same whichever ``datasets`` version decoded it."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
