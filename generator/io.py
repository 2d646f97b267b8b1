"""Reading built rows back: JSONL or Parquet files, folders of them, or ``datasets`` objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".parquet")


def _split_of(path: Path) -> str:
    name = path.stem
    for split in ("validation", "train", "test"):
        if name.startswith(split) or f"-{split}" in name or path.parent.name == split:
            return split
    return "train"


def read_rows(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per split from a ``.jsonl``/``.parquet`` file or a folder holding such files.

    Raises:
      ValueError: the path does not exist, holds no such file, or a file is corrupt.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{str(p)!r} does not exist")
    files = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES) if p.is_dir() else [p]
    files = [f for f in files if f.suffix in SUFFIXES]
    if not files:
        raise ValueError(f"{str(p)!r} holds no {' or '.join(SUFFIXES)} files")
    out: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        out.setdefault(_split_of(f), []).extend(_read_file(f))
    return out


def _read_file(f: Path) -> list[dict[str, Any]]:
    try:
        if f.suffix == ".jsonl":
            with f.open() as fh:
                return [json.loads(line) for line in fh if line.strip()]
        import pyarrow.parquet as pq

        return pq.read_table(f).to_pylist()
    except Exception as e:
        raise ValueError(f"cannot read {str(f)!r}: {type(e).__name__}: {e}") from None
