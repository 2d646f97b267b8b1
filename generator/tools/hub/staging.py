"""Staging: build configs and write a Hub-ready folder (Parquet per config and split, task views
of each config as further configs, the card, its plots), atomically, replacing only an empty
folder or an earlier staging. Configs lowered for other platforms than the CPU are staged
beside the CPU's as ``<config>-<platform>`` (``staged.hub_config_name``)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...core.plan import HOST_PLATFORM, check_platforms
from ...core.views import VIEWS, view_row
from ...core.views import features as view_features
from ..io import replace_dir
from .build import DEFAULT_SCRIPT, build_config, check_configs, load_builder_module, row_digest
from .card import STAGED_MARKER, write_card
from .staged import StagedConfig, StagedView, StageResult, hub_config_name

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

MAX_SHARD_BYTES = 500 << 20  # push_to_hub's default max_shard_size
# The viewer refuses Parquet row groups over about 286 MiB; ours hold at most this many bytes
# of Arrow data (and at most datasets' default of 1,000 rows), however long the rows.
ROW_GROUP_BYTES = 64 << 20
MAX_ROWS_PER_ROW_GROUP = 1000
# Views staged for every config; ``optimize`` too when the config has optimized HLO.
DEFAULT_VIEWS = ("forward", "conversational", "reverse", "cost")


def row_nbytes(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Bytes of each row of ``array`` (values and offsets), for any nesting of lists and structs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + 4
    if pa.types.is_struct(t):
        total = np.zeros(len(array), dtype=np.int64)
        for child in array.flatten():
            total += row_nbytes(child)
        return total
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = row_nbytes(array.flatten())
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=child, minlength=len(array)).astype(np.int64) + 4
    return np.full(len(array), max(1, t.bit_width // 8), dtype=np.int64)


def rows_per_row_group(table: pa.Table, row_group_bytes: int = ROW_GROUP_BYTES) -> int:
    """Rows per Parquet row group such that no group holds more than ``row_group_bytes``."""
    if table.num_rows == 0:
        return MAX_ROWS_PER_ROW_GROUP
    longest = int(sum(row_nbytes(column) for column in table.columns).max())
    return max(1, min(MAX_ROWS_PER_ROW_GROUP, row_group_bytes // longest))


def _write_parquet_shards(
    ds: Dataset, folder: Path, split: str, max_shard_bytes: int, row_group_bytes: int = ROW_GROUP_BYTES
) -> list[Path]:
    """``<split>-0000i-of-0000N.parquet`` as push_to_hub names them; bytes depend on the rows only."""
    num_shards = max(1, math.ceil(ds.data.nbytes / max_shard_bytes))
    batch_size = rows_per_row_group(ds.data.table, row_group_bytes)
    paths = []
    for i in range(num_shards):
        path = folder / f"{split}-{i:05d}-of-{num_shards:05d}.parquet"
        ds.shard(num_shards=num_shards, index=i, contiguous=True).to_parquet(str(path), batch_size=batch_size)
        paths.append(path)
    return paths


def views_of(config_views: Sequence[str] | None, with_optimized_hlo: bool) -> tuple[str, ...]:
    """The views to stage: ``config_views`` checked, or the defaults (``optimize`` with optimized HLO)."""
    if config_views is None:
        return DEFAULT_VIEWS + (("optimize",) if with_optimized_hlo else ())
    bad = [v for v in config_views if v not in VIEWS]
    if bad:
        raise ValueError(f"unknown views {bad}; valid views: {', '.join(VIEWS)}")
    if "optimize" in config_views and not with_optimized_hlo:
        raise ValueError("view 'optimize' needs with_optimized_hlo=True (its completions are optimized HLO)")
    return tuple(dict.fromkeys(config_views))


def _stage_view(
    dsd: DatasetDict, sc: StagedConfig, view: str, folder: Path, root: Path, max_shard_bytes: int
) -> StagedView | None:
    """Write ``view`` of a built config under ``folder``; ``None`` if no row of it has such a row."""
    from datasets import Dataset

    features = view_features(view)
    sv = StagedView(name=folder.name, pairs_config=sc.name, view=view, features=features)
    for split, ds in dsd.items():
        rows = [r for r in (view_row(row, view, sc.seed) for row in ds) if r is not None]
        if not rows:
            continue
        vds = Dataset.from_list(rows, features=features)
        folder.mkdir(exist_ok=True)
        paths = _write_parquet_shards(vds, folder, split, max_shard_bytes)
        sv.files[split] = [p.relative_to(root).as_posix() for p in paths]
        sv.row_digests[split] = [row_digest(row) for row in rows]
    return sv if sv.files else None


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
    test_size: int | None = None,
    seed: int | None = None,
    num_proc: int | None = None,
    script: str | os.PathLike = DEFAULT_SCRIPT,
    repo_id: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    cache_dir: str | None = None,
    views: Sequence[str] | None = None,
    max_tokens: int | None = None,
    with_optimized_hlo: bool = False,
    platforms: str | Sequence[str] | None = None,
) -> StageResult:
    """Build ``configs`` through the builder and write a Hub-ready folder at ``output_dir``.

    Args:
      output_dir: the folder to (re)write; replaced atomically, and only if empty or a staging.
      configs: config names; all configs when empty.
      train_size, validation_size, test_size, seed: passed to every config (its defaults when
        ``None``; a config's test split is as large as its validation split by default).
      num_proc: builder processes (forked; resample counts are collected from each).
      repo_id: the Hub repo the card's loading examples name.
      max_shard_bytes: Parquet shards hold about this many bytes of Arrow data.
      cache_dir: the builder's cache; a temporary one (removed afterwards) when ``None``.
      views: task views staged beside each config as ``<config>-<view>`` (``core.views``);
        ``None``: ``DEFAULT_VIEWS``, and ``optimize`` with ``with_optimized_hlo``; empty: none.
      max_tokens: build every config under this token budget (pairs whose views exceed it are
        resampled); ``None``: no budget.
      with_optimized_hlo: build with XLA's optimized HLO (slower; gives the ``optimize`` view).
      platforms: the platforms each config is built for (``"cpu,tpu"`` or ``["cpu", "tpu"]``;
        ``None``: the CPU only); programs are lowered for each without its hardware. A config's
        CPU rows are staged as ``<config>``, another platform's as ``<config>-<platform>``
        (``balanced``, ``balanced-tpu``), each with its views, in one folder and one card.

    Raises:
      ValueError: an unknown config, view or platform, a bad size, seed or budget, optimized HLO
        for a platform this machine cannot compile for, or an unusable ``output_dir``; raised
        before any row is built.
    """
    output_dir = Path(output_dir)
    module = load_builder_module(script)
    names = check_configs(module, configs)
    platforms = check_platforms(platforms)
    kwargs = {
        k: v
        for k, v in (
            ("train_size", train_size),
            ("validation_size", validation_size),
            ("test_size", test_size),
            ("seed", seed),
            ("max_tokens", max_tokens),
            ("with_optimized_hlo", with_optimized_hlo or None),
        )
        if v is not None
    }
    # every (config, platform) to build, grouped by config: balanced, balanced-tpu, matrix, ...
    builds = [(name, platform, hub_config_name(name, platform)) for name in names for platform in platforms]
    on = {p: kwargs | ({"platform": p} if p != HOST_PLATFORM else {}) for p in platforms}
    staged_views = views_of(views, with_optimized_hlo)
    for name, platform, _ in builds:  # bad sizes, seed or platform options fail here, before any work
        module.JaxStablehloPairs.BUILDER_CONFIG_CLASS(name=name, **on[platform]).shard_plan()
    _check_output_dir(output_dir)

    version = str(module.VERSION)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.resolve().parent, prefix=f".{output_dir.name}.staging-"))
    try:
        with tempfile.TemporaryDirectory(prefix="jsp-stage-cache-") as own_cache:
            staged, staged_view = {}, {}
            for name, platform, hub_name in builds:
                builder, dsd, stats = build_config(
                    module, name, cache_dir=cache_dir or own_cache, num_proc=num_proc, **on[platform]
                )
                cfg = builder.config
                sc = StagedConfig(
                    name=hub_name,
                    config=name,
                    platform=cfg.platform,
                    description=cfg.description or "",
                    categories=tuple(cfg.categories),
                    mixture=cfg.mixture,
                    sizes={
                        "train": cfg.train_size,
                        "validation": cfg.validation_size,
                        "test": cfg.validation_size if cfg.test_size is None else cfg.test_size,
                    },
                    seed=cfg.seed,
                    shard_stats=stats,
                    features=next(iter(dsd.values())).features,
                )
                (tmp / hub_name).mkdir()
                for split, ds in dsd.items():
                    paths = _write_parquet_shards(ds, tmp / hub_name, split, max_shard_bytes)
                    sc.files[split] = [p.relative_to(tmp).as_posix() for p in paths]
                    sc.row_digests[split] = [row_digest(row) for row in ds]
                staged[hub_name] = sc
                for view in staged_views:
                    sv = _stage_view(dsd, sc, view, tmp / f"{hub_name}-{view}", tmp, max_shard_bytes)
                    if sv is not None:
                        staged_view[sv.name] = sv
                del dsd, builder
        result = StageResult(tmp, version, staged, staged_view, max_tokens=max_tokens)
        write_card(result, module=module, repo_id=repo_id, num_proc=num_proc)
        replace_dir(tmp, output_dir)  # an old staging is removed only after the swap
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = output_dir
    return result
