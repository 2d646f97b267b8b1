"""Reading what the scorer scores: a split of a staged folder, and a predictions file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# A staged split's files, as ``push_to_hub`` (and ``hub.staging``) names them.
_SPLIT_FILE = re.compile(r"(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet")


def staged_splits(staged: str | os.PathLike, config: str) -> dict[str, list[Path]]:
    """The Parquet files of each split of ``config`` in a staged folder (``<folder>/<config>/<split>-0000i-of-0000N.parquet``).

    Raises:
      ValueError: the folder or config does not exist (naming the configs there), or holds no split.
    """
    root = Path(staged)
    if not root.is_dir():
        raise ValueError(f"staged folder {str(root)!r} does not exist")
    folder = root / config
    if not folder.is_dir():
        configs = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
        raise ValueError(f"unknown config {config!r} in {str(root)!r}; valid configs: {', '.join(configs) or '(none)'}")
    splits: dict[str, list[Path]] = {}
    for f in sorted(folder.glob("*.parquet")):
        m = _SPLIT_FILE.fullmatch(f.name)
        if m:
            splits.setdefault(m.group("split"), []).append(f)
    if not splits:
        raise ValueError(f"{str(folder)!r} holds no <split>-0000i-of-0000N.parquet files")
    return splits


def load_split(staged: str | os.PathLike, config: str, split: str) -> list[dict[str, Any]]:
    """The rows of one split of a staged config.

    Raises:
      ValueError: an unknown config or split (naming the valid ones), or an unreadable file.
    """
    import pyarrow.parquet as pq

    splits = staged_splits(staged, config)
    if split not in splits:
        raise ValueError(f"unknown split {split!r} of config {config!r}; valid splits: {', '.join(sorted(splits))}")
    rows: list[dict[str, Any]] = []
    for f in splits[split]:
        try:
            rows.extend(pq.read_table(f).to_pylist())
        except Exception as e:
            raise ValueError(f"cannot read {str(f)!r}: {type(e).__name__}: {e}") from None
    return rows


def read_predictions(source: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Predictions as ``{"id": str, "prediction": str}`` dicts, from a JSONL file or an iterable.

    Raises:
      ValueError: a line that is not a JSON object with a string ``id`` and ``prediction``
        (naming the line), or a file that does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"predictions file {str(path)!r} does not exist")
        records: list[Any] = []
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{str(path)!r} line {n} is not JSON: {e}") from None
        where = f"{str(path)!r} line"
    else:
        records, where = list(source), "prediction"
    out = []
    for n, r in enumerate(records, 1):
        if not (isinstance(r, Mapping) and isinstance(r.get("id"), str) and isinstance(r.get("prediction"), str)):
            raise ValueError(f'{where} {n} is not {{"id": <string>, "prediction": <string>}}: {str(r)[:200]}')
        out.append({"id": r["id"], "prediction": r["prediction"]})
    return out


def write_predictions(predictions: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write predictions as JSONL (one ``{"id", "prediction"}`` object a line), atomically."""
    from ..io import write_jsonl

    return write_jsonl(({"id": p["id"], "prediction": p["prediction"]} for p in predictions), path)
