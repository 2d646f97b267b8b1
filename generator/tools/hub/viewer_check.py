"""The Hub viewer's view of a staged folder: load every config with plain ``datasets``, no script.

Run with an interpreter that has only the newest ``datasets`` (not this project), in isolated
mode, from an empty directory::

    <viewer-venv>/bin/python -I generator/tools/hub/viewer_check.py <staged folder>

Prints one JSON report: the ``datasets`` version, whether the project was importable (it must
not be), the default config, and per config and split the columns and a digest of every row
(the same digest as ``generator.tools.hub.row_digest``). Uses the standard library and
``datasets`` only, so it runs where the project is not installed. Not collected by pytest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import datasets


def row_digest(row) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def describe(ds) -> dict:
    return {"num_rows": ds.num_rows, "columns": list(ds.column_names), "row_digests": [row_digest(r) for r in ds]}


def main(folder: str) -> int:
    names = datasets.get_dataset_config_names(folder)
    report = {
        "datasets_version": datasets.__version__,
        "project_importable": importlib.util.find_spec("generator") is not None,
        "config_names": names,
        "configs": {},
    }
    for name in names:
        dsd = datasets.load_dataset(folder, name)
        report["configs"][name] = {split: describe(ds) for split, ds in dsd.items()}
    report["default_config"] = datasets.load_dataset_builder(folder).config.name  # what the viewer opens first
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
