"""Running a shard: in this process, or in a shard server when this process cannot lower.

``generate_shard`` is what the builder, the library API and the Ray runner call. The rows are
those of ``core.rows.generate_rows`` whichever process makes them; only where they are made
differs (see ``forksafe``), and multi-device programs are lowered by ``device_server``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..core.plan import ShardTask
from ..core.rows import ShardStats, clears_caches_before, generate_rows
from ..errors import GeneratorBug
from . import forksafe
from .device_server import lower_on_host_devices

logger = logging.getLogger(__name__)


# Objects already in the permanent generation when this module is imported: CPython 3.12 starts
# with a few hundred there (375 on 3.12.1; 3.11 and 3.13 start with none). Only a count above
# this means the process froze objects itself.
FROZEN_AT_IMPORT = gc.get_freeze_count()


@contextmanager
def collector_kept_off_survivors() -> Iterator[Callable[..., None]]:
    """Keep Python's cyclic collector off what outlives a row: the objects alive when a shard
    starts, and what each row leaves alive. Yields ``after_row(caches_cleared=...)``, to call
    after each row (a no-op in a process that froze objects itself).

    Tracing and lowering make many short-lived containers, so the collector runs often, and
    each full collection walks every live object: in a process that imported ``datasets``,
    13% of a row's CPU (measured). Objects alive when a shard starts (modules, caches, the
    caller's state) outlive it, so ``gc.freeze`` moves them out of the collector's way until
    the shard ends; ``_freeze_row_survivors`` does the same for each row's survivors. A process
    that froze objects itself (after importing this module) is left alone. The benchmark lowers
    its floor under this too, so that (b) and (c) pay the same collector.
    """
    if gc.get_freeze_count() > FROZEN_AT_IMPORT:
        yield lambda *, caches_cleared: None
        return
    gc.freeze()
    try:
        yield _freeze_row_survivors
    finally:
        gc.unfreeze()


def _freeze_row_survivors(*, caches_cleared: bool) -> None:
    """After a row: freeze what it left alive.

    What a row leaves alive is mostly JAX's cache entries for its program (about 10,000 objects
    a model row, measured); they stay until ``jax.clear_caches()`` drops them every
    ``CLEAR_CACHES_EVERY`` rows (``caches_cleared``: it did before this row). Left to the
    collector, every full collection walked all of them again: 29-35 ms of a model row's CPU,
    10% (a 50-row shard ends with 530,000 of them). A young collection first frees the row's
    own cyclic garbage, so nearly nothing frozen is garbage; the cache entries the next clear
    drops die by reference counting even while frozen, and the few in cycles are collected by a
    full collection (everything unfrozen first) after each row that cleared the caches. Rows
    are unchanged: the collector decides only when memory is reclaimed, never what a program
    lowers to.
    """
    if caches_cleared:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


def generate_in_process(task: ShardTask, stats: ShardStats) -> Iterator[dict[str, Any]]:
    """The shard's rows, lowered in this process (multi-device programs by the lowering server)."""
    with collector_kept_off_survivors() as after_row:
        rows = generate_rows(task, stats, lower_multi_device=lower_on_host_devices)
        for index, row in enumerate(rows):
            yield row
            after_row(caches_cleared=clears_caches_before(index))


def preload() -> None:
    """Import JAX and the lowering module, and load the tokenizer, without starting JAX (no backend, no threads).

    Call it before forking workers (the builder does, before ``datasets`` forks its ``num_proc``
    workers): they inherit the imports and the tokenizer instead of paying about a second (JAX)
    and a third of a second (the tokenizer) each per split,
    and still lower in-process, since JAX has started no threads (see ``forksafe``).
    """
    from ..core import lowering, tokens  # noqa: F401

    tokens.preload()


def generate_shard(task: ShardTask, stats: ShardStats | None = None) -> Iterator[dict[str, Any]]:
    """The rows of one shard, in order.

    In a process forked from one that had imported JAX, lowering here would hang (JAX's
    MLIR thread pool does not survive ``fork``), so the shard runs in a fresh worker
    process instead; the rows are the same either way.
    """
    stats = stats if stats is not None else ShardStats()
    forksafe.die_with_parent_if_forked()  # no orphaned worker if the build is killed
    if forksafe.lowering_unsafe_in_this_process():
        yield from forksafe.generate_in_subprocess(task, stats)
    else:
        try:
            yield from generate_in_process(task, stats)
        except GeneratorBug:
            raise
        except Exception as e:  # name the shard, so a failed build says which one and how to rerun it
            raise RuntimeError(
                f"shard {task.split}/{task.shard_index} (seed {task.seed}, categories {','.join(task.categories)}) "
                f"failed: {type(e).__name__}: {e}"
            ) from e
    logger.info("shard %s/%d: %s", task.split, task.shard_index, stats.as_dict())


def reproduce_ir(row) -> str:
    """Reproduce any row's ``stablehlo_ir`` from the row alone (its source and ``lowering``).

    ``jit``: ``jax.jit(fn).lower(*example_args()).as_text()`` in this process.
    ``jit:static_argnums=I``: ``jax.jit(fn, static_argnums=I)``, the same way.
    ``jit:host_devices=N``: in a process with N host CPU devices
    (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), which is started if needed.
    ``jit:platform=P``: lowered for platform P (``lowering_platforms=(P,)``), no hardware needed.
    """
    from ..core.lowering import lower_source, parse_lowering

    how = parse_lowering(row["lowering"])
    lower = lower_source if how.host_devices == 1 else lower_on_host_devices
    return lower(
        row["python_source"], row["function_name"], platform=how.platform, static_argnums=how.static_argnums
    ).stablehlo_ir
