"""What a build takes: the fields of every builder config, in one place.

The builder's config (``jax_stablehlo_pairs.PairsConfig``) is these fields on a
``datasets.BuilderConfig``; the command line derives its build options from them
(``tools.cli``), so a new field reaches ``load_dataset(..., field=value)`` and
``python -m generator build --field value`` at once, with its meaning and its valid values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .categories import CATEGORIES
from .plan import HOST_PLATFORM, MIXTURES, PLATFORMS, ShardTask, plan_shards
from .policy import POLICIES, policy_for
from .views import PAIRS, VIEW_NAMES, check_view


def _option(default: Any, help: str, *, choices: tuple[Any, ...] | None = None, minimum: int = 0) -> Any:
    """A field with what the command line needs: its help, its valid values, its least value (ints)."""
    metadata = {"help": help, "choices": choices, "minimum": minimum}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class BuildOptions:
    """A category mix, build size and what each row holds.

    Attributes:
      categories: categories the config draws from.
      mixture: "balanced" (equal share per category) or "mixed" (drawn at random).
      train_size, validation_size: rows per split.
      test_size: rows of the test split; None: as many as validation_size. A row's split follows
        from its structure (``core.structure``): no structure is in two splits.
      seed: the build's seed; same version, config, seed and sizes give identical rows.
      rows_per_shard: at most this many rows a generation shard (the unit of ``num_proc``
        parallelism); a split gets a multiple of 8 shards where its rows allow (``core.plan``).
      program_size: "small", "medium" or "large": statements per program (a sampler policy).
      with_optimized_hlo: also compile each program and add XLA's optimized HLO (slower).
      view: "pairs" (the rows), or a task view of them for fine-tuning: "forward",
        "conversational", "reverse", "optimize" (needs with_optimized_hlo) or "cost".
      max_tokens: a context budget: pairs whose view rows (any view) would exceed this many
        Tekken tokens are resampled, never truncated. None: no budget.
      platform: the platform every program is lowered for: "cpu" (this machine's), or "cuda",
        "rocm", "tpu", lowered without their hardware (its ``lowering`` column says so).
    """

    categories: tuple[str, ...] = _option(CATEGORIES, "categories to draw from", choices=CATEGORIES)
    mixture: str = _option("balanced", "equal share per category, or categories drawn at random", choices=MIXTURES)
    train_size: int = _option(10_000, "rows in train")
    validation_size: int = _option(1_000, "rows in validation")
    test_size: int | None = _option(None, "rows in test (default: as many as validation)")
    seed: int = _option(0, "the build's seed: same version, config, seed and sizes give identical rows")
    rows_per_shard: int = _option(
        500, "at most this many rows a generation shard, the unit of num_proc parallelism", minimum=1
    )
    program_size: str = _option("medium", "statements per op-table program", choices=tuple(POLICIES))
    with_optimized_hlo: bool = _option(False, "also compile every program and record XLA's optimized HLO (slower)")
    view: str = _option(PAIRS, "the rows, or a fine-tuning view of them", choices=VIEW_NAMES)
    max_tokens: int | None = _option(
        None, "context budget: resample pairs whose view rows exceed this many Tekken tokens", minimum=1
    )
    platform: str = _option(
        HOST_PLATFORM, "the platform programs are lowered for (no hardware needed)", choices=PLATFORMS
    )

    def shard_plan(self) -> dict[str, list[ShardTask]]:
        """Shards per split; raises ``ValueError`` naming any bad field value."""
        if check_view(self.view) == "optimize" and not self.with_optimized_hlo:
            raise ValueError("view 'optimize' needs with_optimized_hlo=True (its completions are optimized HLO)")
        return plan_shards(
            train_size=self.train_size,
            validation_size=self.validation_size,
            test_size=self.validation_size if self.test_size is None else self.test_size,
            seed=self.seed,
            categories=self.categories,
            mixture=self.mixture,
            rows_per_shard=self.rows_per_shard,
            policy=policy_for(self.program_size),
            with_optimized_hlo=self.with_optimized_hlo,
            max_tokens=self.max_tokens,
            platform=self.platform,
        )
