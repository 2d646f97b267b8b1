"""A Ray cluster of several nodes on one machine: a head and worker nodes started with
``ray start --block``, each its own raylet with one CPU (how the fault tests and the scaling
bench stand in for a real cluster: a worker node's raylet killed is a node lost).

``Cluster(workers=2).start()``, then ``address`` for ``ray.init``/``generate_with_ray`` (run
drivers with ``driver_env``: Ray 2.60 wants the cluster's token), ``raylet_of(node)`` to kill a
node, ``stop()`` to kill every process the cluster started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "JSP_TEST_RAY_CLUSTER"  # in the environment of every process of a cluster, and only theirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(marker: str, folder: Path) -> list[int]:
    """Pids of a cluster's processes: ``marker`` in their environment, or a file open under ``folder``.

    Ray's agents rewrite their process title, which can blank what ``/proc/<pid>/environ``
    shows, but they keep their logs open in the cluster's session folder.
    """
    pids = []
    needle = f"{MARKER}={marker}".encode()
    prefix = str(folder) + "/"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
                continue
            for fd in (d / "fd").iterdir():
                if os.readlink(fd).startswith(prefix):
                    pids.append(int(d.name))
                    break
        except OSError:  # gone, or not ours
            pass
    return pids


class Cluster:
    """A head and worker nodes started with ``ray start --block`` on this machine, each its own raylet."""

    def __init__(self, workers: int = 2) -> None:
        self.marker = secrets.token_hex(6)
        self.tmp = Path(tempfile.mkdtemp(prefix="jsp-ray-"))
        ray_bin = str(Path(sys.executable).with_name("ray"))
        # Ray 2.60 turns token authentication on when a token file exists: give the cluster and
        # its drivers their own token, whatever the user's ~/.ray holds.
        self.driver_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        # Notice a lost node in about 2 s instead of the default 30 s or so.
        self.env = {
            **self.driver_env,
            MARKER: self.marker,
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "500",
            "RAY_health_check_failure_threshold": "4",
        }
        self.workers = workers
        self.nodes: list[subprocess.Popen] = []
        self.address = ""
        self.ray_bin = ray_bin

    def start(self) -> None:
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        common = ["--block", "--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
        head = [self.ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={self.tmp / 'ray'}"]
        self._start([*head, "--include-dashboard=false", *common], "head")
        self._wait_for_nodes(1)
        for i in range(self.workers):  # one at a time: two raylets starting at once can race for a socket
            self._start([self.ray_bin, "start", f"--address={self.address}", *common], f"worker{i}")
            self._wait_for_nodes(2 + i)

    def _start(self, argv: list[str], name: str) -> None:
        log = open(self.tmp / f"{name}.log", "w")
        self.nodes.append(
            subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def alive_nodes(self) -> int:
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        argv = [sys.executable, "-c", code, self.address]
        out = subprocess.run(argv, capture_output=True, text=True, env=self.driver_env)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def _wait_for_nodes(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() == n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local cluster did not reach {n} nodes; logs in {self.tmp}")

    def raylet_of(self, node: int) -> int:
        """The pid of node ``node``'s raylet (a child of its ``ray start``)."""
        parent = self.nodes[node].pid
        for pid in _processes_with(self.marker, self.tmp):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent and cmd.endswith(b"/raylet"):
                return pid
        raise RuntimeError(f"no raylet found for node {node}")

    def stop(self) -> None:
        """Kill every process of this cluster, by pid, then reap the ones it started."""
        for _ in range(3):
            pids = _processes_with(self.marker, self.tmp)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        for p in self.nodes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
