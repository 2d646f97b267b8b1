"""Staging: build configs and write a Hub-ready folder (Parquet per config and split, the card,
its plots), atomically, replacing only an empty folder or an earlier staging."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import replace_dir
from .build import DEFAULT_SCRIPT, build_config, check_configs, load_builder_module, row_digest
from .card import STAGED_MARKER, write_card
from .staged import StagedConfig, StageResult

if TYPE_CHECKING:
    from datasets import Dataset

MAX_SHARD_BYTES = 500 << 20  # push_to_hub's default max_shard_size


def _write_parquet_shards(ds: Dataset, folder: Path, split: str, max_shard_bytes: int) -> list[Path]:
    """``<split>-0000i-of-0000N.parquet`` as push_to_hub names them; bytes depend on the rows only."""
    num_shards = max(1, math.ceil(ds.data.nbytes / max_shard_bytes))
    paths = []
    for i in range(num_shards):
        path = folder / f"{split}-{i:05d}-of-{num_shards:05d}.parquet"
        ds.shard(num_shards=num_shards, index=i, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output directory {str(output_dir)!r} is not a directory")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        readme = output_dir / "README.md"
        if not (readme.is_file() and STAGED_MARKER in readme.read_text(encoding="utf-8", errors="replace")):
            raise ValueError(
                f"output directory {str(output_dir)!r} is not empty and holds no staged dataset; refusing to replace it"
            )
    parent = output_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"output directory {str(output_dir)!r} cannot be created: {e.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {str(output_dir)!r} cannot be created: {str(parent)!r} is not writable")


def stage(
    output_dir: str | os.PathLike,
    configs: Sequence[str] | None = None,
    *,
    train_size: int | None = None,
    validation_size: int | None = None,
    seed: int | None = None,
    num_proc: int | None = None,
    script: str | os.PathLike = DEFAULT_SCRIPT,
    repo_id: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    cache_dir: str | None = None,
) -> StageResult:
    """Build ``configs`` through the builder and write a Hub-ready folder at ``output_dir``.

    Args:
      output_dir: the folder to (re)write; replaced atomically, and only if empty or a staging.
      configs: config names; all configs when empty.
      train_size, validation_size, seed: passed to every config (its defaults when ``None``).
      num_proc: builder processes (forked; resample counts are collected from each).
      repo_id: the Hub repo the card's loading examples name.
      max_shard_bytes: Parquet shards hold about this many bytes of Arrow data.
      cache_dir: the builder's cache; a temporary one (removed afterwards) when ``None``.

    Raises:
      ValueError: an unknown config, a bad size or seed, or an unusable ``output_dir``; raised
        before any row is built.
    """
    output_dir = Path(output_dir)
    module = load_builder_module(script)
    names = check_configs(module, configs)
    kwargs = {
        k: v
        for k, v in (("train_size", train_size), ("validation_size", validation_size), ("seed", seed))
        if v is not None
    }
    for name in names:  # bad sizes/seed fail here, before any work
        module.JaxStablehloPairs.BUILDER_CONFIG_CLASS(name=name, **kwargs).shard_plan()
    _check_output_dir(output_dir)

    version = str(module.VERSION)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.resolve().parent, prefix=f".{output_dir.name}.staging-"))
    try:
        with tempfile.TemporaryDirectory(prefix="jsp-stage-cache-") as own_cache:
            staged = {}
            for name in names:
                builder, dsd, stats = build_config(
                    module, name, cache_dir=cache_dir or own_cache, num_proc=num_proc, **kwargs
                )
                cfg = builder.config
                sc = StagedConfig(
                    name=name,
                    description=cfg.description or "",
                    categories=tuple(cfg.categories),
                    mixture=cfg.mixture,
                    sizes={"train": cfg.train_size, "validation": cfg.validation_size},
                    seed=cfg.seed,
                    shard_stats=stats,
                    features=next(iter(dsd.values())).features,
                )
                (tmp / name).mkdir()
                for split, ds in dsd.items():
                    paths = _write_parquet_shards(ds, tmp / name, split, max_shard_bytes)
                    sc.files[split] = [p.relative_to(tmp).as_posix() for p in paths]
                    sc.row_digests[split] = [row_digest(row) for row in ds]
                staged[name] = sc
                del dsd, builder
        result = StageResult(tmp, version, staged)
        write_card(result, module=module, repo_id=repo_id, num_proc=num_proc)
        replace_dir(tmp, output_dir)  # an old staging is removed only after the swap
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = output_dir
    return result
