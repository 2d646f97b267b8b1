"""Lowering programs that need a mesh of host CPU devices (the multi_device category).

XLA fixes the number of host CPU devices when JAX first starts its backend
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``), so a process with one device
cannot lower a program over an 8-device mesh. Such programs go to a lowering server: one
fresh interpreter per process, started with the flag, reused for every program.

Protocol: one JSON request per line in (``source``, ``function_name``, ``optimize``); one
JSON line out: ``{"pair": {...}}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict

from ._child import child_env, start_child
from .ops_devices import HOST_DEVICES

_server: subprocess.Popen | None = None
_lock = threading.Lock()


class RemoteLoweringError(RuntimeError):
    """The lowering server could not lower a program (its message says why)."""


def _start_server() -> subprocess.Popen:
    env = child_env(host_devices=HOST_DEVICES)
    env["JAX_PLATFORMS"] = "cpu"
    return start_child("generator.devices", env)


def _pair_from_json(d: dict):
    from .extract import IRPair

    sig = lambda s: tuple((tuple(shape), dtype) for shape, dtype in s)  # noqa: E731
    return IRPair(**{**d, "input_signature": sig(d["input_signature"]), "output_signature": sig(d["output_signature"])})


def lower_on_host_devices(source: str, function_name: str, *, optimize: bool = False):
    """``lower_source`` in a process with ``HOST_DEVICES`` CPU devices (this one, if it has them)."""
    import jax

    from .extract import lower_source

    if jax.device_count() >= HOST_DEVICES:
        return lower_source(source, function_name, optimize=optimize)
    global _server
    with _lock:
        if _server is None or _server.poll() is not None:
            _server = _start_server()
        _server.stdin.write(json.dumps({"source": source, "function_name": function_name, "optimize": optimize}) + "\n")
        _server.stdin.flush()
        line = _server.stdout.readline()
    if not line:
        raise RemoteLoweringError("the multi-device lowering server exited")
    msg = json.loads(line)
    if "error" in msg:
        raise RemoteLoweringError(msg["error"])
    return _pair_from_json(msg["pair"])


def _serve() -> None:
    from .extract import lower_source

    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines may reach the pipe
    for line in sys.stdin:
        req = json.loads(line)
        try:
            pair = lower_source(req["source"], req["function_name"], optimize=req["optimize"])
            out.write(json.dumps({"pair": asdict(pair)}) + "\n")
        except Exception as e:  # reported to the client, which counts the program as a failure
            out.write(json.dumps({"error": f"{type(e).__name__}: {str(e)[:2000]}"}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
