"""The viewer's view: load a staged folder with another interpreter (the newest ``datasets``, not
this project) through ``viewer_check.py`` beside this module, and compare its rows with the builder's."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .staged import DEFAULT_CONFIG, StageResult

VIEWER_CHECK = Path(__file__).resolve().parent / "viewer_check.py"


def check_viewer(result: StageResult, python: str | os.PathLike, *, timeout: float = 1800) -> list[str]:
    """Load the staged folder with another interpreter (the newest ``datasets``, no project) and compare rows.

    Runs ``viewer_check.py`` (beside this module) in isolated mode (``-I``) from an empty working directory
    with a fresh ``HF_HOME``, so neither the project nor its script can be imported. Returns
    the problems found (empty when every config's rows equal the builder's).
    """
    python = (
        os.path.abspath(python) if os.sep in str(python) else str(python)
    )  # not resolved: a venv's python is a symlink
    with tempfile.TemporaryDirectory(prefix="jsp-viewer-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
        env |= {"HF_HOME": str(Path(work) / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
        done = subprocess.run(
            [str(python), "-I", str(VIEWER_CHECK), str(Path(result.path).resolve())],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if done.returncode != 0:
        return [f"viewer check failed (exit {done.returncode}): {done.stderr[-3000:]}"]
    report = json.loads(done.stdout)
    return compare_viewer_report(result, report)


def compare_viewer_report(result: StageResult, report: Mapping[str, Any]) -> list[str]:
    """Problems between what the builder produced and what the viewer-side ``datasets`` loaded."""
    from ...core.schema import COLUMNS

    problems = []
    if report.get("project_importable"):
        problems.append("the viewer environment can import the project; the check is not isolated")
    if report.get("default_config") != (
        DEFAULT_CONFIG if DEFAULT_CONFIG in result.configs else report.get("default_config")
    ):
        problems.append(f"default config is {report.get('default_config')!r}, expected {DEFAULT_CONFIG!r}")
    loaded = report.get("configs", {})
    staged = result.hub_configs()
    if sorted(loaded) != sorted(staged):
        problems.append(f"configs seen by the viewer {sorted(loaded)} != staged {sorted(staged)}")
    for name, sc in staged.items():
        columns = list(sc.features) if name in result.views else list(COLUMNS)
        for split, digests in sc.row_digests.items():
            got = loaded.get(name, {}).get(split)
            if got is None:
                problems.append(f"{name}/{split}: not loaded")
                continue
            if got["columns"] != columns:
                problems.append(f"{name}/{split}: columns {got['columns']} != {columns}")
            if got["row_digests"] != digests:
                diff = next(
                    (i for i, (a, b) in enumerate(zip(got["row_digests"], digests, strict=False)) if a != b),
                    min(len(digests), len(got["row_digests"])),
                )
                problems.append(
                    f"{name}/{split}: rows differ from the builder's ({len(got['row_digests'])} vs {len(digests)} rows, first at {diff})"
                )
    return problems
