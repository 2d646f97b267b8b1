"""The dataset card: ``README.md`` rendered from dataset_card/template.md with a YAML header
(``configs``, ``dataset_info``) as ``push_to_hub`` writes it, statistics measured from the staged
Parquet, and the plots it shows."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.models import MODEL_CATEGORIES, MODEL_LIBRARIES
from ...core.plan import HOST_PLATFORM, parse_lowering
from ...core.structure import HELD_OUT_SHARE, SPLITS
from ...core.tokens import TOKENIZER_NAME, tokenizer_version
from ...core.views import VIEW_COLUMNS, VIEWS, longest_tokens
from .build import ROOT
from .staged import DEFAULT_CONFIG, StageResult

if TYPE_CHECKING:
    from types import ModuleType

    from huggingface_hub import DatasetCard, DatasetCardData

CARD_TEMPLATE = ROOT / "dataset_card" / "template.md"
# Baseline scores of the benchmark (``python -m generator evaluate --baseline ...`` on the test
# splits of a stated build), shown on the card of the dataset version they were measured on.
BASELINES = ROOT / "dataset_card" / "baselines.json"
DIVERSITY = ROOT / "dataset_card" / "diversity.json"
# What a million rows costs (``benchmarks/bench_scaling.py --card-json``), on the card of its version.
COSTS = ROOT / "dataset_card" / "costs.json"
PLOTS = {"op_frequency": "plots/op_frequency.png", "sizes": "plots/sizes.png", "tokens": "plots/tokens.png"}
# Context lengths the card counts rows and tokens under (what ``max_tokens`` would keep).
BUDGETS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
PRETTY_NAME = "JAX StableHLO Pairs"
TAGS = ["jax", "stablehlo", "mlir", "xla", "compilers", "code", "synthetic"]
TASK_CATEGORIES = ["text-generation"]
# Marks a folder as ours, so re-staging may replace it and nothing else is ever removed.
STAGED_MARKER = f"pretty_name: {PRETTY_NAME}"


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


def _yaml_metadata(result: StageResult, card_data: DatasetCardData) -> None:
    """``configs`` and ``dataset_info`` as ``push_to_hub`` writes them, from the staged files."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    from ...core.schema import FEATURES

    metadata_configs, infos = MetadataConfigs(), DatasetInfosDict()
    for name, sc in result.hub_configs().items():
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


def budget_table(rows: list[Mapping[str, Any]], seed: int) -> dict[int, dict[str, int]]:
    """Per context length in ``BUDGETS``: the rows whose every view row fits it (what ``max_tokens``
    keeps, ``views.fits``) and their tokens (python + StableHLO)."""
    longest = [longest_tokens(r, seed) for r in rows]
    pair = [r["python_tokens"] + r["stablehlo_tokens"] for r in rows]
    return {
        b: {"rows": sum(n <= b for n in longest), "tokens": sum(p for p, n in zip(pair, longest) if n <= b)}
        for b in BUDGETS
    }


def measure_views(result: StageResult) -> dict[str, dict[str, Any]]:
    """Rows and tokens of each staged view."""
    import pyarrow.parquet as pq

    out = {}
    for name, sv in result.views.items():
        tables = [
            pq.read_table(result.path / f, columns=["prompt_tokens", "completion_tokens"])
            for fs in sv.files.values()
            for f in fs
        ]
        prompt = [n for t in tables for n in t.column("prompt_tokens").to_pylist()]
        completion = [n for t in tables for n in t.column("completion_tokens").to_pylist()]
        out[name] = {
            "rows": len(prompt),
            "splits": {split: len(d) for split, d in sv.row_digests.items()},
            "prompt_tokens": sum(prompt),
            "completion_tokens": sum(completion),
            "max_row_tokens": max(p + c for p, c in zip(prompt, completion)),
            "parquet_bytes": sum(p.stat().st_size for p in (result.path / name).glob("*.parquet")),
        }
    return out


def measure(result: StageResult) -> dict[str, Any]:
    """Statistics of the staged Parquet, per config and over all configs (``generator.tools.stats.summarize``)."""
    from .. import leakage
    from ..io import read_rows
    from ..stats import summarize

    per_config = {}
    for name, sc in result.configs.items():
        rows = read_rows(result.path / name)
        flat = [r for rs in rows.values() for r in rs]
        per_config[name] = summarize(rows) | {
            "budgets": budget_table(flat, sc.seed),
            "transforms": dict(Counter(t for r in flat for t in r["jax_transforms"]).most_common()),
            "lowerings": dict(Counter(r["lowering"] for r in flat).most_common()),
            "leakage": leakage.measure(rows),
            "structures": {
                cat: {
                    split: len({r["structure"] for r in rows.get(split, ()) if r["category"] == cat})
                    for split in SPLITS
                }
                for cat in sorted({r["category"] for r in flat})
            },
            # model rows written as sharded code (a mesh of host devices), per model category
            "sharded": {
                cat: {"rows": n, "sharded": sum(1 for r in flat if r["category"] == cat and r["mesh"])}
                for cat, n in sorted(Counter(r["category"] for r in flat).items())
                if cat in MODEL_CATEGORIES
            },
            "parquet_bytes": sum(p.stat().st_size for p in (result.path / name).glob("*.parquet")),
            "versions": sorted(
                {(r["generator_version"], r["jax_version"], r["jaxlib_version"]) for rs in rows.values() for r in rs}
            ),
            "library_versions": {
                lib: sorted({r[f"{lib}_version"] for rs in rows.values() for r in rs if r.get(f"{lib}_version")})
                for lib in MODEL_LIBRARIES
            },
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

    _plot_tokens(result, focus, rows, plt, png)


def _plot_tokens(result: StageResult, focus: str, rows: list[Mapping[str, Any]], plt: Any, png: dict) -> None:
    """Token distributions: python and StableHLO tokens per row of ``focus``, and per config the
    share of rows within each context length."""
    from ..io import read_rows

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    ax = axes[0]
    for column, color in (("python_tokens", "#4c72b0"), ("stablehlo_tokens", "#dd8452")):
        ax.hist([math.log10(max(1, r[column])) for r in rows], bins=30, alpha=0.7, color=color, label=column)
    ax.set_xlabel("log10(tokens per row)")
    ax.set_ylabel("rows")
    ax.set_title(f"'{focus}', {len(rows)} rows")
    ax.legend(fontsize=8)
    ax = axes[1]
    shown = [n for n in ("balanced", "mixed", "models") if n in result.configs] or list(result.configs)[:5]
    for name in shown:
        flat = [r for rs in read_rows(result.path / name).values() for r in rs]
        pair = sorted(r["python_tokens"] + r["stablehlo_tokens"] for r in flat)
        ax.step(pair, [(i + 1) / len(pair) for i in range(len(pair))], where="post", label=name)
    for b in BUDGETS:
        ax.axvline(b, color="#999999", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("python + StableHLO tokens per row")
    ax.set_ylabel("share of rows at or below")
    ax.legend(fontsize=8)
    fig.suptitle(f"Tokens: {TOKENIZER_NAME}")
    fig.tight_layout()
    fig.savefig(result.path / PLOTS["tokens"], dpi=100, metadata=png)
    plt.close(fig)


def load_diversity(version: str, path: Path = DIVERSITY) -> list[dict[str, Any]] | None:
    """The model families' growth for the card (``stats --diversity --report-json``), if ``path``
    holds it for dataset ``version``: per category, distinct call sequences and structures at
    each checkpoint of draws, and the share of new call sequences among the last draws."""
    import json

    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("version") != version:
        return None
    rows = []
    for category, r in data["categories"].items():
        points = sorted(r["call_sequences"], key=int)
        rows.append(
            {
                "category": category,
                "curve": [(f"{int(p):,}", f"{r['call_sequences'][p]:,}", f"{r['structures'][p]:,}") for p in points],
                "new_in_last": f"{100 * r['new_in_last']:.1f}%",
            }
        )
    return rows


def load_costs(version: str, path: Path = COSTS) -> dict[str, Any] | None:
    """What a million rows costs, for the card, if ``path`` holds it for dataset ``version``:
    ``{"version", "measured_on", "machine", "command", "costs": [per config: pairs/s and IR
    tokens/s per core, bytes per row, core-hours and GB per million rows, hours on 64 and 512
    cores, the build measured]}`` as the scaling bench writes it."""
    import json

    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("version") == version and data.get("costs") else None


def load_baselines(version: str, path: Path = BASELINES) -> dict[str, Any] | None:
    """The baseline tables for the card, one per task, if ``path`` holds them for dataset ``version``.

    The file is ``{"version", "measured_on", "command", "note", "reports": [{"config", "task",
    "baseline", "report"}]}``, each report as ``evaluate`` writes it (its ``layers`` at least).
    """
    import json

    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("version") != version:
        return None
    tasks: dict[str, dict[str, Any]] = {}
    for entry in data["reports"]:
        table = tasks.setdefault(entry["task"], {"task": entry["task"], "layers": [], "rows": []})
        layers = entry["report"]["layers"]
        table["layers"] = list(dict.fromkeys([*table["layers"], *layers]))
        table["rows"].append(
            {
                "config": entry["config"],
                "baseline": entry["baseline"],
                "rows": entry["report"].get("rows", ""),
                "layers": {
                    name: f"{100 * r['rate']:.1f}% of {r['denominator']}"
                    for name, r in layers.items()
                    if r.get("denominator")
                },
            }
        )
    return {**data, "tasks": list(tasks.values())}


def build_command(result: StageResult, num_proc: int | None) -> str:
    """The command that stages the same data again."""
    any_cfg = next(iter(result.configs.values()))
    names = dict.fromkeys(c.config for c in result.configs.values())
    parts = ["python -m generator stage", "--configs", *names, "--train-size", str(any_cfg.sizes["train"])]
    parts += ["--validation-size", str(any_cfg.sizes["validation"]), "--test-size", str(any_cfg.sizes["test"])]
    parts += ["--seed", str(any_cfg.seed)]
    if result.platforms != [HOST_PLATFORM]:
        parts += ["--platforms", ",".join(result.platforms)]
    if num_proc:
        parts += ["--num-proc", str(num_proc)]
    return " ".join(parts + ["--output-dir", "staged"])


def write_card(
    result: StageResult, *, module: ModuleType, repo_id: str | None = None, num_proc: int | None = None
) -> DatasetCard:
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
    baselines = load_baselines(result.version)

    card = DatasetCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        description=DESCRIPTION,
        version=result.version,
        release_notes=getattr(module, "RELEASE_NOTES", {}),
        repo_id=repo_id or "<user>/jax-stablehlo-pairs",
        columns=[(name, feature_type(feat), meaning) for name, (feat, meaning) in COLUMNS.items()],
        configs=result.configs,
        views=result.views,
        view_stats=measure_views(result),
        view_kinds=VIEWS,
        view_columns=VIEW_COLUMNS,
        tokenizer=tokenizer_version(),
        budgets=BUDGETS,
        max_tokens=result.max_tokens,
        stats=stats,
        focus=focus,
        plots=PLOTS,
        resample=resample,
        total_rows=total_rows,
        all_ops=all_ops,
        held_out_share=f"{HELD_OUT_SHARE:.0%}",
        platforms=sorted({parse_lowering(t).platform for s in stats.values() for t in s["lowerings"]}),
        model_categories=MODEL_CATEGORIES,
        baselines=baselines,
        diversity=load_diversity(result.version),
        costs=load_costs(result.version),
        provenance={
            "generator_versions": sorted({v[0] for v in versions}),
            "jax_versions": sorted({v[1] for v in versions}),
            "jaxlib_versions": sorted({v[2] for v in versions}),
            "library_versions": {
                lib: sorted({v for s in stats.values() for v in s["library_versions"][lib]}) for lib in MODEL_LIBRARIES
            },
            "datasets_version": version("datasets"),
            "code_fingerprint": fingerprint(),
            "seeds": sorted({sc.seed for sc in result.configs.values()}),
            "command": build_command(result, num_proc),
        },
        citation=CITATION,
    )
    card.save(result.path / "README.md")
    return card
