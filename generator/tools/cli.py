"""Command line: ``python -m generator {generate,build,validate,stats,stage,push,evaluate}``."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.categories import CATEGORIES
from ..core.plan import PLATFORMS, check_platforms
from .io import DEFAULT_OUTPUT_DIR

DEFAULT_BATCH_SIZE = 1000


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0 (sizes, seeds, counts that may be zero)."""
    return _int_at_least(text, 0, "a non-negative integer")


def _at_least_one(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def _platforms(text: str) -> tuple[str, ...]:
    """An argparse ``type``: platforms separated by commas (``cpu,tpu``)."""
    try:
        return check_platforms(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _category(text: str) -> str:
    if text not in CATEGORIES:
        raise argparse.ArgumentTypeError(f"unknown category {text!r}; valid categories: {', '.join(CATEGORIES)}")
    return text


# What an earlier ``generate`` wrote in a folder: its batch files (and this tool's older single
# ``train.jsonl``/``train.parquet``), and the hidden temporaries of a run killed mid-write.
_EARLIER_RUN = re.compile(r"train(-\d{5,}-of-\d{5,})?\.(jsonl|parquet)|\.train.*\.(jsonl|parquet)\..+\.tmp")


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate ``--count`` rows into ``--output-dir``, one file per ``--batch-size`` rows as each fills.

    Each batch file is written atomically as soon as its rows exist, so memory holds one batch
    and an interrupted run leaves its complete batches (``train-00000-of-0000N.jsonl`` ...) and
    no partial file. The rows are the same whatever the batch size. Files an earlier run wrote
    there are removed when this run's first batch is ready, so runs never mix.
    """
    import math

    from tqdm.auto import tqdm

    from ..core.plan import plan_shards
    from ..core.rows import ShardStats
    from ..runtime.shards import generate_shard
    from .io import batch_file_name, ensure_writable_dir, write_jsonl, write_parquet

    if args.count == 0:
        raise ValueError("--count must be at least 1, got 0")
    categories = (args.category,) if args.category else CATEGORIES
    plan = plan_shards(  # one process streams the shards in order: consecutive rows, few shards
        train_size=args.count,
        validation_size=0,
        seed=args.seed,
        categories=categories,
        mixture="balanced" if (args.balanced or args.category) else "mixed",
        min_shards_per_split=1,
    )
    out_dir = ensure_writable_dir(args.output_dir)  # fail before any work
    write = write_jsonl if args.format == "jsonl" else write_parquet
    num_files = math.ceil(args.count / args.batch_size)
    written: list[Path] = []
    batch: list[dict] = []
    rows_written = 0

    def flush() -> None:
        nonlocal rows_written
        if not written:
            earlier = sorted(f for f in out_dir.iterdir() if _EARLIER_RUN.fullmatch(f.name) and f.is_file())
            for f in earlier:
                f.unlink()
            if earlier:
                print(f"removed {len(earlier)} files of an earlier run from {out_dir}", file=sys.stderr)
        written.append(write(batch, out_dir / batch_file_name("train", len(written), num_files, args.format)))
        rows_written += len(batch)
        batch.clear()

    stats = ShardStats()
    with tqdm(total=args.count, unit="pair", desc="generating") as bar:
        for task in plan["train"]:
            for row in generate_shard(task, stats):
                batch.append(row)
                bar.update()
                if len(batch) == args.batch_size:
                    flush()
        if batch:
            flush()
    names = written[0].name if len(written) == 1 else f"{written[0].name} .. {written[-1].name}"
    print(f"wrote {rows_written} rows in {len(written)} files to {out_dir}: {names}")
    print(json.dumps({k: v for k, v in stats.as_dict().items() if k != "failure_examples"}))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a folder/file, or (``--build``) a config this tool builds right now, which it trusts."""
    from .io import ensure_writable_dir, read_configs, write_json
    from .validate import check_view_rows, validate_dataset, validate_rows

    report_json, view_problems = None, 0
    if args.report_json:
        report_json = Path(args.report_json)
        ensure_writable_dir(report_json.parent)  # fail before any work
    options = dict(
        structure_only=args.structure_only,
        sample=None if args.all else args.sample,
        iree=args.iree,
        time_limit=args.time_limit,
    )
    if args.build:
        if args.path is not None:
            raise ValueError("give either a PATH or --build, not both")
        import datasets

        kwargs = _build_kwargs(args)
        ds = datasets.load_dataset(args.script, args.config, trust_remote_code=True, num_proc=args.num_proc, **kwargs)
        reports = [validate_dataset(ds, trust_code=True, config=args.config, progress=_progress(), **options)]
    else:
        path = args.path
        if path is None:  # the folder ``generate`` writes by default
            path = DEFAULT_OUTPUT_DIR
            if not Path(path).exists():
                raise ValueError(
                    f"no PATH given and the default folder {path!r} does not exist (in {Path.cwd()}): "
                    "make it with `python -m generator generate --count N`, or pass a PATH or --build"
                )
        configs = read_configs(path)
        views = staged_views(configs)
        reports = [
            validate_rows(rows, trust_code=args.trust_code, config=config, progress=_progress(), **options)
            for config, rows in sorted(configs.items())
            if config not in views
        ]
        for name, (pairs, view) in sorted(views.items()):  # a staged folder's task views
            problems = check_view_rows(configs[name], configs[pairs], view)
            n = sum(len(rows) for rows in configs[name].values())
            print(f"view {name}: {n} rows; each is its pair's {view} row: {'FAILED' if problems else 'ok'}")
            for problem in problems[:20]:
                print(f"  {problem}")
            view_problems += len(problems)
    print("\n\n".join(r.format() for r in reports))
    if report_json is not None:
        write_json([r.to_json() for r in reports], report_json)
    if any(r.refused for r in reports):
        return 3
    return 0 if all(r.ok for r in reports) and not view_problems else 1


def staged_views(configs: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The task views among a staged folder's configs: ``<pairs config>-<view>`` -> (pairs config, view)."""
    from ..core.views import VIEWS

    out = {}
    for name in configs:
        pairs, _, view = name.rpartition("-")
        if view in VIEWS and pairs in configs:
            out[name] = (pairs, view)
    return out


def _progress():
    """A progress callback that draws a bar on a terminal and stays silent otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="row", desc="validating")
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def cmd_stats(args: argparse.Namespace) -> int:
    from .stats import format_summary, generator_summary, summarize

    if args.diversity:
        from tqdm.auto import tqdm

        from ..core.models import MODEL_CATEGORIES
        from .diversity import format_diversity, model_diversity

        if args.path is not None:
            raise ValueError("--diversity draws programs itself: give no PATH")
        with tqdm(total=args.draws * len(MODEL_CATEGORIES), desc="drawing model programs", unit="program") as bar:
            report = model_diversity(draws=args.draws, progress=bar.update)
        print(format_diversity(report))
        if args.report_json is not None:  # the card shows it for this version (dataset_card/diversity.json)
            from ..version import __version__

            args.report_json.write_text(json.dumps({"version": __version__, "categories": report}, indent=1) + "\n")
        return 0
    if args.path is None:
        print(json.dumps(generator_summary(), indent=2))
        return 0
    from .io import read_rows

    print(format_summary(summarize(read_rows(args.path))))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build a config through the dataset builder (as ``load_dataset`` users do) and summarize it."""
    import time

    import datasets

    from .stats import format_summary, summarize

    kwargs = _build_kwargs(args)
    start = time.perf_counter()
    ds = datasets.load_dataset(args.script, args.config, trust_remote_code=True, num_proc=args.num_proc, **kwargs)
    elapsed = time.perf_counter() - start
    unit = "pairs"
    if "prompt_tokens" in ds[next(iter(ds))].column_names:  # a fine-tuning view: its rows and tokens
        rows, unit = sum(ds.num_rows.values()), "rows"
        print(f"view {kwargs['view']}: {rows} rows (" + ", ".join(f"{s}: {n}" for s, n in ds.num_rows.items()) + ")")
        for split in ds:
            tokens = [p + c for p, c in zip(ds[split]["prompt_tokens"], ds[split]["completion_tokens"])]
            print(f"{split}: {sum(tokens):,} tokens, longest row {max(tokens, default=0):,}")
    else:
        summary = summarize({split: ds[split] for split in ds})
        rows = summary["rows"]
        print(format_summary(summary))
    print(f"rate: {rows / elapsed:.1f} {unit}/s ({rows} rows in {elapsed:.1f} s, num_proc={args.num_proc})")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    """Measure, per staged config, how many held-out rows share a sequence with train (``tools.leakage``)."""
    from . import leakage

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValueError(f"no staged folder at {str(folder)!r}")
    configs = args.configs or sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("train-*.parquet")))
    if not configs:
        raise ValueError(f"{str(folder)!r} holds no staged config (<config>/train-*.parquet)")
    reports = {}
    for name in configs:
        reports[name] = leakage.staged_leakage(folder, name)
        print(f"== {name}: {reports[name]['train_rows']} train rows")
        print(leakage.format_table(reports[name]))
    if args.report_json:
        args.report_json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0


def _stage(args: argparse.Namespace, repo_id: str | None = None):
    from . import hub

    result = hub.stage(
        args.output_dir,
        args.configs,
        train_size=args.train_size,
        validation_size=args.validation_size,
        test_size=args.test_size,
        seed=args.seed,
        num_proc=args.num_proc,
        script=args.script,
        repo_id=repo_id,
        views=None if args.views is None else [v for v in args.views if v != "none"],
        max_tokens=args.max_tokens,
        with_optimized_hlo=args.with_optimized_hlo,
        platforms=args.platforms,
    )
    for name, config in result.hub_configs().items():
        print(f"staged {name}: " + ", ".join(f"{split} {len(d)} rows" for split, d in config.row_digests.items()))
    print(f"staged version {result.version} in {result.path}")
    if args.check_with:
        problems = hub.check_viewer(result, args.check_with)
        for problem in problems:
            print(f"viewer check: {problem}", file=sys.stderr)
        if problems:
            raise ValueError(f"the staged folder does not load as the builder's rows under {args.check_with}")
        print(f"viewer check: every config loads from {result.path} with plain datasets and equals the builder's rows")
    return result


def cmd_stage(args: argparse.Namespace) -> int:
    """Build configs through the builder into a Hub-ready folder (Parquet, card, plots)."""
    _stage(args)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Stage, then upload to the Hub and tag the commit with the dataset version."""
    from . import hub

    hub.check_repo_id(args.repo)  # before any work
    token = hub.resolve_token()  # never printed
    result = _stage(args, repo_id=args.repo)
    commit = hub.upload(result.path, args.repo, version=result.version, token=token, private=args.private)
    tag = hub.version_tag(result.version)
    print(f"pushed {', '.join(result.configs)} to {args.repo}, tagged {tag}: {commit.commit_url}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score predictions (or a baseline's) for a task view against a split of a staged folder.

    Exit status: 0 scored, 2 bad input, 3 refused to run predicted Python (reverse without
    ``--execute-predictions``).
    """
    from .evaluate import Limits, RefusedError, baseline_predictions, evaluate, format_report, write_predictions
    from .io import ensure_writable_dir, write_json

    if (args.predictions is None) == (args.baseline is None):
        raise ValueError("give either --predictions FILE or --baseline NAME")
    if args.task == "reverse" and not args.execute_predictions:
        print(
            "REFUSED: the reverse task runs predicted Python; pass --execute-predictions to run it in limited "
            "worker processes (time, CPU and memory limits; not a security sandbox)",
            file=sys.stderr,
        )
        return 3
    for out in (args.report_json, args.write_predictions):
        if out:
            ensure_writable_dir(Path(out).parent)  # fail before any work
    limits = Limits(time_limit=args.time_limit, cpu_seconds=2 * args.time_limit, memory_bytes=args.memory_mb << 20)
    predictions = args.predictions
    if args.baseline is not None:
        predictions = baseline_predictions(
            args.baseline, args.task, args.staged, args.config, args.split, train_split=args.train_split
        )
        if args.write_predictions:
            write_predictions(predictions, args.write_predictions)
    try:
        report = evaluate(
            args.task,
            predictions,
            args.staged,
            args.config,
            args.split,
            execute_predictions=args.execute_predictions,
            workers=args.workers,
            limits=limits,
            progress=sys.stderr.isatty(),
        )
    except RefusedError as e:
        print(f"REFUSED: {e}", file=sys.stderr)
        return 3
    if args.baseline is not None:
        report["baseline"] = args.baseline
    print(format_report(report))
    if args.report_json:
        write_json(report, args.report_json)
    return 0


def _add_build_options(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """``--<field>`` for every field of the builder's config (``core.config.BuildOptions``), with
    its meaning and valid values; a field not given keeps the config's own value."""
    import dataclasses
    import typing

    from ..core.config import BuildOptions

    hints = typing.get_type_hints(BuildOptions)
    group = parser.add_argument_group("builder config fields (default: the config's own)")
    for f in dataclasses.fields(BuildOptions):
        if f.name in exclude:
            continue
        flag, meta, hint = "--" + f.name.replace("_", "-"), f.metadata, hints[f.name]
        choices = meta.get("choices")
        text = meta["help"] + (f"; one of: {', '.join(map(str, choices))}" if choices else "")
        if hint is bool:
            group.add_argument(flag, action="store_true", default=None, help=text)
        elif typing.get_origin(hint) is tuple:
            group.add_argument(flag, nargs="+", choices=choices, metavar=f.name.upper(), help=text)
        elif choices:
            group.add_argument(flag, choices=choices, help=text)
        else:
            least = meta.get("minimum", 0)
            kind = "a positive integer" if least else "a non-negative integer"
            group.add_argument(flag, type=lambda t, least=least, kind=kind: _int_at_least(t, least, kind), help=text)


def _build_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The builder config fields given on the command line (``_add_build_options``)."""
    import dataclasses

    from ..core.config import BuildOptions

    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(BuildOptions)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m generator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate",
        help="generate pairs into a folder (JSONL or Parquet), one file per batch",
        description="Writes train-00000-of-0000N.<format>, ... into --output-dir, each file atomically as its "
        "batch fills; an earlier run's files there are replaced.",
    )
    g.add_argument("--count", type=_non_negative_int, required=True, help="rows to generate")
    g.add_argument(
        "--batch-size",
        type=_at_least_one,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per file, written as each batch completes (default {DEFAULT_BATCH_SIZE})",
    )
    mix = g.add_mutually_exclusive_group()
    mix.add_argument("--balanced", action="store_true", help="equal share per category (default: drawn at random)")
    mix.add_argument("--category", type=_category, help=f"one of: {', '.join(CATEGORIES)}")
    g.add_argument("--seed", type=_non_negative_int, default=0)
    g.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help=f"default: {DEFAULT_OUTPUT_DIR}")
    g.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser(
        "validate",
        help="check a built dataset: structure, reproduction, execution (XLA, optionally IREE)",
        description="Exit status: 0 all checks pass, 1 a check failed, 2 bad input, 3 refused to run untrusted code.",
    )
    v.add_argument(
        "path",
        nargs="?",
        help=f"a .jsonl/.parquet file, a folder of them, or a staged Hub folder (default: {DEFAULT_OUTPUT_DIR})",
    )
    v.add_argument("--trust-code", action="store_true", help="allow running the rows' python_source (needed for PATH)")
    v.add_argument("--structure-only", action="store_true", help="check structure only; run no code")
    v.add_argument("--sample", type=_non_negative_int, default=50, help="rows to execute with XLA/IREE (default 50)")
    v.add_argument("--all", action="store_true", help="execute every row")
    v.add_argument("--iree", action="store_true", help="also compile and run each sampled row's IR with IREE")
    v.add_argument("--time-limit", type=float, default=60.0, help="seconds per row before it is cut off (default 60)")
    v.add_argument(
        "--report-json",
        metavar="FILE",
        help="also write the report as JSON: a list with one object per config, each row's results included",
    )
    v.add_argument(
        "--build", action="store_true", help="build --config through the builder now and validate it (trusted)"
    )
    v.add_argument("--script", default="jax_stablehlo_pairs.py", help="builder script for --build")
    v.add_argument("--config", default="balanced", help="config for --build")
    v.add_argument("--num-proc", type=_non_negative_int, default=None, help="builder processes for --build")
    _add_build_options(v, exclude=("view",))  # validate checks the pairs themselves
    v.set_defaults(func=cmd_validate)

    b = sub.add_parser("build", help="build a config through the dataset builder and print a summary")
    b.add_argument("--script", default="jax_stablehlo_pairs.py", help="path of the builder script")
    b.add_argument("--config", default="balanced")
    b.add_argument("--num-proc", type=_non_negative_int, default=None, help="builder processes")
    _add_build_options(b)
    b.set_defaults(func=cmd_build)

    lk = sub.add_parser(
        "leakage",
        help="share of held-out rows whose IR op sequence or source call sequence also occurs in train",
    )
    lk.add_argument("folder", help="a staged folder (python -m generator stage)")
    lk.add_argument("--configs", nargs="+", help="configs to measure (default: every config in the folder)")
    lk.add_argument("--report-json", type=Path, help="also write the figures as JSON here")
    lk.set_defaults(func=cmd_leakage)

    s = sub.add_parser("stats", help="statistics of a dataset, or of the op table without a path")
    s.add_argument("path", nargs="?")
    s.add_argument(
        "--diversity",
        action="store_true",
        help="draw model programs and count distinct call sequences and structures as draws grow",
    )
    s.add_argument("--draws", type=_at_least_one, default=20_000, help="with --diversity: draws per model category")
    s.add_argument(
        "--report-json",
        type=Path,
        help="with --diversity: also write the counts as JSON here (dataset_card/diversity.json is on the card)",
    )
    s.set_defaults(func=cmd_stats)

    e = sub.add_parser(
        "evaluate",
        help="score predictions for a task view (forward, reverse, cost, optimize) against a staged split",
        description='Predictions are JSONL lines {"id": ..., "prediction": ...}; several per id are samples '
        "(pass@k). Exit status: 0 scored, 2 bad input, 3 refused to run predicted Python.",
    )
    e.add_argument("--task", required=True, choices=("forward", "reverse", "cost", "optimize"))
    e.add_argument("--predictions", metavar="FILE", help="JSONL of {id, prediction}")
    e.add_argument(
        "--baseline",
        choices=("reference", "nearest", "copy"),
        help="score a baseline's answers instead: the reference itself, the nearest train row's, the prompt copied",
    )
    e.add_argument("--staged", required=True, metavar="FOLDER", help="a staged folder (python -m generator stage)")
    e.add_argument("--config", default="balanced", help="the pairs config (default balanced)")
    e.add_argument("--split", default="test", help="the split to score (default test)")
    e.add_argument("--train-split", default="train", help="where --baseline nearest looks (default train)")
    e.add_argument("--write-predictions", metavar="FILE", help="with --baseline: also write its predictions as JSONL")
    e.add_argument("--report-json", metavar="OUT", help="also write the report (every answer included) as JSON")
    e.add_argument(
        "--execute-predictions",
        action="store_true",
        help="allow running predicted Python (needed for --task reverse), in limited worker processes",
    )
    e.add_argument("--workers", type=_at_least_one, default=2, help="worker processes (default 2)")
    e.add_argument("--time-limit", type=float, default=30.0, help="wall-clock seconds per answer (default 30)")
    e.add_argument("--memory-mb", type=_at_least_one, default=4096, help="address space of a worker (default 4096)")
    e.set_defaults(func=cmd_evaluate)

    for name, func, help_text in (
        ("stage", cmd_stage, "build configs through the builder into a Hub-ready folder (Parquet, card, plots)"),
        ("push", cmd_push, "stage, upload to a Hub dataset repo and tag the dataset version"),
    ):
        h = sub.add_parser(name, help=help_text)
        if name == "push":
            h.add_argument("--repo", required=True, help="Hub dataset repo, <user>/<name>")
            h.add_argument("--private", action="store_true", help="create the repo private")
        h.add_argument("--configs", nargs="+", help="configs to stage (default: all)")
        h.add_argument("--output-dir", default="staged")
        h.add_argument("--train-size", type=_non_negative_int)
        h.add_argument("--validation-size", type=_non_negative_int)
        h.add_argument("--test-size", type=_non_negative_int, help="rows of the test split (default: as validation)")
        h.add_argument("--seed", type=_non_negative_int)
        h.add_argument("--num-proc", type=_non_negative_int, default=None)
        h.add_argument("--script", default="jax_stablehlo_pairs.py", help="path of the builder script")
        h.add_argument("--check-with", metavar="PYTHON", help="a python with the newest datasets; load as the viewer")
        h.add_argument(
            "--views",
            nargs="+",
            metavar="VIEW",
            help="task views staged beside each config as <config>-<view> (default: forward conversational reverse "
            "cost, and optimize with --with-optimized-hlo; 'none': no views)",
        )
        h.add_argument(
            "--max-tokens",
            type=_at_least_one,
            help="context budget: resample pairs whose view rows exceed this many Tekken tokens (default: none)",
        )
        h.add_argument(
            "--with-optimized-hlo", action="store_true", help="also compile every program (XLA's optimized HLO)"
        )
        h.add_argument(
            "--platforms",
            type=_platforms,
            metavar="P[,P...]",
            help=f"stage each config for these platforms ({', '.join(PLATFORMS)}), lowered without their hardware: "
            "cpu as <config>, another as <config>-<platform> beside it (default: cpu)",
        )
        h.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Builds print their progress bars and our summary; datasets' notes on how it schedules
    # work ("Setting num_proc from 2 back to 1 ...") are not the user's concern.
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
