"""Running a shard: in this process, or in a shard server when this process cannot lower.

``generate_shard`` is what the builder, the library API and the Ray runner call. The rows are
those of ``core.rows.generate_rows`` whichever process makes them; only where they are made
differs (see ``forksafe``), and multi-device programs are lowered by ``device_server``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core.plan import ShardTask
from ..core.rows import ShardStats, generate_rows
from ..errors import GeneratorBug
from . import forksafe
from .device_server import lower_on_host_devices

logger = logging.getLogger(__name__)


# Objects already in the permanent generation when this module is imported: CPython 3.12 starts
# with a few hundred there (375 on 3.12.1; 3.11 and 3.13 start with none). Only a count above
# this means the process froze objects itself.
FROZEN_AT_IMPORT = gc.get_freeze_count()


@contextmanager
def _older_objects_frozen():
    """Keep Python's cyclic collector off the objects that exist when a shard starts.

    Tracing and lowering make many short-lived containers, so the collector runs often, and
    each full collection walks every live object: in a process that imported ``datasets``,
    13% of a row's CPU (measured). Objects alive when a shard starts (modules, caches, the
    caller's state) outlive it, so ``gc.freeze`` moves them out of the collector's way until
    the shard ends. A process that froze objects itself (after importing this module) is left alone.
    """
    if gc.get_freeze_count() > FROZEN_AT_IMPORT:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def generate_in_process(task: ShardTask, stats: ShardStats) -> Iterator[dict[str, Any]]:
    """The shard's rows, lowered in this process (multi-device programs by the lowering server)."""
    with _older_objects_frozen():
        yield from generate_rows(task, stats, lower_multi_device=lower_on_host_devices)


def preload() -> None:
    """Import JAX and the lowering module, and load the tokenizer, without starting JAX (no backend, no threads).

    Call it before forking workers (the builder does, before ``datasets`` forks its ``num_proc``
    workers): they inherit the imports and the tokenizer instead of paying about half a second
    (JAX) and a second and a half (the tokenizer) each per split,
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

    ``jit``: ``jax.jit(fn, static_argnums=...).lower(*example_args()).as_text()`` in this process.
    ``jit:host_devices=N``: the same, in a process with N host CPU devices
    (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), which is started if needed.
    """
    from ..core.lowering import host_devices, lower_source

    lower = lower_source if host_devices(row["lowering"]) == 1 else lower_on_host_devices
    return lower(row["python_source"], row["function_name"]).stablehlo_ir
