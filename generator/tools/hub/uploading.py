"""Uploading a staged folder: the repo id and token checks, the version tag, keeping other
configs' card entries, and the steps that talk to the Hub.

A small staged folder goes up in one commit (``upload_folder``). One past ``LARGE_PUSH_BYTES``
or ``LARGE_PUSH_FILES`` goes up in parts, one commit each (at most ``PART_FILES`` files and
about ``PART_BYTES``), data first and then, in one last commit, the card, the plots and the
deletion of the pushed configs' stale files; the version tag goes on that last commit. Rerun
after an interruption, it skips every file the Hub already holds with the same content, so it
resumes where it stopped. (huggingface_hub 2.4 has no ``upload_large_folder``; its
``upload_folder`` splits large folders only when ``hf_xet`` is installed, and then the card
could land before the data. Parts of our own keep the order and work either way.)
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import atomic_write
from .card import STAGED_MARKER

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, HfApi

# A staged folder past either bound is pushed in parts (about 160,000 balanced rows make 1 GiB).
LARGE_PUSH_BYTES = 1 << 30
LARGE_PUSH_FILES = 200
# One part (one commit): few enough files that a commit stays quick, few enough bytes that an
# interruption costs little.
PART_FILES = 100
PART_BYTES = 1 << 30


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it names a Hub repo as ``<user>/<name>``, else a ``ValueError`` saying why."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"bad repo id {repo_id!r}: {e}") from None
    if repo_id.count("/") != 1:
        raise ValueError(f"bad repo id {repo_id!r}: give it as <user or org>/<name>")
    return repo_id


def resolve_token(token: str | None = None) -> str:
    """``token``, else ``HF_TOKEN`` or the login cache; a ``ValueError`` (never showing a token) if none."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise ValueError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (needs write access)")
    return found


def staged_configs(staged: Path) -> list[str]:
    """The configs a staged folder holds, from its card (``ValueError`` if it is not a staging)."""
    from huggingface_hub import DatasetCard

    readme = staged / "README.md"
    if not readme.is_file() or STAGED_MARKER not in readme.read_text(encoding="utf-8"):
        raise ValueError(f"{str(staged)!r} is not a staged folder (no README.md written by stage)")
    return [c["config_name"] for c in DatasetCard.load(readme).data.get("configs") or []]


def version_tag(version: str) -> str:
    """The Hub tag of dataset version ``version``: ``v2.0.0``."""
    return f"v{version}"


def _merge_remote_card(api: HfApi, repo_id: str, staged: Path, pushed: Sequence[str]) -> None:
    """Keep the YAML entries of configs already on the Hub that this push does not replace."""
    from huggingface_hub import DatasetCard

    if not api.file_exists(repo_id, "README.md", repo_type="dataset"):
        return
    remote = DatasetCard.load(api.hf_hub_download(repo_id, "README.md", repo_type="dataset")).data
    card = DatasetCard.load(staged / "README.md")
    for key in ("configs", "dataset_info"):
        theirs = remote.get(key) or []
        theirs = [theirs] if isinstance(theirs, dict) else theirs
        kept = [e for e in theirs if e.get("config_name", "default") not in pushed]
        if kept:
            ours = card.data.get(key) or []
            ours = [ours] if isinstance(ours, dict) else ours
            card.data[key] = sorted(ours + kept, key=lambda e: e.get("config_name", "default"))
    with atomic_write(staged / "README.md") as tmp:  # a staging is never left with half a card
        card.save(tmp)


def upload(
    staged: str | os.PathLike,
    repo_id: str,
    *,
    version: str,
    token: str | None = None,
    private: bool = False,
    api: HfApi | None = None,
    log: Callable[[str], None] = _stderr,
) -> CommitInfo:
    """Upload a staged folder to the dataset repo ``repo_id`` and tag the commit ``v<version>``.

    Creates the repo if needed; replaces the files of the staged configs (stale shards
    included), the plots and the card, and leaves every other config's files, and its entries
    in the card's YAML, alone. Refuses, before uploading, a version whose tag already exists:
    a released version never changes. A small folder goes up in one commit; a large one
    (``is_large_push``) in parts, data first and the card last, and a rerun after an
    interruption uploads only what the Hub does not hold yet.

    Args:
      staged: the staged folder (``stage`` wrote it).
      repo_id: ``<user or org>/<name>``.
      version: the dataset version; the commit is tagged ``v<version>``.
      token: a Hub token (default: ``HF_TOKEN`` or the login cache).
      private: create the repo private (an existing repo keeps its visibility).
      api: the ``HfApi`` to use (tests pass a fake).
      log: where a large push reports its progress (default: stderr).

    Returns:
      The ``CommitInfo`` of the upload (of its last commit, which the tag names).
    """
    from huggingface_hub import HfApi

    token = resolve_token(token)
    staged = Path(staged)
    configs = staged_configs(staged)
    api = api or HfApi(token=token)
    tag = version_tag(version)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if tag in {t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}:
        raise ValueError(
            f"{repo_id} already has tag {tag!r}: bump the dataset version (and CHANGELOG.md) to publish new data"
        )
    _merge_remote_card(api, repo_id, staged, configs)
    files = staged_files(staged)
    if is_large_push(files):
        commit = _upload_in_parts(api, repo_id, staged, configs, tag, files, log=log)
    else:
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(staged),
            repo_type="dataset",
            commit_message=f"Release {tag}: {', '.join(configs)}",
            delete_patterns=[f"{name}/*" for name in configs] + ["plots/*"],
        )
    api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="dataset", tag_message=f"Dataset version {version}")
    return commit


@dataclass(frozen=True)
class StagedFile:
    """One file of a staged folder: its path in the repo (``<config>/train-00000-of-00004.parquet``) and size."""

    path: str
    size: int


def staged_files(staged: str | os.PathLike) -> list[StagedFile]:
    """The files a push uploads, in path order: hidden files and folders (temporaries, a build's
    ``.shards``) are never data."""
    root = Path(staged)
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(StagedFile(rel.as_posix(), p.stat().st_size))
    return out


def is_large_push(files: Sequence[StagedFile]) -> bool:
    """Whether a push of ``files`` goes up in parts: past ``LARGE_PUSH_BYTES`` or ``LARGE_PUSH_FILES``."""
    return sum(f.size for f in files) > LARGE_PUSH_BYTES or len(files) > LARGE_PUSH_FILES


def push_parts(files: Sequence[StagedFile]) -> list[list[StagedFile]]:
    """``files`` in order, cut into parts of at most ``PART_FILES`` files and ``PART_BYTES`` bytes
    (a file larger than that is a part of its own)."""
    parts: list[list[StagedFile]] = []
    size = 0
    for f in files:
        if not parts or len(parts[-1]) >= PART_FILES or (parts[-1] and size + f.size > PART_BYTES):
            parts.append([])
            size = 0
        parts[-1].append(f)
        size += f.size
    return parts


def _same_content(remote: Any, local: Path) -> bool:
    """Whether the Hub's file (a ``RepoFile``) holds exactly ``local``'s bytes: its LFS SHA-256,
    else its git blob id, compared with the local file's."""
    if remote is None or getattr(remote, "size", None) != local.stat().st_size:
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        digest = hashlib.sha256()
    else:  # a small file stored in git: its blob id is the SHA-1 of a header and the bytes
        digest = hashlib.sha1(f"blob {local.stat().st_size}\0".encode(), usedforsecurity=False)
    with local.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == (lfs.sha256 if lfs is not None else remote.blob_id)


def _upload_in_parts(
    api: HfApi,
    repo_id: str,
    staged: Path,
    configs: Sequence[str],
    tag: str,
    files: Sequence[StagedFile],
    *,
    log: Callable[[str], None],
) -> CommitInfo:
    """Push a large staged folder: data in resumable parts, then the card, plots and stale deletions last."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    remote = {f.path: f for f in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True) if hasattr(f, "size")}
    ours = tuple(f"{name}/" for name in configs)
    data = [f for f in files if f.path.startswith(ours)]
    todo = [f for f in data if not _same_content(remote.get(f.path), staged / f.path)]
    parts = push_parts(todo)
    total = sum(f.size for f in files)
    log(
        f"large push ({len(files)} files, {total / 2**30:.2f} GiB): {len(data) - len(todo)} of {len(data)} data files "
        f"already on the Hub, {len(todo)} to upload in {len(parts)} commits, then the card"
    )
    for i, part in enumerate(parts, 1):
        api.create_commit(
            repo_id,
            repo_type="dataset",
            operations=[CommitOperationAdd(f.path, str(staged / f.path)) for f in part],
            commit_message=f"Release {tag}: data, part {i} of {len(parts)} ({', '.join(configs)})",
        )
        log(f"large push: committed part {i} of {len(parts)} ({len(part)} files)")
    # The last commit switches the release over at once: the card that describes the new files,
    # the plots, and the deletion of the pushed configs' files this staging no longer has.
    local = {f.path for f in files}
    stale = sorted(p for p in remote if p.startswith((*ours, "plots/")) and p not in local)
    rest = [f for f in files if not f.path.startswith(ours)]
    operations = [CommitOperationDelete(p) for p in stale]
    operations += [CommitOperationAdd(f.path, str(staged / f.path)) for f in rest]
    commit = api.create_commit(
        repo_id,
        repo_type="dataset",
        operations=operations,
        commit_message=f"Release {tag}: {', '.join(configs)}",
    )
    log(f"large push: card and plots committed, {len(stale)} stale files deleted")
    return commit
