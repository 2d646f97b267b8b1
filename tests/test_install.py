"""One plain install builds the default config: a fresh venv, ``pip install`` of the project, a build.

Slow (it installs jax, flax, datasets... into a new venv: minutes, from the pip cache or the
registry); ``make test-slow`` runs it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT, SCRIPT

pytestmark = pytest.mark.slow

BUILD = textwrap.dedent(
    """
    import sys
    import datasets
    ds = datasets.load_dataset(sys.argv[1], "balanced", trust_remote_code=True, cache_dir=sys.argv[2],
                               train_size=23, validation_size=0, test_size=0)
    print(sorted(set(ds["train"]["category"])) == sorted(__import__("generator").CATEGORIES), ds.num_rows)
    """
)


def test_a_plain_install_builds_the_default_config(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    built = subprocess.run(
        [str(python), "-c", BUILD, SCRIPT, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "True {'train': 23}" in built.stdout
    assert "Repo card metadata" not in built.stderr
