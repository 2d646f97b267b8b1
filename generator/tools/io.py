"""Reading built rows back, and writing them: JSONL, Parquet and JSON files, always atomically.

Layouts understood by the readers:
  - one ``.jsonl``/``.parquet`` file (its split is read from its name, else ``train``);
  - a folder of such files, e.g. ``train.jsonl`` and ``validation.jsonl``, or the batch files
    ``python -m generator generate`` writes, ``train-00000-of-00003.jsonl``, ... (``batch_file_name``);
  - a staged Hub folder, ``<config>/<split>-00000-of-00001.parquet``: one dataset per config.

Every writer goes through ``atomic_write``: a file appears under its name complete or not at
all, so a reader never sees a half-written one. Hidden files (``.<name>.<random>.tmp``) are the
temporaries of a write in progress, or of a process killed mid-write; readers skip them. A whole
folder (a Hub staging, a Ray build's config) is swapped in the same way by ``replace_dir``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Where ``generate`` writes, and ``validate`` looks, when given no folder (relative to the
# working directory), as in the original design.
DEFAULT_OUTPUT_DIR = "data/samples"

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
        # Hidden files and folders are temporaries (an interrupted atomic write, a Ray build's
        # in-progress shards under <config>/.shards/), never data.
        files = sorted(
            f
            for f in p.rglob("*")
            if f.suffix in SUFFIXES and f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
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


# --- writing --------------------------------------------------------------------------------


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it is a writable directory (``ValueError`` otherwise)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"output directory {str(p)!r} cannot be created: {e.strerror}") from None
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {str(p)!r} is not a writable directory")
    return p


def _claim_temporary(path: Path) -> Path:
    """A new, empty hidden file beside ``path``; created with the umask's permissions, not 0600."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; best effort where a platform cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a folder on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` all at once: yields a temporary path in the same folder to write to.

    When the ``with`` block ends normally the temporary file is synced and renamed onto
    ``path`` (replacing any file there); if anything raises, it is removed and ``path`` is left
    as it was. The folder must exist.

    Example:
      >>> with atomic_write(out / "train.parquet") as tmp:
      ...     pq.write_table(table, tmp)
    """
    path = Path(path)
    tmp = _claim_temporary(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)  # the rename itself survives a power cut


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Swap the finished folder ``tmp`` in as ``target``, replacing any folder there; returns ``target``.

    ``tmp`` must be on the same filesystem as ``target`` (e.g. a hidden sibling made with
    ``tempfile.mkdtemp(dir=target.parent)``). An old ``target`` is first renamed aside to a
    hidden ``.<name>.old-<pid>-<random>`` and removed only once ``tmp`` is in place, so
    ``target`` is at every moment either the old folder, the new one, or (between the two
    renames) absent, never a mix. If the second rename fails, the old folder is put back.
    """
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Rows as JSON Lines, atomically; returns ``path``."""
    with atomic_write(path) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return Path(path)


def write_parquet(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Rows as Parquet with the dataset's schema (``datasets`` reads its features back), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..core.schema import FEATURES

    table = pa.Table.from_pylist([FEATURES.encode_example(r) for r in rows], schema=FEATURES.arrow_schema)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """``data`` as indented JSON, atomically; returns ``path``."""
    with atomic_write(path) as tmp, tmp.open("w") as f:
        json.dump(data, f, indent=1)
    return Path(path)


def batch_file_name(split: str, index: int, num_files: int, fmt: str) -> str:
    """``<split>-<index>-of-<num_files>.<fmt>``, five digits each, as ``generate`` names its batches.

    The readers take the split from the name; ``-of-N`` tells a complete set from one cut
    short (an interrupted run leaves files 0..k-1 of N).
    """
    return f"{split}-{index:05d}-of-{num_files:05d}.{fmt}"
