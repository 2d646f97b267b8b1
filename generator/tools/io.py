"""Reading built rows back: JSONL or Parquet files, folders of them, or ``datasets`` objects.

Layouts understood:
  - one ``.jsonl``/``.parquet`` file (its split is read from its name, else ``train``);
  - a folder of such files, e.g. ``train.jsonl`` and ``validation.jsonl``;
  - a staged Hub folder, ``<config>/<split>-00000-of-00001.parquet``: one dataset per config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".parquet")
SPLIT_NAMES = ("train", "validation", "test")

Rows = dict[str, list[dict[str, Any]]]


def _split_of(path: Path) -> str:
    name = path.stem
    for split in ("validation", "train", "test"):
        if name.startswith(split) or f"-{split}" in name or path.parent.name == split:
            return split
    return "train"


def _config_of(path: Path, root: Path) -> str:
    """The config a file belongs to: its folder below ``root`` (a split folder does not count)."""
    parent = path.parent
    if parent.name in SPLIT_NAMES and parent != root:
        parent = parent.parent
    return "" if parent == root else parent.relative_to(root).as_posix()


def _data_files(p: Path) -> list[Path]:
    if not p.exists():
        raise ValueError(f"{str(p)!r} does not exist")
    if p.is_dir():
        # Hidden files are temporaries of an interrupted atomic write, never data.
        files = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file() and not f.name.startswith("."))
    else:
        files = [p] if p.suffix in SUFFIXES else []
    if not files:
        raise ValueError(f"{str(p)!r} holds no {' or '.join(SUFFIXES)} files")
    return files


def read_configs(path: str | Path) -> dict[str, Rows]:
    """Rows per config and split; a folder that is not a staged Hub folder is one config ``""``.

    Raises:
      ValueError: the path does not exist, holds no such file, or a file is corrupt.
    """
    p = Path(path)
    files = _data_files(p)
    root = p if p.is_dir() else p.parent
    out: dict[str, Rows] = {}
    for f in files:
        out.setdefault(_config_of(f, root), {}).setdefault(_split_of(f), []).extend(_read_file(f))
    return out


def read_rows(path: str | Path) -> Rows:
    """Rows per split from a ``.jsonl``/``.parquet`` file or a folder holding such files.

    Raises:
      ValueError: the path does not exist, holds no such file, or a file is corrupt.
    """
    out: Rows = {}
    for f in _data_files(Path(path)):
        out.setdefault(_split_of(f), []).extend(_read_file(f))
    return out


def rows_of_dataset(ds) -> Rows:
    """Rows per split of a ``datasets.DatasetDict`` (or of one ``Dataset``, as ``train``)."""
    if hasattr(ds, "to_list"):
        return {str(ds.split or "train"): ds.to_list()}
    return {str(split): ds[split].to_list() for split in ds}


def _read_file(f: Path) -> list[dict[str, Any]]:
    try:
        if f.suffix == ".jsonl":
            with f.open() as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            bad = [type(r).__name__ for r in rows if not isinstance(r, dict)]
            if bad:
                raise ValueError(f"a line holds a JSON {bad[0]}, not an object")
            return rows
        import pyarrow.parquet as pq

        return pq.read_table(f).to_pylist()
    except Exception as e:
        raise ValueError(f"cannot read {str(f)!r}: {type(e).__name__}: {e}") from None
