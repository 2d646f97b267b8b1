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
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SCRIPT = ROOT / "jax_stablehlo_pairs.py"
CARD_TEMPLATE = ROOT / "dataset_card" / "template.md"
VIEWER_CHECK = Path(__file__).resolve().parent / "viewer_check.py"
DEFAULT_CONFIG = "balanced"
MAX_SHARD_BYTES = 500 << 20  # push_to_hub's default max_shard_size
PLOTS = {"op_frequency": "plots/op_frequency.png", "sizes": "plots/sizes.png"}
PRETTY_NAME = "JAX StableHLO Pairs"
TAGS = ["jax", "stablehlo", "mlir", "xla", "compilers", "code", "synthetic"]
TASK_CATEGORIES = ["text-generation"]
# Marks a folder as ours, so re-staging may replace it and nothing else is ever removed.
STAGED_MARKER = f"pretty_name: {PRETTY_NAME}"


@dataclass
class StagedConfig:
    """One config as staged.

    Attributes:
      name, description, categories, mixture: from the builder config.
      sizes: requested rows per split (the builder config's train/validation sizes).
      seed: the build's seed.
      features: the ``datasets.Features`` the builder produced.
      files: staged Parquet paths per split, relative to the staged folder.
      row_digests: per split, a digest of every row as the builder produced it (see ``row_digest``).
      shard_stats: summed ``ShardStats`` counters of the build, or ``None`` if some shard did not report.
    """

    name: str
    description: str
    categories: tuple[str, ...]
    mixture: str
    sizes: dict[str, int]
    seed: int
    features: Any = None
    files: dict[str, list[str]] = field(default_factory=dict)
    row_digests: dict[str, list[str]] = field(default_factory=dict)
    shard_stats: dict[str, int] | None = None


@dataclass
class StageResult:
    """What ``stage`` wrote: the folder, the dataset version and each config."""

    path: Path
    version: str
    configs: dict[str, StagedConfig]


# ---------------------------------------------------------------------------- building


def load_builder_module(script: str | os.PathLike = DEFAULT_SCRIPT):
    """The builder script as a module (as the tests and README's datasets>=4 recipe load it)."""
    name = Path(script).stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == Path(script).resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load builder script {str(script)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (and pickling for num_proc) look the module up by name
    spec.loader.exec_module(module)
    return module


def config_names(module) -> list[str]:
    return [c.name for c in module.JaxStablehloPairs.BUILDER_CONFIGS]


def check_configs(module, configs: Sequence[str] | None) -> list[str]:
    """``configs`` (all of them if empty), or a ``ValueError`` naming the unknown ones."""
    valid = config_names(module)
    if not configs:
        return valid
    bad = [c for c in configs if c not in valid]
    if bad:
        raise ValueError(f"unknown configs {bad}; valid configs: {', '.join(valid)}")
    return list(dict.fromkeys(configs))


@contextmanager
def _shard_stats_observed() -> Iterator[list[dict[str, Any]]]:
    """Collect the per-shard stats ``generator.runtime.shards`` logs, from this process and its forked workers.

    The handler appends JSON lines to a file, which forked ``num_proc`` workers inherit; the
    list yielded is filled when the block ends.
    """
    seen: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def __init__(self, path: str):
            super().__init__(logging.INFO)
            self.path = path

        def emit(self, record: logging.LogRecord) -> None:
            args = record.args
            if isinstance(args, tuple) and args and isinstance(args[-1], dict) and "attempts" in args[-1]:
                stats = {k: v for k, v in args[-1].items() if isinstance(v, int)}
                with open(self.path, "a", encoding="utf-8") as f:  # one short O_APPEND write per shard
                    f.write(json.dumps(stats) + "\n")

    logger = logging.getLogger("generator.runtime.shards")
    level, propagate = logger.level, logger.propagate
    with tempfile.TemporaryDirectory(prefix="jsp-shard-stats-") as tmp:
        handler = Collect(str(Path(tmp) / "stats.jsonl"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield seen
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
            if Path(handler.path).exists():
                seen.extend(json.loads(line) for line in Path(handler.path).read_text().splitlines() if line)


def build_config(module, name: str, *, cache_dir: str, num_proc: int | None = None, **config_kwargs):
    """Build one config through the builder class; returns ``(builder, DatasetDict, shard stats or None)``."""
    builder = module.JaxStablehloPairs(config_name=name, cache_dir=cache_dir, **config_kwargs)
    planned = sum(len(tasks) for tasks in builder.config.shard_plan().values())
    with _shard_stats_observed() as seen:
        builder.download_and_prepare(num_proc=num_proc)
    stats = None
    if len(seen) == planned:  # every shard reported: the numbers are complete
        keys = ("rows", "attempts", "other_bucket", "sampling_rejects", "lowering_failures", "duplicates")
        stats = {k: sum(int(s.get(k, 0)) for s in seen) for k in keys}
    return builder, builder.as_dataset(), stats


def row_digest(row: Mapping[str, Any]) -> str:
    """A digest of one row's values, the same whichever ``datasets`` version decoded it."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _write_parquet_shards(ds, folder: Path, split: str, max_shard_bytes: int) -> list[Path]:
    """``<split>-0000i-of-0000N.parquet`` as push_to_hub names them; bytes depend on the rows only."""
    num_shards = max(1, math.ceil(ds.data.nbytes / max_shard_bytes))
    paths = []
    for i in range(num_shards):
        path = folder / f"{split}-{i:05d}-of-{num_shards:05d}.parquet"
        ds.shard(num_shards=num_shards, index=i, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- staging


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output directory {str(output_dir)!r} is not a directory")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        readme = output_dir / "README.md"
        if not (readme.is_file() and STAGED_MARKER in readme.read_text(encoding="utf-8", errors="replace")):
            raise ValueError(
                f"output directory {str(output_dir)!r} is not empty and holds no staged dataset; refusing to replace it"
            )
    parent = output_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"output directory {str(output_dir)!r} cannot be created: {e.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {str(output_dir)!r} cannot be created: {str(parent)!r} is not writable")


def _replace_dir(tmp: Path, output_dir: Path) -> None:
    """Move the finished ``tmp`` to ``output_dir``; an old staging is removed only after the swap."""
    old = None
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        os.replace(output_dir, old)
    os.replace(tmp, output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def stage(
    output_dir: str | os.PathLike,
    configs: Sequence[str] | None = None,
    *,
    train_size: int | None = None,
    validation_size: int | None = None,
    seed: int | None = None,
    num_proc: int | None = None,
    script: str | os.PathLike = DEFAULT_SCRIPT,
    repo_id: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    cache_dir: str | None = None,
) -> StageResult:
    """Build ``configs`` through the builder and write a Hub-ready folder at ``output_dir``.

    Args:
      output_dir: the folder to (re)write; replaced atomically, and only if empty or a staging.
      configs: config names; all configs when empty.
      train_size, validation_size, seed: passed to every config (its defaults when ``None``).
      num_proc: builder processes (forked; resample counts are collected from each).
      repo_id: the Hub repo the card's loading examples name.
      max_shard_bytes: Parquet shards hold about this many bytes of Arrow data.
      cache_dir: the builder's cache; a temporary one (removed afterwards) when ``None``.

    Raises:
      ValueError: an unknown config, a bad size or seed, or an unusable ``output_dir``; raised
        before any row is built.
    """
    output_dir = Path(output_dir)
    module = load_builder_module(script)
    names = check_configs(module, configs)
    kwargs = {
        k: v
        for k, v in (("train_size", train_size), ("validation_size", validation_size), ("seed", seed))
        if v is not None
    }
    for name in names:  # bad sizes/seed fail here, before any work
        module.JaxStablehloPairs.BUILDER_CONFIG_CLASS(name=name, **kwargs).shard_plan()
    _check_output_dir(output_dir)

    version = str(module.VERSION)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.resolve().parent, prefix=f".{output_dir.name}.staging-"))
    try:
        with tempfile.TemporaryDirectory(prefix="jsp-stage-cache-") as own_cache:
            staged = {}
            for name in names:
                builder, dsd, stats = build_config(
                    module, name, cache_dir=cache_dir or own_cache, num_proc=num_proc, **kwargs
                )
                cfg = builder.config
                sc = StagedConfig(
                    name=name,
                    description=cfg.description or "",
                    categories=tuple(cfg.categories),
                    mixture=cfg.mixture,
                    sizes={"train": cfg.train_size, "validation": cfg.validation_size},
                    seed=cfg.seed,
                    shard_stats=stats,
                    features=next(iter(dsd.values())).features,
                )
                (tmp / name).mkdir()
                for split, ds in dsd.items():
                    paths = _write_parquet_shards(ds, tmp / name, split, max_shard_bytes)
                    sc.files[split] = [p.relative_to(tmp).as_posix() for p in paths]
                    sc.row_digests[split] = [row_digest(row) for row in ds]
                staged[name] = sc
                del dsd, builder
        result = StageResult(tmp, version, staged)
        write_card(result, module=module, repo_id=repo_id, num_proc=num_proc)
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = output_dir
    return result


# ---------------------------------------------------------------------------- the card


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` rows (``1K<n<10K`` ...)."""
    if n < 1000:
        return "n<1K"
    names = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    for i in range(len(names) - 1):
        if n < 10 ** (i + 4):
            return f"{names[i]}<n<{names[i + 1]}"
    return "n>1T"


def feature_type(feature: Any) -> str:
    """A column's type in words: ``string``, ``list of string``, ``list of {shape: list of int32, dtype: string}``."""
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{k}: {feature_type(v)}" for k, v in feature.items()) + "}"
    if isinstance(feature, list):
        return f"list of {feature_type(feature[0])}"
    inner = getattr(feature, "feature", None)
    if inner is not None:  # datasets.Sequence / List
        return f"list of {feature_type(inner)}"
    return str(getattr(feature, "dtype", feature))


def _yaml_metadata(result: StageResult, card_data) -> None:
    """``configs`` and ``dataset_info`` as ``push_to_hub`` writes them, from the staged files."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    from ...core.schema import FEATURES

    metadata_configs, infos = MetadataConfigs(), DatasetInfosDict()
    for name, sc in result.configs.items():
        entry: dict[str, Any] = {"data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in sc.files]}
        if name == DEFAULT_CONFIG:
            entry["default"] = True
        metadata_configs[name] = entry
        splits, download, total = SplitDict(), 0, 0
        for split, files in sc.files.items():
            tables = [pq.read_table(result.path / f) for f in files]
            nbytes = sum(t.nbytes for t in tables)
            splits.add(SplitInfo(name=split, num_bytes=nbytes, num_examples=sum(t.num_rows for t in tables)))
            download += sum((result.path / f).stat().st_size for f in files)
            total += nbytes
        infos[name] = DatasetInfo(
            features=sc.features or FEATURES, splits=splits, download_size=download, dataset_size=total
        )
    metadata_configs.to_dataset_card_data(card_data)
    infos.to_dataset_card_data(card_data)


def measure(result: StageResult) -> dict[str, Any]:
    """Statistics of the staged Parquet, per config and over all configs (``generator.stats.summarize``)."""
    from ..io import read_rows
    from ..stats import summarize

    per_config = {}
    for name in result.configs:
        rows = read_rows(result.path / name)
        flat = [r for rs in rows.values() for r in rs]
        per_config[name] = summarize(rows) | {
            "transforms": dict(Counter(t for r in flat for t in r["jax_transforms"]).most_common()),
            "lowerings": dict(Counter(r["lowering"] for r in flat).most_common()),
            "parquet_bytes": sum(p.stat().st_size for p in (result.path / name).glob("*.parquet")),
            "versions": sorted(
                {(r["generator_version"], r["jax_version"], r["jaxlib_version"]) for rs in rows.values() for r in rs}
            ),
        }
    return per_config


def _plot(result: StageResult, focus: str, summary: Mapping[str, Any]) -> None:
    """PNG plots of the ``focus`` config's staged rows: op frequency and size histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import read_rows

    rows = [r for rs in read_rows(result.path / focus).values() for r in rs]
    (result.path / "plots").mkdir(exist_ok=True)
    png = {"Software": None}  # no version string in the file: same rows, same bytes

    top = list(summary["op_frequency"].items())[:40][::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(top) + 1)))
    ax.barh([k for k, _ in top], [v for _, v in top], color="#4c72b0")
    ax.set_xlabel(f"rows using the op ({len(rows)} rows of '{focus}')")
    ax.set_title(f"StableHLO/CHLO op frequency, top {len(top)} of {summary['op_coverage']}")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(result.path / PLOTS["op_frequency"], dpi=100, metadata=png)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    flops = [math.log10(r["flops"]) for r in rows if r.get("flops") and r["flops"] > 0]
    for ax, values, label in (
        (axes[0], [r["python_lines"] for r in rows], "python_lines"),
        (axes[1], [r["stablehlo_lines"] for r in rows], "stablehlo_lines"),
        (axes[2], flops, "log10(flops)"),
    ):
        ax.hist(values, bins=30, color="#55a868")
        ax.set_xlabel(label)
        ax.set_ylabel("rows")
    fig.suptitle(f"Program sizes ('{focus}', {len(rows)} rows)")
    fig.tight_layout()
    fig.savefig(result.path / PLOTS["sizes"], dpi=100, metadata=png)
    plt.close(fig)


def build_command(result: StageResult, num_proc: int | None) -> str:
    """The command that stages the same data again."""
    any_cfg = next(iter(result.configs.values()))
    parts = ["python -m generator stage", "--configs", *result.configs, "--train-size", str(any_cfg.sizes["train"])]
    parts += ["--validation-size", str(any_cfg.sizes["validation"]), "--seed", str(any_cfg.seed)]
    if num_proc:
        parts += ["--num-proc", str(num_proc)]
    return " ".join(parts + ["--output-dir", "staged"])


def write_card(result: StageResult, *, module, repo_id: str | None = None, num_proc: int | None = None):
    """Render ``README.md`` (and its plots) into the staged folder from measured statistics."""
    from importlib.metadata import version

    from huggingface_hub import DatasetCard, DatasetCardData

    from ...core import fingerprint
    from ...core.schema import CITATION, COLUMNS, DESCRIPTION, LICENSE

    stats = measure(result)
    focus = DEFAULT_CONFIG if DEFAULT_CONFIG in stats else next(iter(stats))
    _plot(result, focus, stats[focus])
    total_rows = sum(s["rows"] for s in stats.values())
    card_data = DatasetCardData(
        pretty_name=PRETTY_NAME,
        license=LICENSE,
        language=["code"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        source_datasets=["original"],
        size_categories=[size_category(total_rows)],
        task_categories=TASK_CATEGORIES,
        tags=TAGS,
    )
    _yaml_metadata(result, card_data)
    versions = sorted({v for s in stats.values() for v in s["versions"]})
    resample = {}
    for name, sc in result.configs.items():
        st = sc.shard_stats
        if st and st["rows"]:
            resample[name] = st | {
                "per_row": (st["attempts"] - st["rows"]) / st["rows"],
                "failures": st["sampling_rejects"] + st["lowering_failures"] + st["duplicates"],
            }
    all_ops = sorted({op for s in stats.values() for op in s["op_frequency"]})
    card = DatasetCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        description=DESCRIPTION,
        version=result.version,
        release_notes=getattr(module, "RELEASE_NOTES", {}),
        repo_id=repo_id or "<user>/jax-stablehlo-pairs",
        columns=[(name, feature_type(feat), meaning) for name, (feat, meaning) in COLUMNS.items()],
        configs=result.configs,
        stats=stats,
        focus=focus,
        plots=PLOTS,
        resample=resample,
        total_rows=total_rows,
        all_ops=all_ops,
        provenance={
            "generator_versions": sorted({v[0] for v in versions}),
            "jax_versions": sorted({v[1] for v in versions}),
            "jaxlib_versions": sorted({v[2] for v in versions}),
            "datasets_version": version("datasets"),
            "code_fingerprint": fingerprint(),
            "seeds": sorted({sc.seed for sc in result.configs.values()}),
            "command": build_command(result, num_proc),
        },
        citation=CITATION,
    )
    card.save(result.path / "README.md")
    return card


# ---------------------------------------------------------------------------- the viewer's view


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
    if sorted(loaded) != sorted(result.configs):
        problems.append(f"configs seen by the viewer {sorted(loaded)} != staged {sorted(result.configs)}")
    for name, sc in result.configs.items():
        for split, digests in sc.row_digests.items():
            got = loaded.get(name, {}).get(split)
            if got is None:
                problems.append(f"{name}/{split}: not loaded")
                continue
            if got["columns"] != list(COLUMNS):
                problems.append(f"{name}/{split}: columns {got['columns']} != {list(COLUMNS)}")
            if got["row_digests"] != digests:
                diff = next(
                    (i for i, (a, b) in enumerate(zip(got["row_digests"], digests, strict=False)) if a != b),
                    min(len(digests), len(got["row_digests"])),
                )
                problems.append(
                    f"{name}/{split}: rows differ from the builder's ({len(got['row_digests'])} vs {len(digests)} rows, first at {diff})"
                )
    return problems


# ---------------------------------------------------------------------------- upload


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
    return f"v{version}"


def _merge_remote_card(api, repo_id: str, staged: Path, pushed: Sequence[str]) -> None:
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
    card.save(staged / "README.md")


def upload(
    staged: str | os.PathLike,
    repo_id: str,
    *,
    version: str,
    token: str | None = None,
    private: bool = False,
    api=None,
):
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
