"""Fork safety: run shards in a fresh process when this one was forked after JAX started.

JAX gives its MLIR contexts one global thread pool, and its XLA backend runs thread pools of
its own. A child *forked* from a process whose pools had started threads hangs forever in
lowering, because ``fork`` copies a pool's state but not its threads. ``datasets`` forks its
``num_proc`` workers, so a user who lowered anything before ``load_dataset(...,
num_proc=2)`` would hang.

Importing JAX starts no threads; initializing a backend (any lowering does) or running MLIR
passes does. So at each fork we record whether JAX had started: its backends are
initialized, or (on Linux, from ``/proc/self/task``) an LLVM or XLA worker thread exists.
Where threads cannot be listed, an imported JAX counts as started. A worker forked after
JAX started streams its shards from a fresh interpreter (``python -m
generator.runtime.shard_server``), started once per worker process and reused for all its shards.
A worker forked before that, even one that inherited an imported JAX (``shards.preload``),
lowers in-process, at full speed.

A forked worker or shard server that runs a shard also asks the kernel to kill it when its
parent dies (``die_with_parent``), so a killed build leaves no worker generating for nobody.

Protocol over the pipe: one ``ShardTask`` JSON per line in; per task, JSON lines
``{"row": ...}`` then ``{"done": stats}`` or ``{"error": message}`` out.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .child import Child, child_env

if TYPE_CHECKING:
    from ..core.plan import ShardTask
    from ..core.rows import ShardStats

_state = {"forked": False, "jax_started_before_fork": False}

# Thread names of JAX's native pools: MLIR's (LLVM) thread pool and XLA's CPU client.
_JAX_THREAD_NAMES = ("llvm-worker", "tf_")


def jax_started() -> bool:
    """True if JAX has started native threads in this process (forking it is unsafe)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return True
        tasks = os.listdir("/proc/self/task")
    except (ImportError, AttributeError, OSError):  # cannot tell: assume the worst
        return True
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().startswith(_JAX_THREAD_NAMES):
                    return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


def _before_fork() -> None:
    _state["jax_started_before_fork"] = _state["jax_started_before_fork"] or jax_started()
    _state["parent_pid"] = os.getpid()


def _after_fork_in_child() -> None:
    _state["forked"] = True
    _state["dies_with_parent"] = False


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere a no-op).

    A worker whose parent was killed would otherwise go on generating rows that nobody
    collects. Called once per process by shard workers (``datasets``' forked workers and the
    shard server); exits at once if the parent is already gone.
    """
    if _state.get("dies_with_parent") or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    _state["dies_with_parent"] = True
    if parent_pid is not None and os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)


def die_with_parent_if_forked() -> None:
    """``die_with_parent`` in a forked worker (never in the process the user started)."""
    if _state["forked"]:
        die_with_parent(_state.get("parent_pid"))


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)

_worker: Child | None = None
_worker_lock = threading.Lock()


def lowering_unsafe_in_this_process() -> bool:
    """True in a child forked (at any depth) from a process in which JAX had started."""
    return _state["forked"] and _state["jax_started_before_fork"]


def _start_worker() -> Child:
    return Child("generator.runtime.shard_server", {**child_env(), "JSP_PARENT_PID": str(os.getpid())})


def generate_in_subprocess(task: ShardTask, stats: ShardStats) -> Iterator[dict[str, Any]]:
    """Stream one shard's rows from the worker process (started on first use)."""
    from ..core.rows import ShardStats

    global _worker
    with _worker_lock:
        if _worker is None or not _worker.alive:
            _worker = _start_worker()
        worker = _worker
    worker.send(task.to_dict())
    while (msg := worker.receive()) is not None:
        if "row" in msg:
            yield msg["row"]
        elif "done" in msg:
            stats.add(ShardStats(**msg["done"]))
            return
        else:
            raise RuntimeError(
                f"shard {task.split}/{task.shard_index} (seed {task.seed}) failed in the worker: {msg['error']}"
            )
    raise RuntimeError(f"the worker process for shard {task.split}/{task.shard_index} (seed {task.seed}) exited early")
