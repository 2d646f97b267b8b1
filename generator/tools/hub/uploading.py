"""Uploading a staged folder: the repo id and token checks, the version tag, keeping other
configs' card entries, and the one step that talks to the Hub."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import atomic_write
from .card import STAGED_MARKER

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, HfApi


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
) -> CommitInfo:
    """Upload a staged folder to the dataset repo ``repo_id`` and tag the commit ``v<version>``.

    Creates the repo if needed; replaces the files of the staged configs (stale shards
    included), the plots and the card, and leaves every other config's files, and its entries
    in the card's YAML, alone. Refuses, before uploading, a version whose tag already exists:
    a released version never changes.

    Returns:
      The ``CommitInfo`` of the upload.
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
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(staged),
        repo_type="dataset",
        commit_message=f"Release {tag}: {', '.join(configs)}",
        delete_patterns=[f"{name}/*" for name in configs] + ["plots/*"],
    )
    api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="dataset", tag_message=f"Dataset version {version}")
    return commit
