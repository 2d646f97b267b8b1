"""Shards shared out among a build's workers as they go, with every worker's rows in their order.

``datasets`` runs a split as ``num_proc`` jobs, each with a fixed, contiguous run of the split's
shards, one split after another. Shards differ in cost (a model row costs a hundred op-table
rows, and model rows differ a hundredfold), so a worker that ends its run first waits for the
other, at the end of every split, and a new pool starts for the next. ``SharedShards`` keeps both
busy without changing a row or its place: a job still yields its own shards' rows, in order,
but a worker with nothing of its own to do makes a shard nobody has claimed yet (another job's
last one, or a later split's) and leaves its rows in a shared directory, where the job that
owns that shard picks them up. Claims are files created exclusively, rows are written to a
temporary file and renamed, so a shard is made once and read only when whole. The order in
which unclaimed shards are taken is largest first (the train split's before the small ones),
each job's shards from its end (its owner works from the start): what is left when the build
ends is small.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.plan import ShardTask

POLL_SECONDS = 0.05


def _name(task: ShardTask) -> str:
    return f"{task.split}-{task.shard_index}"


@dataclass(frozen=True)
class SharedShards:
    """The shards of one build (``plan``: every split's, in plan order) and the directory its
    workers share them through. Picklable: ``datasets`` hands a copy to every job."""

    directory: str
    plan: tuple[ShardTask, ...]

    @property
    def _order(self) -> tuple[ShardTask, ...]:
        """The order in which a worker takes unclaimed shards: largest first, then later ones first."""
        ranked = sorted(enumerate(self.plan), key=lambda item: (-item[1].num_rows, -item[0]))
        return tuple(task for _, task in ranked)

    def _path(self, task: ShardTask, suffix: str) -> Path:
        return Path(self.directory) / f"{_name(task)}.{suffix}"

    def _claim(self, task: ShardTask) -> bool:
        try:
            os.close(os.open(self._path(task, "claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def _store(self, task: ShardTask, make: Callable[[ShardTask], Iterator[dict[str, Any]]]) -> None:
        """Make a claimed shard and leave its rows for its owner (or why it failed)."""
        try:
            rows = list(make(task))
        except BaseException as e:
            self._path(task, "failed").write_text(f"{type(e).__name__}: {e}")
            raise
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{_name(task)}-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(rows, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self._path(task, "rows"))

    def _take(self, task: ShardTask) -> list[dict[str, Any]] | None:
        """The stored rows of ``task`` (and remove them), ``None`` if they are not there yet."""
        path = self._path(task, "rows")
        try:
            with path.open("rb") as f:
                rows = pickle.load(f)
        except FileNotFoundError:
            failed = self._path(task, "failed")
            if failed.exists():
                why = failed.read_text()
                raise RuntimeError(f"shard {task.split}/{task.shard_index} failed in another worker: {why}") from None
            return None
        path.unlink()
        return rows

    def _help(self, make: Callable[[ShardTask], Iterator[dict[str, Any]]]) -> bool:
        """Make the first unclaimed shard of the build, if any is left; ``False`` if none is."""
        for task in self._order:
            if self._claim(task):
                self._store(task, make)
                return True
        return False

    def rows(
        self, own: Sequence[ShardTask], make: Callable[[ShardTask], Iterator[dict[str, Any]]]
    ) -> Iterator[tuple[ShardTask, int, dict[str, Any]]]:
        """``(task, index in shard, row)`` for this job's shards ``own``, in order; ``make(task)``
        makes a shard's rows (``generate_shard``).

        A shard this job claims first is made here and streamed; one another worker claimed is
        read once that worker has stored it, and this job makes unclaimed shards meanwhile. When
        its own are done, a job that shares its split with others makes unclaimed shards while
        any are left (a job alone in its split has nobody to help until the next split).
        """
        for task in own:
            if self._claim(task):
                for index, row in enumerate(make(task)):
                    yield task, index, row
                continue
            while (rows := self._take(task)) is None:
                if not self._help(make):
                    time.sleep(POLL_SECONDS)
            for index, row in enumerate(rows):
                yield task, index, row
        split = [t for t in self.plan if own and t.split == own[0].split]
        if len(own) < len(split):
            while self._help(make):
                pass


@contextlib.contextmanager
def shared_directory() -> Iterator[str]:
    """A fresh directory for one build's shared shards, removed (with anything left in it) at the end."""
    directory = tempfile.mkdtemp(prefix="jax-stablehlo-pairs-shards-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
