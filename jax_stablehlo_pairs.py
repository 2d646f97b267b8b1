"""jax-stablehlo-pairs: JAX programs paired with the StableHLO they lower to.

A thin builder: configs choose a sampling policy; all generation lives in the
``generator`` package (install the project, e.g. ``make install``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import datasets

import generator
from generator.core.categories import CATEGORIES, MODEL_CATEGORIES, may_need_host_devices
from generator.core.config import BuildOptions
from generator.core.plan import example_key
from generator.core.schema import CITATION, DESCRIPTION, FEATURES, HOMEPAGE, LICENSE
from generator.core.views import PAIRS, view_row
from generator.core.views import features as view_features
from generator.runtime.device_server import shared_with_forked_workers
from generator.runtime.shards import generate_shard, preload
from generator.runtime.sharing import SharedShards, shared_directory

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
    "(test_size, default validation_size) in every config; shards sized so num_proc workers get equal work; a platform field (cpu, cuda, rocm, tpu).",
    "3.1.0": "every model category composed from blocks (typed specs, a grammar, one emitter for plain JAX, Flax NNX "
    "and Equinox; decoding and train_step as tasks over composed models), about a fifth of model rows sharded on a "
    "mesh of 8 devices; typed PRNG keys; "
    "static argument indices in the lowering column; no degenerate steps or folding merges in op-table programs; "
    "several platforms side by side when staging.",
}


@dataclass
class PairsConfig(BuildOptions, datasets.BuilderConfig):
    """A builder config: a name, a description and the build's fields (``generator.core.config.BuildOptions``:
    categories, mixture, train/validation/test sizes, seed, shards, program size, optimized HLO, view,
    max_tokens), whose ``shard_plan()`` raises ``ValueError`` naming any bad value."""

    version: datasets.Version = field(default_factory=lambda: VERSION)


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

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        # The num_proc workers of every split share their shards out through this directory, and
        # multi-device lowering servers (one per worker), which start now, beside this process's
        # own start-up.
        needs_devices = may_need_host_devices(self.config.categories)
        servers = prepare_split_kwargs.get("num_proc") or 1
        with shared_directory() as directory, shared_with_forked_workers(needed=needs_devices, servers=servers):
            self._shared_directory = directory
            try:
                super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            finally:
                self._shared_directory = None

    def _split_generators(self, dl_manager):
        preload()  # the num_proc workers datasets forks next inherit JAX instead of importing it
        plan = self.config.shard_plan()
        directory = getattr(self, "_shared_directory", None)  # none when streaming: shards run in order
        shared = SharedShards(directory, tuple(t for tasks in plan.values() for t in tasks)) if directory else None
        # A split asked to hold no rows is left out (datasets cannot load an empty split).
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"tasks": tasks, "shared": shared})
            for split, tasks in plan.items()
            if tasks
        ]

    def _generate_examples(self, tasks, shared=None):
        view = self.config.view
        if shared is None:
            rows = ((task, i, row) for task in tasks for i, row in enumerate(generate_shard(task)))
        else:  # a worker with nothing of its own left makes other workers' shards (same rows, same order)
            rows = shared.rows(tasks, generate_shard)
        for task, i, row in rows:
            if view != PAIRS:
                row = view_row(row, view, task.seed)  # None: the pair has no such row
            if row is not None:
                yield example_key(task, i), row
