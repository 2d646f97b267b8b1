"""Shard -> rows: sample, render, lower, deduplicate and emit the rows of one shard.

Splits by structure: a program's split follows from its structure (``core.structure``), so a
shard keeps only programs whose structure is in its split, and no structure is in two splits.

Uniqueness without coordination: the shards of a split partition its program space. A
program belongs to the bucket given by hashes of its first statements with their operand
types (``sampler.Partition``; a model program: a hash of its spec), and each shard samples
only programs of its own bucket (its second and third statements are redrawn until they fit,
long before lowering). Identical programs have identical structures and first statements, so
a program can appear in one shard only; within a shard a set of hashes removes repeats (by
source and by normalized IR).

This module decides rows and runs in whatever process calls it; which process that is
(this one, a shard server, a lowering server for multi-device programs) is ``runtime``'s
concern, passed in as ``lower_multi_device``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BudgetTooSmall, GeneratorBug, OtherShard, Reject
from ..version import __version__
from .irtext import largest_constant, normalize_ir, stablehlo_ops
from .models import MODEL_CATEGORIES, MODEL_LIBRARIES, ModelProgram, sample_model
from .ops.multi_device import MESH_SHAPE
from .plan import ShardTask
from .program import Program
from .render import render_function, render_source
from .sampler import Partition, sample_program
from .structure import program_structure, split_of, structure_key
from .tokens import count_tokens
from .views import fits

logger = logging.getLogger(__name__)

MAX_ATTEMPTS_PER_ROW = 20_000
CLEAR_CACHES_EVERY = 100
# A lowering takes milliseconds; one that runs this long is cut off, counted and resampled.
# The limit is far above any normal lowering so that machine speed never changes the rows.
LOWERING_TIME_LIMIT_S = 30.0
# No row embeds a large table: a lowering with a longer dense<...> literal is resampled
# (real code builds its tables inside the function; a closed-over NumPy array is a constant).
MAX_CONSTANT_CHARS = 16 * 1024
# A row whose views would not fit a build's ``max_tokens`` is resampled; a budget that this
# many programs of a category in a row miss is too small for the category, and says so.
MAX_OVER_BUDGET_PER_ROW = 200


class LoweringTimeout(Exception):
    """A program's lowering ran past ``LOWERING_TIME_LIMIT_S``."""


@contextmanager
def time_limit(seconds: float):
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
    other_split: int = 0
    sampling_rejects: int = 0
    lowering_failures: int = 0
    lowering_timeouts: int = 0
    large_constants: int = 0
    over_budget: int = 0
    duplicates: int = 0
    failure_examples: list[str] = field(default_factory=list)

    def add(self, other: ShardStats) -> None:
        for name in (
            "rows",
            "attempts",
            "other_bucket",
            "other_split",
            "sampling_rejects",
            "lowering_failures",
            "lowering_timeouts",
            "large_constants",
            "over_budget",
            "duplicates",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failure_examples = (self.failure_examples + other.failure_examples)[:20]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


MESH_TEXT = ",".join(f"{axis}={size}" for axis, size in MESH_SHAPE.items())


@dataclass(frozen=True)
class Drawn:
    """A sampled program of either kind, ready to lower: what a row needs besides the IR.

    Attributes:
      category, function_name, source: the row's columns of those names.
      key: text identifying the program for deduplication (the function without its name
        for op-table programs, the source for model programs).
      host_devices: devices the lowering needs.
      transforms: JAX transforms applied inside ``jit``, in order of first use.
      python_lines: the ``python_lines`` column.
      style: the ``style`` column.
      libraries: the model libraries the source imports (``MODEL_LIBRARIES``).
      structure: the ``structure`` key, which decides the program's split (``core.structure``).
    """

    category: str
    function_name: str
    source: str
    key: str
    host_devices: int = 1
    transforms: tuple[str, ...] = ()
    python_lines: int = 0
    style: str = "jax"
    libraries: tuple[str, ...] = ()
    structure: str = ""
    mesh: str | None = None

    @classmethod
    def of_program(cls, program: Program, structure: str) -> Drawn:
        function = render_function(program)
        return cls(
            category=program.category,
            function_name=program.function_name,
            source=render_source(program),
            key=function.split("\n", 1)[1],
            host_devices=program.host_devices,
            mesh=MESH_TEXT if program.host_devices > 1 else None,
            transforms=tuple(dict.fromkeys(t for s in program.statements for t in s.op.transforms)),
            python_lines=function.count("\n"),
            structure=structure,
        )

    @classmethod
    def of_model(cls, program: ModelProgram) -> Drawn:
        return cls(
            category=program.category,
            function_name=program.function_name,
            source=program.source,
            key=program.source,
            transforms=program.transforms,
            python_lines=program.python_lines,
            style=program.style,
            libraries=program.libraries,
            structure=program.structure,
            host_devices=program.host_devices,
            mesh=program.mesh,
        )


class OtherSplit(Reject):
    """A sampled program's structure belongs to another split; the caller resamples."""


def draw(rng: random.Random, category: str, task: ShardTask, partition: Partition) -> Drawn:
    """One program of ``category`` in ``task``'s split and part of program space
    (``OtherShard``/``OtherSplit``/``Reject``: draw again)."""
    if category in MODEL_CATEGORIES:
        model = sample_model(rng, category, split=task.split, bucket=task.bucket, num_buckets=task.num_buckets)
        return Drawn.of_model(model)
    program = sample_program(rng, category, task.policy, partition=partition)
    structure = structure_key(program_structure(program))
    if split_of(structure) != task.split:
        raise OtherSplit(f"structure {structure} is in {split_of(structure)}")
    return Drawn.of_program(program, structure)


@functools.cache
def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in MODEL_LIBRARIES}


def build_row(drawn: Drawn, pair, platform: str = "cpu") -> dict[str, Any]:
    """The dataset row of a lowered program (column names are documented in docs/configs.md)."""
    from .lowering import JAX_VERSION, JAXLIB_VERSION, lowering_method

    ops = stablehlo_ops(pair.stablehlo_ir)
    cost = pair.cost_analysis
    versions = _library_versions()
    return {
        "id": hashlib.sha256(drawn.source.encode()).hexdigest()[:16],
        "category": drawn.category,
        "structure": drawn.structure,
        "function_name": drawn.function_name,
        "python_source": drawn.source,
        "stablehlo_ir": pair.stablehlo_ir,
        "input_signature": [{"shape": list(s), "dtype": d} for s, d in pair.input_signature],
        "output_signature": [{"shape": list(s), "dtype": d} for s, d in pair.output_signature],
        "flops": cost.get("flops"),
        "transcendentals": cost.get("transcendentals"),
        "bytes_accessed": cost.get("bytes accessed"),
        "stablehlo_ops": sorted(ops),
        "num_stablehlo_ops": sum(ops.values()),
        "python_lines": drawn.python_lines,
        "stablehlo_lines": pair.stablehlo_ir.count("\n"),
        "python_tokens": count_tokens(drawn.source),
        "stablehlo_tokens": count_tokens(pair.stablehlo_ir),
        "optimized_hlo_tokens": None if pair.optimized_hlo is None else count_tokens(pair.optimized_hlo),
        "jax_transforms": ["jit", *drawn.transforms],
        "lowering": lowering_method(drawn.host_devices, platform, pair.static_argnums),
        "mesh": drawn.mesh,
        "optimized_hlo": pair.optimized_hlo,
        "compiled_flops": (pair.compiled_cost_analysis or {}).get("flops"),
        "compiled_bytes_accessed": (pair.compiled_cost_analysis or {}).get("bytes accessed"),
        "style": drawn.style,
        "generator_version": __version__,
        "jax_version": JAX_VERSION,
        "jaxlib_version": JAXLIB_VERSION,
        **{f"{name}_version": versions[name] if name in drawn.libraries else None for name in MODEL_LIBRARIES},
    }


def clears_caches_before(i: int) -> bool:
    """Whether ``generate_rows`` drops JAX's caches between rows ``i - 1`` and ``i`` of a shard
    (besides at the shard's start)."""
    return i > 0 and i % CLEAR_CACHES_EVERY == 0


def generate_rows(
    task: ShardTask, stats: ShardStats, *, lower_multi_device: Callable[..., Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of one shard, in order, lowered in this process.

    Args:
      task: the shard.
      stats: counters updated as rows are made and programs resampled.
      lower_multi_device: lowers a program that needs a mesh of host devices (same signature
        as ``lowering.lower_source``, ``platform`` included); ``runtime`` passes one that uses a lowering server.
        Without it, such programs are lowered here, which needs the devices in this process.
    """
    import jax

    from .lowering import lower_source

    lower_multi_device = lower_multi_device or lower_source

    # JAX caches traces and lowerings per (function, argument types); our programs never repeat,
    # so the caches only grow (about 150 KB a row, measured) and a worker would reach gigabytes on
    # a large build. Dropped at the start of a shard and every CLEAR_CACHES_EVERY rows, a
    # worker's memory stays flat whatever the shard size.
    jax.clear_caches()
    seen: set[bytes] = set()

    partition = Partition(task.bucket, task.num_buckets)

    for i in range(task.num_rows):
        if clears_caches_before(i):
            jax.clear_caches()
        index = task.row_offset + i * task.row_stride
        category = task.category_of(index)
        over_budget: list[int] = []  # tokens of this row's programs that missed the budget
        for attempt in range(MAX_ATTEMPTS_PER_ROW):
            stats.attempts += 1
            rng = random.Random(f"{task.seed}:{task.split}:{task.shard_index}:{i}:{attempt}")
            try:
                drawn = draw(rng, category, task, partition)
            except OtherShard:
                stats.other_bucket += 1
                continue
            except OtherSplit:
                stats.other_split += 1
                continue
            except Reject:
                stats.sampling_rejects += 1
                continue
            key = _digest(drawn.key)
            if key in seen:
                stats.duplicates += 1
                continue
            try:
                with time_limit(LOWERING_TIME_LIMIT_S):
                    lower = lower_multi_device if drawn.host_devices > 1 else lower_source
                    pair = lower(
                        drawn.source, drawn.function_name, optimize=task.with_optimized_hlo, platform=task.platform
                    )
            except LoweringTimeout as e:
                stats.lowering_timeouts += 1
                if len(stats.failure_examples) < 20:
                    stats.failure_examples.append(f"{category}/{drawn.function_name}: {e}")
                continue
            except Exception as e:  # a program JAX refuses is resampled, never emitted
                stats.lowering_failures += 1
                if len(stats.failure_examples) < 20:
                    stats.failure_examples.append(
                        f"{category}/{drawn.function_name}: {type(e).__name__}: {str(e)[:200]}"
                    )
                continue
            if largest_constant(pair.stablehlo_ir) > MAX_CONSTANT_CHARS:
                stats.large_constants += 1
                continue
            ir_key = _digest(normalize_ir(pair.stablehlo_ir))
            if ir_key in seen:
                stats.duplicates += 1
                continue
            row = build_row(drawn, pair, task.platform)
            if not fits(row, task.seed, task.max_tokens):
                stats.over_budget += 1
                over_budget.append(row["python_tokens"] + row["stablehlo_tokens"])
                if len(over_budget) >= MAX_OVER_BUDGET_PER_ROW:
                    raise BudgetTooSmall(
                        f"max_tokens={task.max_tokens} is too small for {category!r}: {len(over_budget)} programs in a "
                        f"row missed it (the smallest pair had {min(over_budget)} tokens before its instruction); "
                        "raise max_tokens or leave the category out"
                    )
                continue
            seen.update((key, ir_key))
            stats.rows += 1
            yield row
            break
        else:
            raise GeneratorBug(
                f"shard {task.split}/{task.shard_index} (seed {task.seed}) found no program for row {index} "
                f"of category {category!r} in {MAX_ATTEMPTS_PER_ROW} attempts"
            )
