"""Starting the generator's helper interpreters (shard server, device server, row runner)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def child_env(*, host_devices: int = 1) -> dict[str, str]:
    """This process's environment, with the generator importable and ``host_devices`` CPU devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    if host_devices > 1:
        flag = f"--xla_force_host_platform_device_count={host_devices}"
        env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS"), flag) if f)
    return env


def start_child(module: str, env: dict[str, str], *, stderr=None) -> subprocess.Popen:
    """``python -m <module>`` speaking line-based text over its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        text=True,
        bufsize=1,
    )
