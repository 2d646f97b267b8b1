"""Shard -> rows: plan shards, then sample, render, lower, deduplicate and emit rows.

Every shard is a pure function of its ``ShardTask`` (config, seed, split, shard index and
sizes), so shards can run in any process, in any order, and give the same rows.

Uniqueness without coordination: the shards of both splits partition program space. A
program belongs to the bucket given by hashes of its first statements with their operand
types (``sampler.Partition``), and each shard samples only programs of its own bucket (its
second and third statements are redrawn until they fit, long before lowering). Identical
programs have identical first statements, so a program can appear in one shard only; within
a shard a set of hashes removes repeats (by source and by normalized IR). A build has at
most ``MAX_SHARDS`` shards: larger builds get larger shards.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__
from .errors import GeneratorBug, Reject
from .ops import CATEGORIES
from .ops_devices import MESH_SHAPE
from .render import render_function, render_source
from .sampler import DEFAULT_POLICY, Partition, Policy, sample_program

logger = logging.getLogger(__name__)

MIXTURES = ("balanced", "mixed")
SPLITS = ("train", "validation")
MAX_ATTEMPTS_PER_ROW = 20_000
CLEAR_CACHES_EVERY = 100
MAX_SHARDS = 128
# A lowering takes milliseconds; one that runs this long is cut off, counted and resampled.
# The limit is far above any normal lowering so that machine speed never changes the rows.
LOWERING_TIME_LIMIT_S = 30.0


class LoweringTimeout(Exception):
    """A program's lowering ran past ``LOWERING_TIME_LIMIT_S``."""


@contextmanager
def _time_limit(seconds: float):
    """Interrupt the body with ``LoweringTimeout`` after ``seconds`` (main thread only).

    Lowering runs Python between its C++ calls, so a SIGALRM handler gets control back
    from a runaway lowering; off the main thread the limit is checked when the body
    returns. A timer set by someone else (e.g. pytest-timeout) is restored afterwards.
    """
    start = time.monotonic()
    if threading.current_thread() is not threading.main_thread():
        yield
    else:

        def on_alarm(signum, frame):
            raise LoweringTimeout(f"lowering took longer than {seconds:g} s")

        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay:
                signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-3))
    if time.monotonic() - start > seconds:
        raise LoweringTimeout(f"lowering took longer than {seconds:g} s")


@dataclass
class ShardStats:
    """Counters of one shard (or, summed, of a build)."""

    rows: int = 0
    attempts: int = 0
    other_bucket: int = 0
    sampling_rejects: int = 0
    lowering_failures: int = 0
    lowering_timeouts: int = 0
    duplicates: int = 0
    failure_examples: list[str] = field(default_factory=list)

    def add(self, other: ShardStats) -> None:
        for name in (
            "rows",
            "attempts",
            "other_bucket",
            "sampling_rejects",
            "lowering_failures",
            "lowering_timeouts",
            "duplicates",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failure_examples = (self.failure_examples + other.failure_examples)[:20]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard's rows depend on.

    Attributes:
      split: ``"train"`` or ``"validation"``.
      shard_index: index of the shard within its split.
      bucket: this shard's part of program space, in ``range(num_buckets)``.
      num_buckets: number of shards of all splits together.
      row_offset: index in the split of this shard's first row.
      num_rows: rows this shard yields.
      seed: the build's seed.
      categories: categories the build draws from.
      mixture: ``"balanced"`` (round-robin over categories) or ``"mixed"`` (drawn at random).
      policy: the sampler's weights and limits.
      with_optimized_hlo: also compile each program and record XLA's optimized HLO.
    """

    split: str
    shard_index: int
    bucket: int
    num_buckets: int
    row_offset: int
    num_rows: int
    seed: int
    categories: tuple[str, ...]
    mixture: str = "balanced"
    policy: Policy = DEFAULT_POLICY
    with_optimized_hlo: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShardTask:
        d = json.loads(text)
        p = d.pop("policy")
        policy = Policy(
            **{
                k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                for k, v in p.items()
            }
        )
        return cls(**{**d, "categories": tuple(d["categories"])}, policy=policy)

    def category_of(self, index_in_split: int) -> str:
        if self.mixture == "balanced":
            return self.categories[index_in_split % len(self.categories)]
        return random.Random(f"{self.seed}:{self.split}:mix:{index_in_split}").choice(self.categories)


def check_size(name: str, value: Any) -> int:
    """``value`` as a non-negative int, or a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_categories(categories) -> tuple[str, ...]:
    categories = tuple(categories)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories:
        raise ValueError(f"unknown categories {bad or categories!r}; valid categories: {', '.join(CATEGORIES)}")
    return categories


def plan_shards(
    *,
    train_size: int,
    validation_size: int,
    seed: int,
    categories: tuple[str, ...] = CATEGORIES,
    mixture: str = "balanced",
    rows_per_shard: int = 500,
    policy: Policy = DEFAULT_POLICY,
    with_optimized_hlo: bool = False,
) -> dict[str, list[ShardTask]]:
    """Split a build into shards; the plan depends on sizes and seed only, never on ``num_proc``."""
    sizes = {
        "train": check_size("train_size", train_size),
        "validation": check_size("validation_size", validation_size),
    }
    check_size("seed", seed)
    if not any(sizes.values()):
        raise ValueError("train_size and validation_size are both 0; at least one split needs rows")
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    if mixture not in MIXTURES:
        raise ValueError(f"unknown mixture {mixture!r}; valid mixtures: {', '.join(MIXTURES)}")
    categories = check_categories(categories)
    if not isinstance(with_optimized_hlo, bool):
        raise ValueError(f"with_optimized_hlo must be True or False, got {with_optimized_hlo!r}")
    # Each split rounds its shard count up, so leave one shard of slack per split.
    rows_per_shard = max(rows_per_shard, math.ceil(sum(sizes.values()) / (MAX_SHARDS - len(SPLITS))))
    counts = {split: math.ceil(n / rows_per_shard) for split, n in sizes.items()}
    num_buckets = max(1, sum(counts.values()))
    plan: dict[str, list[ShardTask]] = {}
    bucket = 0
    for split in SPLITS:
        tasks = []
        for i in range(counts[split]):
            start = i * rows_per_shard
            n = min(rows_per_shard, sizes[split] - start)
            tasks.append(
                ShardTask(
                    split, i, bucket, num_buckets, start, n, seed, categories, mixture, policy, with_optimized_hlo
                )
            )
            bucket += 1
        plan[split] = tasks
    return plan


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


MESH_TEXT = ",".join(f"{axis}={size}" for axis, size in MESH_SHAPE.items())


def build_row(program, source: str, pair) -> dict[str, Any]:
    """The dataset row of a lowered program (column names are documented in README.md)."""
    from .extract import JAX_VERSION, JAXLIB_VERSION, lowering_method, stablehlo_ops

    ops = stablehlo_ops(pair.stablehlo_ir)
    cost = pair.cost_analysis
    return {
        "id": hashlib.sha256(source.encode()).hexdigest()[:16],
        "category": program.category,
        "function_name": program.function_name,
        "python_source": source,
        "stablehlo_ir": pair.stablehlo_ir,
        "input_signature": [{"shape": list(s), "dtype": d} for s, d in pair.input_signature],
        "output_signature": [{"shape": list(s), "dtype": d} for s, d in pair.output_signature],
        "flops": cost.get("flops"),
        "transcendentals": cost.get("transcendentals"),
        "bytes_accessed": cost.get("bytes accessed"),
        "stablehlo_ops": sorted(ops),
        "num_stablehlo_ops": sum(ops.values()),
        "python_lines": render_function(program).count("\n"),
        "stablehlo_lines": pair.stablehlo_ir.count("\n"),
        "jax_transforms": ["jit", *dict.fromkeys(t for s in program.statements for t in s.op.transforms)],
        "lowering": lowering_method(program.host_devices),
        "mesh": MESH_TEXT if program.host_devices > 1 else None,
        "optimized_hlo": pair.optimized_hlo,
        "compiled_flops": (pair.compiled_cost_analysis or {}).get("flops"),
        "compiled_bytes_accessed": (pair.compiled_cost_analysis or {}).get("bytes accessed"),
        "generator_version": __version__,
        "jax_version": JAX_VERSION,
        "jaxlib_version": JAXLIB_VERSION,
    }


@contextmanager
def _older_objects_frozen():
    """Keep Python's cyclic collector off the objects that exist when a shard starts.

    Tracing and lowering make many short-lived containers, so the collector runs often, and
    each full collection walks every live object: in a process that imported ``datasets``,
    13% of a row's CPU (measured). Objects alive when a shard starts (modules, caches, the
    caller's state) outlive it, so ``gc.freeze`` moves them out of the collector's way until
    the shard ends. A process that froze objects itself is left alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _generate_in_process(task: ShardTask, stats: ShardStats) -> Iterator[dict[str, Any]]:
    with _older_objects_frozen():
        yield from _generate_rows(task, stats)


def _generate_rows(task: ShardTask, stats: ShardStats) -> Iterator[dict[str, Any]]:
    import jax

    from .devices import lower_on_host_devices
    from .extract import lower_source, normalize_ir

    # JAX caches traces and lowerings per (function, argument types); our programs never repeat,
    # so the caches only grow (about 150 KB a row, measured) and a worker would reach gigabytes on
    # a large build. Dropped at the start of a shard and every CLEAR_CACHES_EVERY rows, a
    # worker's memory stays flat whatever the shard size.
    jax.clear_caches()
    seen: set[bytes] = set()

    partition = Partition(task.bucket, task.num_buckets)

    for i in range(task.num_rows):
        if i and i % CLEAR_CACHES_EVERY == 0:
            jax.clear_caches()
        index = task.row_offset + i
        category = task.category_of(index)
        for attempt in range(MAX_ATTEMPTS_PER_ROW):
            stats.attempts += 1
            rng = random.Random(f"{task.seed}:{task.split}:{task.shard_index}:{i}:{attempt}")
            try:
                program = sample_program(rng, category, task.policy, partition=partition)
            except Reject as e:
                if "another shard" in str(e):
                    stats.other_bucket += 1
                else:
                    stats.sampling_rejects += 1
                continue
            source = render_source(program)
            key = _digest(render_function(program).split("\n", 1)[1])
            if key in seen:
                stats.duplicates += 1
                continue
            try:
                with _time_limit(LOWERING_TIME_LIMIT_S):
                    lower = lower_on_host_devices if program.host_devices > 1 else lower_source
                    pair = lower(source, program.function_name, optimize=task.with_optimized_hlo)
            except LoweringTimeout as e:
                stats.lowering_timeouts += 1
                if len(stats.failure_examples) < 20:
                    stats.failure_examples.append(f"{category}/{program.function_name}: {e}")
                continue
            except Exception as e:  # a program JAX refuses is resampled, never emitted
                stats.lowering_failures += 1
                if len(stats.failure_examples) < 20:
                    stats.failure_examples.append(
                        f"{category}/{program.function_name}: {type(e).__name__}: {str(e)[:200]}"
                    )
                continue
            ir_key = _digest(normalize_ir(pair.stablehlo_ir))
            if ir_key in seen:
                stats.duplicates += 1
                continue
            seen.update((key, ir_key))
            stats.rows += 1
            yield build_row(program, source, pair)
            break
        else:
            raise GeneratorBug(
                f"shard {task.split}/{task.shard_index} (seed {task.seed}) found no program for row {index} "
                f"of category {category!r} in {MAX_ATTEMPTS_PER_ROW} attempts"
            )


def preload() -> None:
    """Import JAX and the extractor in this process without starting JAX (no backend, no threads).

    Call it before forking workers (the builder does, before ``datasets`` forks its ``num_proc``
    workers): they inherit the imports instead of paying about half a second each per split,
    and still lower in-process, since JAX has started no threads (see ``_forksafe``).
    """
    from . import extract  # noqa: F401


def generate_shard(task: ShardTask, stats: ShardStats | None = None) -> Iterator[dict[str, Any]]:
    """The rows of one shard, in order.

    In a process forked from one that had imported JAX, lowering here would hang (JAX's
    MLIR thread pool does not survive ``fork``), so the shard runs in a fresh worker
    process instead; the rows are the same either way.
    """
    from . import _forksafe

    stats = stats if stats is not None else ShardStats()
    _forksafe.die_with_parent_if_forked()  # no orphaned worker if the build is killed
    if _forksafe.lowering_unsafe_in_this_process():
        yield from _forksafe.generate_in_subprocess(task, stats)
    else:
        try:
            yield from _generate_in_process(task, stats)
        except GeneratorBug:
            raise
        except Exception as e:  # name the shard, so a failed build says which one and how to rerun it
            raise RuntimeError(
                f"shard {task.split}/{task.shard_index} (seed {task.seed}, categories {','.join(task.categories)}) "
                f"failed: {type(e).__name__}: {e}"
            ) from e
    logger.info("shard %s/%d: %s", task.split, task.shard_index, stats.as_dict())


def example_key(task: ShardTask, index_in_shard: int) -> str:
    return f"{task.split}-{task.shard_index:05d}-{index_in_shard:06d}"
