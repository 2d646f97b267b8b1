"""The one protocol of the generator's helper interpreters (shard server, device server, row runner).

A child is ``python -m <module>`` talking JSON lines: one request per line on its stdin, one
or more answer lines per request on its stdout. ``serve`` is the child's side, ``Child`` the
parent's. Only protocol lines may reach the pipe, so the child's file descriptor 1 is pointed
at stderr before anything runs (``print`` from a row and writes made in C alike), and the
protocol keeps a private duplicate of the original descriptor.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def child_env(*, host_devices: int = 1) -> dict[str, str]:
    """This process's environment, with the generator importable and ``host_devices`` CPU devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    if host_devices > 1:
        flag = f"--xla_force_host_platform_device_count={host_devices}"
        env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS"), flag) if f)
    return env


class Child:
    """The parent's end of a child interpreter: send a request, read its answers.

    Example:
      >>> child = Child("generator.runtime.device_server", child_env(host_devices=8))
      >>> child.send({"source": ..., "function_name": "f", "optimize": False})
      >>> child.receive()
      {'pair': {...}}
    """

    def __init__(self, module: str, env: dict[str, str], *, stderr: IO[str] | None = None):
        self.module = module
        self.parent_pid = os.getpid()  # a process forked from the parent shares the child but cannot wait for it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
            bufsize=1,
        )

    @property
    def alive(self) -> bool:
        if os.getpid() != self.parent_pid:
            return _running(self.proc.pid)
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def send(self, message: Any) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next answer; ``None`` if the child exited. ``TimeoutError`` after ``timeout`` seconds."""
        if timeout is not None:
            with selectors.DefaultSelector() as sel:
                sel.register(self.proc.stdout, selectors.EVENT_READ)
                if not sel.select(timeout):
                    raise TimeoutError(f"{self.module} sent nothing for {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            if os.getpid() == self.parent_pid:
                self.proc.wait(timeout=30)
            return None
        return json.loads(line)

    def close(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (not exited, not a zombie), seen from a process that is not its parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: whether the pid exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def serve(
    handle: Callable[[dict[str, Any]], Iterable[dict[str, Any]]],
    *,
    setup: Callable[[], None] | None = None,
    ready: bool = False,
) -> None:
    """The child's main loop: answer each request line on stdin with the lines ``handle`` yields.

    Args:
      handle: maps one request to its answers (each one JSON line, flushed as it is made).
      setup: run once, under the stdout guard, before the first request (e.g. importing JAX).
      ready: after ``setup``, send ``{"ready": true}``, so the parent can time its requests
        apart from start-up.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever runs here prints to stderr, never into the protocol
    sys.stdout = sys.stderr
    if setup is not None:
        setup()
    if ready:
        proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        for answer in handle(json.loads(line)):
            proto.write(json.dumps(answer) + "\n")
            proto.flush()
