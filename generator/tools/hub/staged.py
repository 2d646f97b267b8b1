"""What a staged folder holds: the ``StageResult`` that ``stage`` returns and the card, viewer
check and tests read, one ``StagedConfig`` per config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "balanced"  # the config the card marks default and the viewer opens first


@dataclass
class StagedConfig:
    """One config as staged.

    Attributes:
      name, description, categories, mixture: from the builder config.
      sizes: requested rows per split (the builder config's train/validation sizes).
      seed: the build's seed.
      features: the ``datasets.Features`` the builder produced.
      files: staged Parquet paths per split, relative to the staged folder.
      row_digests: per split, a digest of every row as the builder produced it (see ``row_digest``).
      shard_stats: summed ``ShardStats`` counters of the build, or ``None`` if some shard did not report.
    """

    name: str
    description: str
    categories: tuple[str, ...]
    mixture: str
    sizes: dict[str, int]
    seed: int
    features: Any = None
    files: dict[str, list[str]] = field(default_factory=dict)
    row_digests: dict[str, list[str]] = field(default_factory=dict)
    shard_stats: dict[str, int] | None = None


@dataclass
class StageResult:
    """What ``stage`` wrote: the folder, the dataset version and each config."""

    path: Path
    version: str
    configs: dict[str, StagedConfig]
