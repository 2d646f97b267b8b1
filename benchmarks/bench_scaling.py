"""Scaling benchmark: how close builds of every size come to what two cores can do, and what a million rows costs.

The bound. On two cores, no build can make pairs faster than twice JAX's floor rate: per pair,
``example_args()``, ``jit``, ``lower``, ``as_text()``, ``lowered.cost_analysis()`` and nothing
else (``bench_throughput``'s (b)). For each config (``--configs``, default ``balanced`` and
``models``) and each size (``--sizes``, total rows, default about 300, 2,000 and 20,000: a tenth
of them in validation and as many in test... exactly ``sizes_for``), the bench runs:

- ``load_dataset(jax_stablehlo_pairs.py, config, num_proc=2)`` in a fresh interpreter with its
  own HF cache, the builder's own shard sizes (what users build);
- ``num_proc=1`` the same way, at sizes up to ``--np1-up-to`` (2,000: a 20,000-row build on one
  core takes hours and the ratio does not change with size), in ABBA order with ``--rounds``;
- the Ray runner (``generator.tools.distributed.generate_with_ray``) on a local cluster of two
  nodes of one CPU each (``generator.tools.localcluster``), at the sizes of ``--ray-sizes``;
- the floor, in this process, on the first rows of every shard of the same build's plan, at
  least ``--floor-programs`` rows in all (every row of a small build; ``first_rows``: whole
  shards are not a fair sample), half of them before the builds and half after (the machine's
  speed drifts): each IR the floor makes must equal the row's (so it lowers the very programs
  the builds made), and its rate is pairs over seconds.

Each build's share of the bound is its pairs/second over twice the floor's; the targets (every
core busy, at every size): ``num_proc=2`` at least 0.8 at about 300 rows and 0.9 from 2,000 up, 1.8 times ``num_proc=1``, the Ray runner at least 0.85. Every build must make the
same rows (the ids' digest), and the Ray build's Parquet gives bytes per row.

Beside the checks, the table tells scheduling from per-row work: ``pipeline/floor`` is the
in-process pipeline's cost per pair over the floor's (executing the source, drawing, token
counts and building the row, which no schedule wins back: a share of two floors is at most its
inverse), ``of two pipelines`` is ``num_proc=2``'s rate over twice the pipeline's (its parallel
efficiency), and ``cores busy`` the CPU-seconds of its process tree over its wall seconds.

What a million rows costs (``cost_table``): per config, from its largest ``num_proc=2`` build,
pairs/second and IR tokens/second per core (half the build's rate), bytes per row (Parquet, the
files the Hub gets: written from the build after timing, or the Ray build's own), and from those,
core-hours and gigabytes per million rows and the hours on 64 and 512 cores.

Time: on two free cores the defaults take about three hours (the two 20,000-row builds about
85 minutes, the 20,000-row Ray build of ``balanced`` about 25; ``--sizes 300,2000`` about 40).
Usage: ``python benchmarks/bench_scaling.py [--configs balanced,models] [--sizes 300,2000,20000]
[--np1-up-to 2000] [--ray-sizes balanced=20000] [--floor-programs 600] [--rounds 1]`` (or
``make bench-scaling``; env ``SCALING_CONFIGS``, ``SCALING_SIZES``, ``SCALING_RAY_SIZES``).
Writes ``benchmarks/results/scaling-<time>.json`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_throughput import (  # noqa: E402
    ROOT,
    SCRIPT,
    InProcess,
    bench_config,
    first_rows,
    ids_digest,
    machine_info,
    run_child,
    scaling_order,
    select_configs,
)

DEFAULT_CONFIGS = ("balanced", "models")
DEFAULT_SIZES = (300, 2000, 20000)
TARGETS = {
    "share_small": 0.8,
    "share": 0.9,
    "small_below": 2000,
    "np2_over_np1": 1.8,
    "ray_share": 0.85,
    # the cost table's rate is num_proc=2's; a Ray build of the same rows backs it within this
    "ray_vs_np2": 0.1,
}
CORES = (64, 512)


def sizes_for(total: int) -> dict[str, int]:
    """Train, validation and test rows of a build of about ``total`` rows (a twelfth each held out)."""
    held_out = max(1, total // 12)
    return {"train_size": total - 2 * held_out, "validation_size": held_out, "test_size": held_out}


def plan_for(config, total: int, seed: int) -> list:
    """The shards of ``config``'s build of ``total`` rows, as the builder plans them (its own shard sizes)."""
    from generator.core.config import BuildOptions

    options = BuildOptions(categories=config.categories, mixture=config.mixture, seed=seed, **sizes_for(total))
    return [task for tasks in options.shard_plan().values() for task in tasks]


# ---------------------------------------------------------------- builds, each in a fresh interpreter


def _build_child(request: dict) -> None:
    """Runs in a fresh interpreter: one ``load_dataset`` build; prints a JSON line."""
    from datasets import load_dataset

    kwargs = {"categories": tuple(request["categories"])} if request["categories"] else {}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = load_dataset(
            str(SCRIPT),
            request["config"],
            trust_remote_code=True,
            cache_dir=cache,
            seed=request["seed"],
            num_proc=request["num_proc"] if request["num_proc"] > 1 else None,
            **sizes_for(request["total"]),
            **kwargs,
        )
        seconds = time.perf_counter() - t
        ids = [i for split in ds for i in ds[split]["id"]]
        tokens = sum(sum(ds[split]["stablehlo_tokens"]) + sum(ds[split]["python_tokens"]) for split in ds)
        ir_tokens = sum(sum(ds[split]["stablehlo_tokens"]) for split in ds)
        parquet = 0
        for split in ds:  # the files the Hub gets (after timing)
            path = Path(cache) / f"{split}.parquet"
            ds[split].to_parquet(str(path))
            parquet += path.stat().st_size
    print(
        json.dumps(
            {
                "rows": len(ids),
                "seconds": seconds,
                "ids_sha256": ids_digest(ids),
                "ids": ids,  # dropped once the floor's programs are checked against them
                "ir_tokens": ir_tokens,
                "tokens": tokens,
                "parquet_bytes": parquet,
            }
        )
    )


def _ray_child(request: dict) -> None:
    """Runs in a fresh interpreter (a Ray driver): one ``generate_with_ray`` build; prints a JSON line."""
    import pyarrow.parquet as pq

    from generator.tools.distributed import generate_with_ray

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        generate_with_ray(
            out,
            config=request["config"],
            seed=request["seed"],
            address=request["address"],
            progress=False,
            **sizes_for(request["total"]),
        )
        seconds = time.perf_counter() - t
        manifest = json.loads((Path(out) / request["config"] / "manifest.json").read_text())
        ids, parquet = [], 0
        by_split: dict[str, list] = {}
        for entry in manifest["shards"]:
            by_split.setdefault(entry["split"], []).append(entry)
        for split in ("train", "validation", "test"):  # the builder's order: split by split, shard by shard
            for entry in sorted(by_split.get(split, []), key=lambda e: e["shard_index"]):
                path = Path(out) / request["config"] / entry["file"]
                ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
                parquet += path.stat().st_size
    print(json.dumps({"rows": len(ids), "seconds": seconds, "ids_sha256": ids_digest(ids), "parquet_bytes": parquet}))


def _run_child(kind: str, request: dict, env: dict | None = None) -> dict:
    """A build in a fresh interpreter with its own HF home; with its process tree's peak RSS and CPU seconds."""
    run = run_child(Path(__file__), [f"--{kind}-child", json.dumps(request)], f"{kind} build {request}", env)
    result = run.result
    result["pairs_per_second"] = result["rows"] / result["seconds"]
    result["cpu_seconds"] = run.cpu_seconds
    result["peak_rss_mb"] = max(run.memory.peaks.values(), default=None)
    return result


def build(config, total: int, num_proc: int, seed: int) -> dict:
    print(f"  load_dataset {config.label} {total} rows num_proc={num_proc} ...", flush=True)
    request = {"config": config.name, "categories": [], "total": total, "num_proc": num_proc, "seed": seed}
    return _run_child("build", request)


def ray_build(config, total: int, seed: int, cluster) -> dict:
    print(f"  generate_with_ray {config.label} {total} rows on {cluster.workers + 1} nodes ...", flush=True)
    request = {"config": config.name, "total": total, "seed": seed, "address": cluster.address}
    return _run_child("ray", request, env=cluster.driver_env)


# ---------------------------------------------------------------- the floor


class Floor:
    """JAX's floor rate on the first rows of every shard of the build's own plan (at least
    ``programs`` rows), lowered in two halves: one before the builds and one after, so that a
    drift of the machine's speed during the builds weighs on the floor as on them (this
    machine's speed varies by a fifth from one quarter of an hour to the next)."""

    def __init__(self, config, total: int, seed: int, programs: int):
        self.tasks = first_rows(plan_for(config, total, seed), programs)
        self.total = total
        # the shards before ``middle`` hold about half the rows (train's shards come first and are larger)
        rows, held = sum(t.num_rows for t in self.tasks), 0
        self.middle = next((i for i, t in enumerate(self.tasks) if (held := held + t.num_rows) * 2 >= rows), 0) + 1
        self.inproc = InProcess(self.tasks, seed + 1, config, methods=("floor",))

    def run(self, half: int) -> None:
        """Lower the shards holding the first half of the rows (``half=1``) or the rest (``half=2``)."""
        rows = sum(t.num_rows for t in self.tasks)
        print(f"  floor on {rows} of {self.total} programs, half {half} ...", flush=True)
        self.inproc.run_until(self.middle if half == 1 else len(self.tasks))

    def result(self) -> dict:
        self.inproc.close()
        result = self.inproc.result()
        return {
            "programs": result["method_programs"]["floor"],
            "seconds": result["seconds"]["floor"],
            "pairs_per_second": result["pairs_per_second"]["floor"],
            "pipeline_pairs_per_second": result["pairs_per_second"]["pipeline"],
            "ids": self.inproc.ids,
        }


# ---------------------------------------------------------------- report


def share_target(total: int) -> float:
    return TARGETS["share_small"] if total < TARGETS["small_below"] else TARGETS["share"]


def summarize(entry: dict) -> dict:
    """Shares of the two-core bound and the checks of one (config, size)."""
    bound = 2 * entry["floor"]["pairs_per_second"]
    out: dict[str, Any] = {"two_core_bound": bound, "checks": {}}
    # Reported beside the checks, to tell scheduling from per-row work: the in-process pipeline's
    # cost per pair over the floor's (what no schedule can win back), num_proc=2's rate over two
    # pipelines' (its parallel efficiency) and the cores its process tree kept busy.
    pipeline = entry["floor"].get("pipeline_pairs_per_second")
    if pipeline:
        out["pipeline_over_floor"] = entry["floor"]["pairs_per_second"] / pipeline
    np2 = entry["builds"].get("np2")
    if np2:
        out["np2_share"] = np2["pairs_per_second"] / bound
        if pipeline:
            out["np2_over_two_pipelines"] = np2["pairs_per_second"] / (2 * pipeline)
        if np2.get("cpu_seconds"):
            out["np2_cores_busy"] = np2["cpu_seconds"] / np2["seconds"]
        out["checks"][f"num_proc=2 >= {share_target(entry['total']):g} of two floors"] = out[
            "np2_share"
        ] >= share_target(entry["total"])
    np1 = entry["builds"].get("np1")
    if np1 and np2:
        out["np2_over_np1"] = np2["pairs_per_second"] / np1["pairs_per_second"]
        out["checks"][f"num_proc=2 >= {TARGETS['np2_over_np1']:g}x num_proc=1"] = (
            out["np2_over_np1"] >= TARGETS["np2_over_np1"]
        )
    ray = entry["builds"].get("ray")
    if ray:
        out["ray_share"] = ray["pairs_per_second"] / bound
        out["checks"][f"Ray >= {TARGETS['ray_share']:g} of two floors"] = out["ray_share"] >= TARGETS["ray_share"]
        if np2:
            out["ray_over_np2"] = ray["pairs_per_second"] / np2["pairs_per_second"]
            out["checks"][f"Ray within {TARGETS['ray_vs_np2']:.0%} of num_proc=2"] = (
                abs(out["ray_over_np2"] - 1) <= TARGETS["ray_vs_np2"]
            )
    return out


def render_table(sections: dict[str, list[dict]]) -> str:
    head = (
        "| config | rows | floor pairs/s (programs) | pipeline/floor | num_proc=2 pairs/s | share | of two pipelines "
        "| cores busy | num_proc=1 | np2/np1 | Ray pairs/s | Ray share |"
    )
    lines = [head, "|" + "---|" * 12]

    def num(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    for name, entries in sections.items():
        for e in entries:
            s, b = e["summary"], e["builds"]
            lines.append(
                f"| {name} | {e['rows']:,} | {num(e['floor']['pairs_per_second'], 1)} ({e['floor']['programs']}) "
                f"| {num(s.get('pipeline_over_floor'))} "
                f"| {num(b.get('np2', {}).get('pairs_per_second'), 1)} | {num(s.get('np2_share'))} "
                f"| {num(s.get('np2_over_two_pipelines'))} | {num(s.get('np2_cores_busy'))} "
                f"| {num(b.get('np1', {}).get('pairs_per_second'), 1)} | {num(s.get('np2_over_np1'))} "
                f"| {num(b.get('ray', {}).get('pairs_per_second'), 1)} | {num(s.get('ray_share'))} |"
            )
    failed = [
        f"{n} {e['rows']:,}: {c}"
        for n, es in sections.items()
        for e in es
        for c, ok in e["summary"]["checks"].items()
        if not ok
    ]
    lines.append("")
    lines.append("all targets met" if not failed else "missed: " + "; ".join(failed))
    return "\n".join(lines)


def cost_table(sections: dict[str, list[dict]]) -> tuple[list[dict], str]:
    """What a million rows costs, per config, from its largest ``num_proc=2`` build."""
    rows, lines = (
        [],
        [
            "| config | pairs/s per core | IR tokens/s per core | bytes per row | core-hours per million rows "
            "| GB per million rows | hours on 64 cores | hours on 512 cores | measured on |",
            "|" + "---|" * 9,
        ],
    )
    for name, entries in sections.items():
        measured = [e for e in entries if "np2" in e["builds"]]
        if not measured:
            continue
        e = max(measured, key=lambda x: x["rows"])
        np2 = e["builds"]["np2"]
        per_core = np2["pairs_per_second"] / 2
        tokens_per_core = np2["ir_tokens"] / np2["seconds"] / 2
        parquet = e["builds"].get("ray", np2)["parquet_bytes"]
        bytes_per_row = parquet / e["builds"].get("ray", np2)["rows"]
        core_hours = 1e6 / per_core / 3600
        row = {
            "config": name,
            "measured_rows": e["rows"],
            "pairs_per_second_per_core": per_core,
            "ir_tokens_per_second_per_core": tokens_per_core,
            "bytes_per_row": bytes_per_row,
            "core_hours_per_million": core_hours,
            "gb_per_million": bytes_per_row * 1e6 / 1e9,
            **{f"hours_on_{c}_cores": core_hours / c for c in CORES},
        }
        if "ray" in e["builds"]:  # the same rows built by the Ray runner: what backs the rate on a cluster
            row["ray_pairs_per_second_per_core"] = e["builds"]["ray"]["pairs_per_second"] / 2
        rows.append(row)
        lines.append(
            f"| {name} | {per_core:.2f} | {tokens_per_core:,.0f} | {bytes_per_row:,.0f} | {core_hours:.1f} "
            f"| {row['gb_per_million']:.1f} | {row['hours_on_64_cores']:.2f} | {row['hours_on_512_cores']:.2f} "
            f"| {e['rows']:,} rows, num_proc=2 |"
        )
    return rows, "\n".join(lines)


# ---------------------------------------------------------------- the run


def parse_sizes(text: str, configs: list[str]) -> dict[str, list[int]]:
    """Sizes per config from ``N,N,...`` (every config) or ``CONFIG=N;CONFIG=N,N``."""
    text = text.strip()

    def numbers(ns: str) -> list[int]:
        try:
            return [int(n) for n in ns.split(",") if n.strip()]
        except ValueError:
            raise ValueError(
                f"bad sizes {text!r}: give N,N,... (every config) or CONFIG=N,N;CONFIG=N (configs apart by ';'), "
                f"configs: {', '.join(configs)}"
            ) from None

    if not text:
        return {c: [] for c in configs}
    if "=" not in text:
        sizes = numbers(text)
        return {c: sizes for c in configs}
    out: dict[str, list[int]] = {c: [] for c in configs}
    for item in filter(None, (i.strip() for i in text.split(";"))):
        name, _, ns = item.partition("=")
        if name.strip() not in out:
            raise ValueError(
                f"sizes name config {name.strip()!r}, which the run does not measure ({', '.join(configs)})"
            )
        out[name.strip()] = numbers(ns)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=os.environ.get("SCALING_CONFIGS", ",".join(DEFAULT_CONFIGS)))
    p.add_argument(
        "--sizes",
        default=os.environ.get("SCALING_SIZES", ",".join(map(str, DEFAULT_SIZES))),
        help="total rows of each build: N,N,... (every config) or CONFIG=N,N;CONFIG=N",
    )
    p.add_argument("--np1-up-to", type=int, default=2000, help="also build with num_proc=1 at sizes up to this")
    p.add_argument(
        "--ray-sizes",
        default=os.environ.get("SCALING_RAY_SIZES", "balanced=20000"),
        help="Ray runner builds on a local two-node cluster: N,... or CONFIG=N,N;... ('' for none)",
    )
    p.add_argument("--floor-programs", type=int, default=600, help="programs the floor is measured on per build")
    p.add_argument(
        "--rounds", type=int, default=1, help="num_proc=2/1 builds in ABBA order per size (np1 where it runs)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--card-json",
        type=Path,
        default=None,
        help="also write the cost table for the card here (dataset_card/costs.json is on the card of this version)",
    )
    p.add_argument(
        "--from-results",
        type=Path,
        default=None,
        help="measure nothing: re-render a saved run's JSON (summaries, tables, --card-json) with this code",
    )
    args = p.parse_args(argv)
    try:
        args.config_names = select_configs(args.configs)
        args.size_map = parse_sizes(args.sizes, args.config_names)
        args.ray_map = parse_sizes(args.ray_sizes, args.config_names)
    except ValueError as e:
        p.error(str(e))
    return args


def pool(builds: list[dict]) -> dict:
    """Several rounds of one kind of build as one: total rows over total seconds."""
    pooled = dict(builds[-1])
    for key in ("seconds", "rows", "ir_tokens", "cpu_seconds"):
        pooled[key] = sum(b.get(key, 0) for b in builds)
    pooled["pairs_per_second"] = pooled["rows"] / pooled["seconds"]
    pooled["rounds"] = len(builds)
    return pooled


def measure(config, total: int, args: argparse.Namespace, cluster_of) -> dict:
    """One (config, size): its builds, checked to make the same rows, and the floor on their programs."""
    name = config.name
    runs: dict[str, list[dict]] = {"np2": [], "np1": [], "ray": []}
    floor = Floor(config, total, args.seed, args.floor_programs)
    floor.run(half=1)
    if total in args.size_map[name]:
        for key in scaling_order(max(1, args.rounds)):
            if key == "np2" or total <= args.np1_up_to:
                runs[key].append(build(config, total, 2 if key == "np2" else 1, args.seed))
    if total in args.ray_map[name]:
        runs["ray"].append(ray_build(config, total, args.seed, cluster_of()))
    done = [b for bs in runs.values() for b in bs]
    if len({b["ids_sha256"] for b in done}) > 1:
        raise AssertionError(
            f"{name} {total}: the builds made different rows ({sorted({b['ids_sha256'] for b in done})})"
        )
    floor.run(half=2)
    lowered = floor.result()
    built = next((b["ids"] for b in done if "ids" in b), None)
    if built is not None and not set(lowered.pop("ids")) <= set(built):
        raise AssertionError(f"{name} {total}: the floor lowered programs the builds did not make")
    for b in done:
        b.pop("ids", None)
    entry = {"total": total, "rows": done[0]["rows"], "floor": lowered}
    entry["builds"] = {key: pool(bs) for key, bs in runs.items() if bs}
    entry["summary"] = summarize(entry)
    return entry


def run(args: argparse.Namespace) -> dict[str, list[dict]]:
    from generator.tools.localcluster import Cluster

    clusters = []

    def cluster_of():  # started for the first Ray build: two nodes of one CPU each, the two cores
        if not clusters:
            clusters.append(Cluster(workers=1))
            clusters[0].start()
        return clusters[0]

    sections: dict[str, list[dict]] = {}
    try:
        for name in args.config_names:
            sections[name] = []
            for total in sorted(set(args.size_map[name]) | set(args.ray_map[name])):
                print(f"\n== {name}: {total:,} rows ==", flush=True)
                sections[name].append(measure(bench_config(name), total, args, cluster_of))
    finally:
        for cluster in clusters:
            cluster.stop()
    return sections


def measurement_command(argv: list[str]) -> str:
    """The command that measured, as a shell runs it, without where it wrote its results (the
    card shows it: a path of the measuring machine says nothing to a reader)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--output", "--card-json"):
            skip = True
        elif not arg.startswith(("--output=", "--card-json=")):
            kept.append(arg)
    return shlex.join(["python", "benchmarks/bench_scaling.py", *kept])


def card_costs(result: dict) -> dict:
    """The cost table for the card (``dataset_card/costs.json``) from a run's result."""
    import generator

    machine = result["machine"]
    cpu = machine.get("processor") or platform.processor() or platform.machine()
    return {
        "version": generator.__version__,
        "measured_on": time.strftime("%Y-%m-%d", time.strptime(result["started"], "%Y%m%dT%H%M%S")),
        "machine": f"{machine['cpus']} cores ({cpu}), jax {machine['jax']}",
        "command": result["command"],
        "costs": result["costs"],
    }


def rerender(result: dict) -> dict:
    """A saved run's result with its summaries, tables and costs made again by this bench's code
    (its measurements, command and machine kept): for a check or a cost column added since."""
    sections = result["sections"]
    for entries in sections.values():
        for e in entries:
            e["summary"] = summarize(e)
    costs, cost_text = cost_table(sections)
    return {**result, "targets": TARGETS, "costs": costs, "table": render_table(sections), "cost_table": cost_text}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--build-child"], ["--ray-child"]):
        (_build_child if argv[0] == "--build-child" else _ray_child)(json.loads(argv[1]))
        return 0
    args = parse_args(argv)
    if args.from_results:
        result = rerender(json.loads(args.from_results.read_text()))
    else:
        started = time.strftime("%Y%m%dT%H%M%S")
        load_before = os.getloadavg()
        sections = run(args)
        costs, cost_text = cost_table(sections)
        result = {
            "started": started,
            "command": measurement_command(argv),
            "machine": machine_info(load_before),
            "targets": TARGETS,
            "sections": sections,
            "costs": costs,
            "table": render_table(sections),
            "cost_table": cost_text,
        }
    print("\n" + result["table"] + "\n\nWhat a million rows costs:\n" + result["cost_table"], flush=True)
    if args.output or not args.from_results:  # a re-render is written only where asked
        out = args.output or ROOT / "benchmarks" / "results" / f"scaling-{result['started']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if args.card_json:
        args.card_json.write_text(json.dumps(card_costs(result), indent=1) + "\n")
    sections = result["sections"]
    failed = [c for es in sections.values() for e in es for c, ok in e["summary"]["checks"].items() if not ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
