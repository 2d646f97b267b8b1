"""jax-stablehlo-pairs: JAX programs paired with the StableHLO they lower to.

A thin builder: configs choose a sampling policy; all generation lives in the
``generator`` package (install the project, e.g. ``make install``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import datasets

import generator
from generator.core.categories import CATEGORIES, MODEL_CATEGORIES
from generator.core.plan import example_key, plan_shards
from generator.core.policy import policy_for
from generator.core.schema import CITATION, DESCRIPTION, FEATURES, HOMEPAGE, LICENSE
from generator.core.views import PAIRS, check_view, view_row
from generator.core.views import features as view_features
from generator.runtime.shards import generate_shard, preload

VERSION = datasets.Version(generator.__version__)
RELEASE_NOTES = {
    "1.0.0": "Initial release: seventeen categories, balanced and mixed configs.",
    "1.1.0": "Shards partitioned in two levels (new rows for the same seed); zero cost figures recorded as 0.0; "
    "no bitcast of transcendental results; digamma/polygamma away from their pole.",
    "2.0.0": "Lowered by jax/jaxlib 0.12.0.1 on Python 3.12; six model categories (transformer, decoding, moe, "
    "vision, recurrent, train_step) in plain JAX, Flax NNX, Equinox and optax, and a models config; style and "
    "flax/optax/equinox version columns; op-table programs without dead statements, named for what they "
    "compute, at real sizes, with docstrings and type hints; no bfloat16 triu; token counts (Tekken) per "
    "row; fine-tuning views (forward, conversational, reverse, optimize, cost) and a max_tokens budget.",
    "3.0.0": "Splits by structure: every row has a structure key (what the program computes without sizes, names, "
    "constants and style), which alone decides its split, so no structure is in two splits; a test split "
    "(test_size, default validation_size) in every config; model specs own their shard by a hash of the spec.",
}


@dataclass
class PairsConfig(datasets.BuilderConfig):
    """A category mix and build size.

    Attributes:
      categories: categories the config draws from.
      mixture: "balanced" (equal share per category) or "mixed" (drawn at random).
      train_size, validation_size: rows per split.
      test_size: rows of the test split; None: as many as validation_size. A row's split follows
        from its structure (``generator.core.structure``): no structure is in two splits.
      seed: the build's seed; same version, config, seed and sizes give identical rows.
      rows_per_shard: rows per generation shard (the unit of ``num_proc`` parallelism).
      program_size: "small", "medium" or "large": statements per program (a sampler policy).
      with_optimized_hlo: also compile each program and add XLA's optimized HLO (slower).
      view: "pairs" (the rows), or a task view of them for fine-tuning: "forward",
        "conversational", "reverse", "optimize" (needs with_optimized_hlo) or "cost".
      max_tokens: a context budget: pairs whose view rows (any view) would exceed this many
        Tekken tokens are resampled, never truncated. None: no budget.
    """

    categories: tuple[str, ...] = CATEGORIES
    mixture: str = "balanced"
    train_size: int = 10_000
    validation_size: int = 1_000
    test_size: int | None = None
    seed: int = 0
    rows_per_shard: int = 500
    program_size: str = "medium"
    with_optimized_hlo: bool = False
    view: str = PAIRS
    max_tokens: int | None = None
    version: datasets.Version = field(default_factory=lambda: VERSION)

    def shard_plan(self):
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
        )


def _configs() -> list[PairsConfig]:
    configs = [
        PairsConfig(name="balanced", description="Equal share of every category."),
        PairsConfig(name="mixed", mixture="mixed", description="Categories drawn at random per row."),
        PairsConfig(
            name="models",
            categories=MODEL_CATEGORIES,
            description="Only real model code (transformers, decoding, MoE, vision, recurrent nets, train steps).",
        ),
    ]
    configs += [PairsConfig(name=c, categories=(c,), description=f"Only {c} programs.") for c in CATEGORIES]
    return configs


class JaxStablehloPairs(datasets.GeneratorBasedBuilder):
    """Python (JAX) source paired with the StableHLO text it lowers to."""

    BUILDER_CONFIG_CLASS = PairsConfig
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "balanced"
    VERSION = VERSION
    # datasets' writer holds this many rows before it converts them to Arrow and writes them
    # (1,000 by default). A model row averages about 75 KB of text, so a worker held a whole
    # split's rows and converted them at its end: a 260 MB spike in a 2,000-row models build.
    DEFAULT_WRITER_BATCH_SIZE = 100

    def __init__(self, *args, **kwargs):
        # datasets keys the cache by this script's hash only; the code that decides rows and
        # the versions of the libraries they depend on join the key (no stale rows after an
        # upgrade), and nothing else does (editing the CLI or the validator keeps the cache).
        key = f"{kwargs.get('hash')}:{generator.code_fingerprint()}"
        kwargs["hash"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        super().__init__(*args, **kwargs)
        self.config.shard_plan()  # fail on bad sizes/seed/categories before any work

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=view_features(self.config.view) or FEATURES,
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        preload()  # the num_proc workers datasets forks next inherit JAX instead of importing it
        # A split asked to hold no rows is left out (datasets cannot load an empty split).
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"tasks": tasks})
            for split, tasks in self.config.shard_plan().items()
            if tasks
        ]

    def _generate_examples(self, tasks):
        view = self.config.view
        for task in tasks:
            for i, row in enumerate(generate_shard(task)):
                if view != PAIRS:
                    row = view_row(row, view, task.seed)  # None: the pair has no such row
                if row is not None:
                    yield example_key(task, i), row
