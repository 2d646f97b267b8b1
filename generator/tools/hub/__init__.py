"""Publishing to the Hub: stage a folder the dataset viewer can browse, then upload it.

The Hub's viewer does not run loading scripts, so what we publish is plain Parquet per config
and split plus a dataset card whose YAML header (``configs``, ``dataset_info``) describes them,
the layout ``DatasetDict.push_to_hub`` writes::

    README.md                                   card rendered from dataset_card/template.md
    plots/op_frequency.png, plots/sizes.png     plots the card shows
    <config>/<split>-00000-of-0000N.parquet     rows, built through the builder script

Staging is offline and atomic (built in a hidden sibling folder, then renamed); ``upload``
is the only step that talks to the Hub. The builder script is not uploaded: a ``.py`` named
after the repo would make the Hub treat the repo as a script dataset, which the viewer and
``datasets`` >= 4 refuse.

The modules, each importing only those above it:

- ``staged``: ``StagedConfig``, ``StageResult`` (what a staged folder holds), ``DEFAULT_CONFIG``;
- ``build``: loading the builder script, checking config names, building one config, ``row_digest``;
- ``card``: the dataset card, its YAML header, measured statistics and plots;
- ``staging``: ``stage``, writing the Parquet and swapping the folder in;
- ``viewer``: ``check_viewer``, running ``viewer_check.py`` with the newest ``datasets``;
- ``uploading``: the repo id and token checks, the version tag, ``upload`` (one commit, or parts for a large folder).
"""

from __future__ import annotations

from .build import DEFAULT_SCRIPT, ROOT, build_config, check_configs, config_names, load_builder_module, row_digest
from .card import (
    CARD_TEMPLATE,
    PLOTS,
    PRETTY_NAME,
    STAGED_MARKER,
    TAGS,
    TASK_CATEGORIES,
    build_command,
    feature_type,
    measure,
    size_category,
    write_card,
)
from .staged import DEFAULT_CONFIG, StagedConfig, StageResult
from .staging import MAX_SHARD_BYTES, stage
from .uploading import (
    LARGE_PUSH_BYTES,
    LARGE_PUSH_FILES,
    PART_BYTES,
    PART_FILES,
    StagedFile,
    check_repo_id,
    is_large_push,
    push_parts,
    resolve_token,
    staged_configs,
    staged_files,
    upload,
    version_tag,
)
from .viewer import VIEWER_CHECK, check_viewer, compare_viewer_report

__all__ = [
    "CARD_TEMPLATE",
    "DEFAULT_CONFIG",
    "DEFAULT_SCRIPT",
    "LARGE_PUSH_BYTES",
    "LARGE_PUSH_FILES",
    "MAX_SHARD_BYTES",
    "PART_BYTES",
    "PART_FILES",
    "PLOTS",
    "PRETTY_NAME",
    "ROOT",
    "STAGED_MARKER",
    "TAGS",
    "TASK_CATEGORIES",
    "VIEWER_CHECK",
    "StageResult",
    "StagedConfig",
    "StagedFile",
    "build_command",
    "build_config",
    "check_configs",
    "check_repo_id",
    "check_viewer",
    "compare_viewer_report",
    "config_names",
    "feature_type",
    "is_large_push",
    "load_builder_module",
    "measure",
    "push_parts",
    "resolve_token",
    "row_digest",
    "size_category",
    "stage",
    "staged_configs",
    "staged_files",
    "upload",
    "version_tag",
    "write_card",
]
