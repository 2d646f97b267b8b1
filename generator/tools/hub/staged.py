"""What a staged folder holds: the ``StageResult`` that ``stage`` returns and the card, viewer
check and tests read, one ``StagedConfig`` per config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.plan import HOST_PLATFORM

DEFAULT_CONFIG = "balanced"  # the config the card marks default and the viewer opens first


def hub_config_name(config: str, platform: str = HOST_PLATFORM) -> str:
    """The Hub config (and folder) of a builder config's rows lowered for ``platform``: the
    config's own name for the CPU (``balanced``), ``<config>-<platform>`` for another
    (``balanced-tpu``), so one Hub dataset holds several platforms' configs side by side."""
    return config if platform == HOST_PLATFORM else f"{config}-{platform}"


@dataclass
class StagedConfig:
    """One config as staged.

    Attributes:
      name: the Hub config (``hub_config_name``: the builder config's name, ``-<platform>`` for
        another platform than the CPU).
      description, categories, mixture: from the builder config.
      config: the builder config's name.
      platform: the platform its programs were lowered for.
      sizes: requested rows per split (the builder config's train, validation and test sizes).
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
    config: str = ""
    platform: str = HOST_PLATFORM

    def __post_init__(self) -> None:
        self.config = self.config or self.name


@dataclass
class StagedView:
    """A task view (``generator.core.views``) of a staged config, staged as a Hub config of its own.

    Attributes:
      name: the Hub config, ``<pairs_config>-<view>``.
      pairs_config: the staged config whose rows it is made from.
      view: the view's name.
      features: its ``datasets.Features``.
      files, row_digests: as for ``StagedConfig``; splits without rows are left out.
    """

    name: str
    pairs_config: str
    view: str
    features: Any = None
    files: dict[str, list[str]] = field(default_factory=dict)
    row_digests: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class StageResult:
    """What ``stage`` wrote: the folder, the dataset version, each config and each view of one.

    ``max_tokens`` is the budget the configs were built under (``None``: none).
    """

    path: Path
    version: str
    configs: dict[str, StagedConfig]
    views: dict[str, StagedView] = field(default_factory=dict)
    max_tokens: int | None = None

    def hub_configs(self) -> dict[str, StagedConfig | StagedView]:
        """Every Hub config the folder holds: the pairs configs, then the views."""
        return {**self.configs, **self.views}

    @property
    def platforms(self) -> list[str]:
        """The platforms of the staged configs, in staging order."""
        return list(dict.fromkeys(c.platform for c in self.configs.values()))
