"""Lowering programs that need a mesh of host CPU devices (the multi_device category).

XLA fixes the number of host CPU devices when JAX first starts its backend
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``), so a process with one device
cannot lower a program over an 8-device mesh. Such programs go to a lowering server
(``python -m generator.runtime.device_server``): one fresh interpreter per process, started
with the flag, reused for every program.

A build with workers shares servers among them (``shared_with_forked_workers``, one per worker):
they start before the workers are forked, importing JAX while the builder does its own
start-up, and each forked worker sends its requests to a free one, under that server's lock,
instead of paying about two seconds of CPU to start a server of its own. With one server for
two workers, a worker that asked while the other's program was lowering sat idle (``models``
draws about a fifth of its rows sharded).

Requests are ``{"source", "function_name", "optimize", "platform", "static_argnums"}`` (the last
``None`` for a new program: ``extract_ir``'s rule decides); the answer is ``{"pair": {...}}`` or
``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..core.ops.multi_device import HOST_DEVICES
from .child import Child, child_env, serve

if TYPE_CHECKING:
    from ..core.lowering import IRPair

_server: Child | None = None  # this process's own server (started on first use), or the last shared one used
_lock = threading.Lock()  # this process's threads, one request at a time
_shared: list[tuple[Child, Any]] = []  # the servers shared with forked workers, each with its lock


class RemoteLoweringError(RuntimeError):
    """The lowering server could not lower a program (its message says why)."""


def _start_server() -> Child:
    env = child_env(host_devices=HOST_DEVICES)
    env["JAX_PLATFORMS"] = "cpu"
    return Child("generator.runtime.device_server", env)


def _pair_from_json(d: dict[str, Any]) -> IRPair:
    from ..core.lowering import IRPair

    sig = lambda s: tuple((tuple(shape), dtype) for shape, dtype in s)  # noqa: E731
    return IRPair(
        **{
            **d,
            "input_signature": sig(d["input_signature"]),
            "output_signature": sig(d["output_signature"]),
            "static_argnums": tuple(d.get("static_argnums") or ()),
        }
    )


def lower_on_host_devices(
    source: str,
    function_name: str,
    *,
    optimize: bool = False,
    platform: str = "cpu",
    static_argnums: Sequence[int] | None = None,
) -> IRPair:
    """``lower_source`` in a process with ``HOST_DEVICES`` CPU devices (this one, if it has them)."""
    import jax

    from ..core.lowering import lower_source

    if jax.device_count() >= HOST_DEVICES:
        return lower_source(source, function_name, optimize=optimize, platform=platform, static_argnums=static_argnums)
    global _server
    request = {
        "source": source,
        "function_name": function_name,
        "optimize": optimize,
        "platform": platform,
        "static_argnums": None if static_argnums is None else list(static_argnums),
    }
    with _lock, _claim_shared_server() as shared:
        if shared is not None and shared.alive:
            _server = shared
        elif _server is None or not _server.alive or any(_server is server for server, _ in _shared):
            _server = _start_server()  # this process's own (a shared one that died is not reused unlocked)
        _server.send(request)
        msg = _server.receive()
    if msg is None:
        raise RemoteLoweringError("the multi-device lowering server exited")
    if "error" in msg:
        raise RemoteLoweringError(msg["error"])
    return _pair_from_json(msg["pair"])


@contextlib.contextmanager
def _claim_shared_server() -> Iterator[Child | None]:
    """A shared server no other worker is using, held for the block (None: none are shared).

    A worker first tries the server its pid points at, then the others, and waits for its own
    only when every one is busy; with a server per worker, none waits while another lowers."""
    if not _shared:
        yield None
        return
    start = os.getpid() % len(_shared)
    order = _shared[start:] + _shared[:start]
    claimed = next(((server, lock) for server, lock in order if lock.acquire(block=False)), None)
    if claimed is None:
        order[0][1].acquire()
        claimed = order[0]
    server, lock = claimed
    try:
        yield server
    finally:
        lock.release()


@contextlib.contextmanager
def shared_with_forked_workers(needed: bool = True, servers: int = 1) -> Iterator[None]:
    """While in the block, this process and every worker forked from it lower multi-device
    programs on ``servers`` lowering servers (the builder: one per worker), started here (only
    if ``needed``: the build may draw such programs) and stopped at the end.

    The servers start at once, in the background (``Child`` does not wait for them), so their
    start-up overlaps whatever this process does next. A worker started by ``spawn`` instead
    of ``fork`` inherits nothing and starts its own server on first use, as before.
    """
    global _server
    if not isinstance(servers, int) or isinstance(servers, bool) or servers < 1:
        raise ValueError(f"servers must be a positive integer, got {servers!r}")
    if not needed or _shared:  # not needed, or already shared by an enclosing block
        yield
        return
    fork = multiprocessing.get_context("fork")
    with _lock:
        own = _server if _server is not None and _server.alive else None
        started = ([own] if own else []) + [_start_server() for _ in range(servers - (1 if own else 0))]
        _shared[:] = [(server, fork.Lock()) for server in started]
    try:
        yield
    finally:
        with _lock:
            _shared.clear()
            if _server in started:
                _server = None
        for server in started:
            server.close()


def answer(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from ..core.lowering import lower_source

    try:
        pair = lower_source(
            request["source"],
            request["function_name"],
            optimize=request["optimize"],
            platform=request.get("platform", "cpu"),
            static_argnums=request.get("static_argnums"),
        )
        yield {"pair": asdict(pair)}
    except Exception as e:  # reported to the client, which counts the program as a failure
        yield {"error": f"{type(e).__name__}: {str(e)[:2000]}"}


if __name__ == "__main__":
    serve(answer)
