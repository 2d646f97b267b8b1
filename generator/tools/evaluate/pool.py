"""The parent's side of the scorer's workers: limited child processes, restarted after a failure.

Each ``Worker`` is one ``python -m generator.tools.evaluate.worker`` (``generator.runtime.child``)
started with a clean environment (no user variables, no tokens: only what JAX needs and the
package's path) and limits (``Limits``). ``score`` sends one answer's job and reads its layers
as they come; a time-out, a death or garbage on the protocol fails the layers not yet decided
with a class (timeout, out of memory, crash) and restarts the worker for the next answer.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from ...runtime.child import PACKAGE_PARENT, Child
from .worker import CRASH, ENV_CPU, ENV_FILE, ENV_MEMORY, OUT_OF_MEMORY, TIMEOUT, WORKER_MODULE

STARTUP_TIMEOUT_S = 120.0
# Only these of the caller's variables reach a worker: where programs and the locale are.
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")


@dataclass(frozen=True)
class Limits:
    """What one answer may use.

    Attributes:
      time_limit: wall-clock seconds per answer (the parent kills the worker after it).
      cpu_seconds: CPU seconds per answer (``RLIMIT_CPU``, set in the child before each job;
        XLA compiles on several threads, so it is above ``time_limit``).
      memory_bytes: the worker's address space (``RLIMIT_AS``); JAX imports and runs in 2 GiB.
      file_bytes: the largest file the worker may write (``RLIMIT_FSIZE``: its stderr, which a
        prediction may flood, and the cached reference outputs).
    """

    time_limit: float = 30.0
    cpu_seconds: float = 60.0
    memory_bytes: int = 4 << 30
    file_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for name in ("time_limit", "cpu_seconds", "memory_bytes", "file_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


def worker_env(limits: Limits, host_devices: int = 1, workdir: str | None = None) -> dict[str, str]:
    """A clean environment for a worker: the package importable, JAX on ``host_devices`` CPU devices.

    Nothing else of the caller's environment (tokens, credentials, caches) reaches the child.
    """
    env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
    home = workdir or tempfile.gettempdir()
    # one core per worker; every token must be a flag: XLA stops reading XLA_FLAGS at one that is not
    flags = ["--xla_cpu_multi_thread_eigen=false"]
    if host_devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={host_devices}")
    env.update(
        PYTHONPATH=PACKAGE_PARENT,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=" ".join(flags),
        HOME=home,
        TMPDIR=home,
        PYTHONDONTWRITEBYTECODE="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        **{
            ENV_MEMORY: str(limits.memory_bytes),
            ENV_CPU: str(limits.cpu_seconds),
            ENV_FILE: str(limits.file_bytes),
        },
    )
    return env


@dataclass
class Scored:
    """One answer's outcome as the worker reported it.

    Attributes:
      layers: layer -> passed.
      failures: layer -> (failure class, detail) for each failed layer.
      reference: ``ok`` once the reference's outputs were known; ``unusable`` or a failure class
        when the reference itself could not be run (the row then leaves ``agrees``); ``None`` if
        never reached.
      reference_detail: why the reference could not be run.
      seconds: wall-clock time of the job.
      errors: the cost task's relative error per figure (answers that parse).
    """

    layers: dict[str, bool] = field(default_factory=dict)
    failures: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    reference: str | None = None
    reference_detail: str | None = None
    seconds: float = 0.0
    errors: dict[str, float] | None = None


class Worker:
    """One limited worker process; ``score`` restarts it when it died or was killed."""

    def __init__(self, limits: Limits, host_devices: int = 1) -> None:
        self.limits = limits
        self.host_devices = host_devices
        self._child: Child | None = None
        self._stderr: IO[str] | None = None
        self._home: tempfile.TemporaryDirectory | None = None
        self.restarts = 0

    def _start(self) -> None:
        self._home = tempfile.TemporaryDirectory(prefix="jsp-eval-home-")
        self._stderr = tempfile.TemporaryFile(mode="w+", errors="replace")
        env = worker_env(self.limits, self.host_devices, self._home.name)
        self._child = Child(WORKER_MODULE, env, stderr=self._stderr)
        # A job answers with several lines, and a buffered reader may take more than one off the
        # pipe at once (then a select on the pipe waits for nothing): a thread reads every line
        # as it comes into a queue, and ``_receive`` waits on the queue.
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self._child.proc.stdout, self._lines), daemon=True).start()
        try:
            ready = self._receive(STARTUP_TIMEOUT_S)
        except (TimeoutError, ValueError) as e:
            raise RuntimeError(f"the scoring worker did not start: {self._stderr_tail()}") from e
        if not isinstance(ready, dict):
            raise RuntimeError(f"the scoring worker did not start: {self._stderr_tail()}")

    @staticmethod
    def _read(stdout: IO[str], lines: queue.Queue) -> None:
        try:
            for line in stdout:
                lines.put(line)
        except (OSError, ValueError):  # the pipe closed under us (the worker was closed)
            pass
        lines.put(None)

    def _receive(self, timeout: float) -> Any:
        """The next protocol line, decoded; ``None`` if the worker exited. ``TimeoutError``,
        or ``ValueError`` for a line that is not JSON."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the worker sent nothing for {timeout:g} s") from None
        if line is None:
            self._child.proc.wait(timeout=30)
            return None
        return json.loads(line)

    def _stderr_tail(self, lines: int = 3) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 4096))
            return " | ".join(self._stderr.read().strip().splitlines()[-lines:])
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self._child is not None:
            try:
                self._child.close()
            except OSError:
                pass
            self._child = None
        if self._stderr is not None:
            self._stderr.close()
        if self._home is not None:
            self._home.cleanup()
        self._stderr = self._home = None

    def _death_class(self) -> tuple[str, str]:
        """Why the worker died: its signal or exit status, and the end of its stderr."""
        code = self._child.returncode if self._child is not None else None
        tail = self._stderr_tail()
        if code is not None and code < 0 and -code == signal.SIGXCPU:
            return TIMEOUT, f"CPU time limit ({self.limits.cpu_seconds:g} s)"
        if any(m in tail for m in ("MemoryError", "bad_alloc", "Out of memory", "RESOURCE_EXHAUSTED")):
            return OUT_OF_MEMORY, f"the worker died (exit {code}): {tail}"
        return CRASH, f"the worker died (exit {code}): {tail}"

    def score(self, job: dict[str, Any]) -> Scored:
        """Send one answer's job; its layers as reported, and why the rest were not."""
        if self._child is None or not self._child.alive:
            self.close()
            self._start()
        result = Scored()
        start = time.monotonic()
        self._child.send(job)
        why: tuple[str, str] | None = None
        line: Any = None
        while True:
            left = self.limits.time_limit - (time.monotonic() - start)
            try:
                line = self._receive(max(left, 0.001))
            except TimeoutError:
                why = (TIMEOUT, f"cut off after the {self.limits.time_limit:g} s time limit")
                break
            except (ValueError, UnicodeDecodeError) as e:  # not JSON: something wrote into the protocol
                why = (CRASH, f"the worker sent garbage: {type(e).__name__}")
                break
            if line is None:
                why = self._death_class()
                break
            if not isinstance(line, dict):
                why = (CRASH, "the worker sent garbage")
                break
            if "layer" in line:
                result.layers[line["layer"]] = bool(line["ok"])
                if not line["ok"]:
                    result.failures[line["layer"]] = (line.get("failure") or CRASH, line.get("detail"))
            elif "reference" in line:
                result.reference = line["reference"]
                result.reference_detail = line.get("detail")
            elif "error" in line:  # an exception the worker caught: it goes on, with its "done" to come
                why = (line["error"], line.get("detail"))
            elif "done" in line:
                if line.get("restart"):
                    self.close()
                    self.restarts += 1
                break
        result.seconds = time.monotonic() - start
        if why is not None and result.reference == "start":
            # the reference's own compile or run failed (our row, not the answer): the row leaves agrees
            result.reference, result.reference_detail = why
        elif why is not None:
            result.failures["*"] = why
        finished = isinstance(line, dict) and "done" in line  # the worker caught the error and goes on
        if why is not None and not (finished and self._child is not None and self._child.alive):
            self.close()
            self.restarts += 1
        return result
