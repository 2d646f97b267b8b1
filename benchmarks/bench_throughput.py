"""Throughput benchmark: pairs/second of four ways to make the same (source, StableHLO) pairs.

Methods, measured side by side in one run (timings on a shared machine are noisy, so the
ratios are what matter):

  a. original: per program ``jit``, ``lower``, ``compile``, ``compiled.cost_analysis()``,
     ``as_text()`` (the design this project replaced);
  b. floor: ``jit(fn).lower(*args)``, ``as_text()``, ``lowered.cost_analysis()``: the least
     JAX work that yields what a row holds;
  c. pipeline: ``generator.runtime.shards.generate_in_process`` in this process (sample, render, exec, lower, cost
     analysis, dedup, row building);
  d. builder: ``load_dataset(jax_stablehlo_pairs.py, num_proc=2)`` end to end, in a fresh
     interpreter with a temporary HF cache; also ``num_proc=1`` for the scaling ratio, and a
     larger ``num_proc=2`` build to check that per-worker memory stays flat.

All four run on the same programs: the program set is the ``balanced`` config's shard plan at
``--rows`` train rows (and a tenth of that in validation). The (d) builds build exactly it
(checked: every build's row ids equal those (c) made), and (a), (b), (c) go through it shard by
shard: the pipeline makes a shard's rows, then (a) and (b) (in alternating order) lower the
same sources, and every IR they produce must equal the row's ``stablehlo_ir``. Programs differ
a lot in cost (a 50-row shard's mean cost per row varies by about 13%), so comparing (d) with
(a) on different samples of programs would measure the samples. JAX caches the traces of the
jitted ``jax.numpy`` functions a program calls, so whichever method met a shard first would pay
for everyone: ``jax.clear_caches()`` before each method's pass over a shard gives all three the
same (cold) start. Sources are executed outside the (a)/(b) timers; (c) pays for sampling,
rendering and ``exec``.

The machine is shared and its speed drifts during a run, so every ratio compares
measurements taken around the same times: half of the (a)/(b)/(c) shards run before the (d)
builds and half after, and the ``num_proc`` builds run in ABBA order (np2, np1, np1, np2 for
two rounds); each method's rate pools its rounds (total rows over total seconds).

Usage: ``python benchmarks/bench_throughput.py [--rows N] [--programs N] [--rounds N] [--large-rows N]``
(or ``make bench``; env ``BENCH_PROGRAMS``, ``BENCH_ROWS``, ``BENCH_ROUNDS``, ``BENCH_LARGE_ROWS``). Writes
``benchmarks/results/throughput-<time>.json`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "jax_stablehlo_pairs.py"
# The categories whose rows lower with plain ``jax.jit`` (the original design's seven): (a) and
# (b) lower every program with ``jax.jit(fn).lower(*example_args())`` and check the row's IR.
CORE_CATEGORIES = ("arithmetic", "conditional", "reduction", "matrix", "elementwise", "broadcasting", "composite")
TARGETS = {
    "builder_np2_over_original": 6.0,
    "pipeline_cost_over_floor_max": 1.25,
    "np2_over_np1": 1.8,
    "peak_worker_rss_mb_max": 600,
    # "flat": in the large build, workers' RSS over its second half is within 10% of its first
    "large_build_rss_growth_max": 1.1,
}


# ---------------------------------------------------------------- memory


def _rss_mb(pid: int, field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of a process in MB from /proc (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = _children(p)
        out += kids
        todo += kids
    return out


class PeakMemory:
    """Polls a process tree: each process's peak RSS (``VmHWM``), in MB, and a timeline.

    ``timeline`` holds ``(seconds since start, largest VmRSS among the root's descendants)``
    once a second, to tell a plateau from accumulation over a long build.
    """

    def __init__(self, root_pid: int, interval: float = 0.1):
        self.root_pid, self.interval = root_pid, interval
        self.peaks: dict[int, float] = {}
        self.timeline: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = last = time.monotonic()
        while not self._stop.is_set():
            kids = _descendants(self.root_pid)
            for pid in [self.root_pid, *kids]:
                hwm = _rss_mb(pid, "VmHWM")
                if hwm is not None:
                    self.peaks[pid] = max(hwm, self.peaks.get(pid, 0.0))
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                rss = [r for r in (_rss_mb(pid, "VmRSS") for pid in kids) if r is not None]
                if rss:
                    self.timeline.append((round(last - start, 1), round(max(rss), 1)))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- (a), (b), (c)


def _original(fn, args) -> str:
    import jax

    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile()
    compiled.cost_analysis()
    return lowered.as_text()


def _floor(fn, args) -> str:
    import jax

    lowered = jax.jit(fn).lower(*args)
    text = lowered.as_text()
    lowered.cost_analysis()
    return text


def program_set(rows: int, rows_per_shard: int, seed: int, categories: tuple[str, ...]) -> list:
    """The shards of the (d) builds (the ``balanced`` config at ``rows`` train rows and a tenth of
    that in validation): (a), (b) and (c) run on these same programs."""
    from generator.core.plan import plan_shards
    from generator.core.policy import policy_for

    plan = plan_shards(
        train_size=rows,
        validation_size=validation_rows(rows),
        seed=seed,
        categories=categories,
        mixture="balanced",
        rows_per_shard=rows_per_shard,
        policy=policy_for("medium"),
    )
    return [task for tasks in plan.values() for task in tasks]


def validation_rows(rows: int) -> int:
    return max(2, rows // 10)


def spread(tasks: list, programs: int) -> list:
    """Evenly spaced shards of ``tasks`` holding at least ``programs`` rows (all of them if 0)."""
    if not programs or programs >= sum(t.num_rows for t in tasks):
        return tasks
    k = min(len(tasks), -(-programs // tasks[0].num_rows))
    return [tasks[i * len(tasks) // k] for i in range(k)]


class InProcess:
    """(a), (b), (c) on the same programs, shard by shard; ``run`` may be called more than once.

    ``make bench`` runs half the shards before the ``load_dataset`` builds and half after, so
    a drift of the machine's speed during the run weighs on (a) and on (d) alike.
    """

    def __init__(self, tasks: list, warm_up_seed: int, categories: tuple[str, ...]):
        self.tasks, self.warm_up_seed, self.categories = tasks, warm_up_seed, categories
        self.seconds = {"original": 0.0, "floor": 0.0, "pipeline": 0.0}
        self.cpu = dict.fromkeys(self.seconds, 0.0)
        self.cpu_total = 0.0
        self.next_shard = 0
        self.ids: list[str] = []
        self.warm = False

    def _warm_up(self) -> None:
        """Imports, JAX's backend and first-use costs, on programs that are not measured."""
        from generator.core.lowering import load_source
        from generator.core.plan import plan_shards
        from generator.core.rows import ShardStats
        from generator.runtime.shards import generate_in_process

        n = min(sum(t.num_rows for t in self.tasks), 50)
        for task in plan_shards(
            train_size=n, validation_size=0, seed=self.warm_up_seed, rows_per_shard=25, categories=self.categories
        )["train"]:
            for row in generate_in_process(task, ShardStats()):
                _original(*load_source(row["python_source"], row["function_name"]))
        self.warm = True

    def run_until(self, end: int) -> None:
        """Measure the shards not measured yet before index ``end``."""
        import jax

        from generator.core.lowering import load_source
        from generator.core.rows import ShardStats
        from generator.runtime.shards import generate_in_process

        if not self.warm:
            self._warm_up()
        start = time.process_time()
        for k in range(self.next_shard, min(end, len(self.tasks))):
            jax.clear_caches()
            t, c = time.perf_counter(), time.process_time()
            rows = list(generate_in_process(self.tasks[k], ShardStats()))
            self.seconds["pipeline"] += time.perf_counter() - t
            self.cpu["pipeline"] += time.process_time() - c
            loaded = [load_source(r["python_source"], r["function_name"]) for r in rows]
            order = [("original", _original), ("floor", _floor)]
            for name, method in order if k % 2 == 0 else order[::-1]:
                jax.clear_caches()
                t, c = time.perf_counter(), time.process_time()
                texts = [method(fn, args) for fn, args in loaded]
                self.seconds[name] += time.perf_counter() - t
                self.cpu[name] += time.process_time() - c
                for r, text in zip(rows, texts):
                    if text != r["stablehlo_ir"]:
                        raise AssertionError(f"{name}: IR of {r['function_name']} differs from the row's stablehlo_ir")
            self.ids += [r["id"] for r in rows]
            self.next_shard = k + 1
        self.cpu_total += time.process_time() - start

    def result(self) -> dict:
        return {
            "programs": len(self.ids),
            "shards": self.next_shard,
            "cpu_seconds": self.cpu_total,
            "seconds": self.seconds,
            "method_cpu_seconds": self.cpu,
            "pairs_per_second": {k: len(self.ids) / v for k, v in self.seconds.items()},
            "peak_rss_mb": _rss_mb(os.getpid(), "VmHWM"),
        }


# ---------------------------------------------------------------- (d)


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def check_same_programs(ids: list[str], runs: dict[str, list[dict]]) -> None:
    """Raise unless every build made exactly the rows ``ids`` (those (c) made), in order."""
    expected = ids_digest(ids)
    for key, builds in runs.items():
        if any(b["ids_sha256"] != expected for b in builds):
            raise AssertionError(f"{key}: the build's rows are not the programs (a)(b)(c) ran on")


def _builder_child(rows: int, num_proc: int, rows_per_shard: int, seed: int, categories: tuple[str, ...]) -> None:
    """Runs in a fresh interpreter: one ``load_dataset`` build; prints a JSON line."""
    from datasets import load_dataset

    validation = validation_rows(rows)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = load_dataset(
            str(SCRIPT),
            "balanced",
            trust_remote_code=True,
            cache_dir=cache,
            train_size=rows,
            validation_size=validation,
            rows_per_shard=rows_per_shard,
            seed=seed,
            categories=categories,
            num_proc=num_proc if num_proc > 1 else None,
        )
        seconds = time.perf_counter() - t
        ids = ds["train"]["id"] + ds["validation"]["id"]
    print(json.dumps({"rows": len(ids), "seconds": seconds, "ids_sha256": ids_digest(ids)}))


def bench_builder(rows: int, num_proc: int, rows_per_shard: int, seed: int, categories: tuple[str, ...]) -> dict:
    """(d): one build in a fresh interpreter with its own HF cache; peak RSS per process.

    Also the CPU seconds of the whole process tree: on a shared machine, ``cpu_seconds /
    build_seconds`` shows how many cores the build actually got.
    """
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HF_HOME": home,
            "HF_DATASETS_TRUST_REMOTE_CODE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }
        cmd = [sys.executable, str(Path(__file__).resolve()), "--builder-child", str(rows), str(num_proc)]
        cmd += [str(rows_per_shard), str(seed), ",".join(categories)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakMemory(proc.pid) as mem:
            out, err = proc.communicate()
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"builder run (rows={rows}, num_proc={num_proc}) failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    workers = [v for pid, v in mem.peaks.items() if pid != proc.pid]
    return {
        "num_proc": num_proc,
        "rows": result["rows"],
        "ids_sha256": result["ids_sha256"],
        "build_seconds": result["seconds"],
        "process_seconds": wall,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "rows_per_shard": rows_per_shard,
        "pairs_per_second": result["rows"] / result["seconds"],
        "main_peak_rss_mb": mem.peaks.get(proc.pid),
        # with num_proc=1 the main process is the only worker
        "worker_peak_rss_mb": max(workers) if workers else mem.peaks.get(proc.pid),
        "worker_peaks_mb": sorted(round(v, 1) for v in workers),
        "worker_rss_timeline_mb": mem.timeline,
        "worker_rss_halves_mb": _halves(mem.timeline),
    }


def scaling_order(rounds: int) -> list[str]:
    """The ``num_proc`` builds in ABBA order (np2 np1 np1 np2 ...): a drift of the machine's
    speed that is linear in time weighs on both sides of the ratio alike."""
    order = []
    for r in range(rounds):
        order += ["np2", "np1"] if r % 2 == 0 else ["np1", "np2"]
    return order


def pool_rounds(runs: list[dict]) -> dict:
    """One entry for several builds of the same kind: totals over rounds, rate = rows / seconds."""
    if len(runs) == 1:
        return runs[0]
    rows = sum(r["rows"] for r in runs)
    seconds = sum(r["build_seconds"] for r in runs)
    workers = [p for r in runs for p in r["worker_peaks_mb"]]
    return {
        "num_proc": runs[0]["num_proc"],
        "rows": rows,
        "build_seconds": seconds,
        "process_seconds": sum(r["process_seconds"] for r in runs),
        "cpu_seconds": sum(r["cpu_seconds"] for r in runs),
        "rows_per_shard": runs[0]["rows_per_shard"],
        "pairs_per_second": rows / seconds,
        "main_peak_rss_mb": max(r["main_peak_rss_mb"] or 0.0 for r in runs),
        "worker_peak_rss_mb": max(r["worker_peak_rss_mb"] or 0.0 for r in runs),
        "worker_peaks_mb": sorted(workers),
        "rounds": runs,
    }


def _halves(timeline: list[tuple[float, float]]) -> list[float] | None:
    """Largest worker RSS in the first and in the second half of a build (None if too short)."""
    if len(timeline) < 10:
        return None
    end = timeline[-1][0]
    first = [r for t, r in timeline if t <= end / 2]
    second = [r for t, r in timeline if t > end / 2]
    return [max(first), max(second)] if first and second else None


# ---------------------------------------------------------------- report


def summarize(inproc: dict, builders: dict) -> dict:
    pps = dict(inproc["pairs_per_second"])
    ratios = {
        "floor_over_original": pps["floor"] / pps["original"],
        "pipeline_cost_over_floor": pps["floor"] / pps["pipeline"],  # cost per pair, (c)/(b)
    }
    if "np2" in builders:
        pps["builder_np2"] = builders["np2"]["pairs_per_second"]
        ratios["builder_np2_over_original"] = pps["builder_np2"] / pps["original"]
    if "np1" in builders:
        pps["builder_np1"] = builders["np1"]["pairs_per_second"]
        ratios["np2_over_np1"] = pps["builder_np2"] / pps["builder_np1"]
        rounds = zip(builders["np2"].get("rounds", []), builders["np1"].get("rounds", []))
        for i, (np2, np1) in enumerate(rounds, 1):
            ratios[f"np2_over_np1_round_{i}"] = np2["pairs_per_second"] / np1["pairs_per_second"]
    if "np1" in builders and "np2" in builders:
        # The machine is shared: a build may get fewer cores than it has workers. Pairs per CPU
        # second show the per-core efficiency; "if 2 cores" projects it onto two free cores.
        per_core = {
            k: builders[k]["pairs_per_second"] * builders[k]["process_seconds"] / builders[k]["cpu_seconds"]
            for k in ("np1", "np2")
        }
        ratios["np2_per_core_over_np1_per_core"] = per_core["np2"] / per_core["np1"]
        ratios["np2_over_np1_if_2_cores"] = 2 * per_core["np2"] / per_core["np1"]
        # (a) as measured (its compiles already use more than one core) against (d) on 2 free cores
        ratios["np2_over_original_if_2_cores"] = 2 * per_core["np2"] / pps["original"]
    if "np2_large" in builders and "np2" in builders:
        ratios["worker_rss_large_over_small"] = (
            builders["np2_large"]["worker_peak_rss_mb"] / builders["np2"]["worker_peak_rss_mb"]
        )
    halves = builders.get("np2_large", {}).get("worker_rss_halves_mb")
    if halves:
        ratios["large_build_rss_second_half_over_first"] = halves[1] / halves[0]
    # (a) keeps XLA executables alive in the benchmark's own process, so only builder workers
    # (or, without builds, the whole in-process run) count as "a worker".
    peak = max([b["worker_peak_rss_mb"] for b in builders.values()] or [inproc["peak_rss_mb"]])
    checks = {}
    if "builder_np2_over_original" in ratios:
        checks["(d) >= 6x (a)"] = ratios["builder_np2_over_original"] >= TARGETS["builder_np2_over_original"]
    checks["(c) <= 1.25x (b) per pair"] = ratios["pipeline_cost_over_floor"] <= TARGETS["pipeline_cost_over_floor_max"]
    if "np2_over_np1" in ratios:
        checks["num_proc=2 >= 1.8x num_proc=1"] = ratios["np2_over_np1"] >= TARGETS["np2_over_np1"]
    checks["peak RSS per worker <= 600 MB"] = peak <= TARGETS["peak_worker_rss_mb_max"]
    if "large_build_rss_second_half_over_first" in ratios:
        rows = builders["np2_large"]["rows"]
        checks[f"no accumulation: {rows:,}-row build's 2nd-half worker RSS <= 1.1x its 1st half"] = (
            ratios["large_build_rss_second_half_over_first"] <= TARGETS["large_build_rss_growth_max"]
        )
    return {"pairs_per_second": pps, "ratios": ratios, "peak_worker_rss_mb": peak, "checks": checks}


def render_table(inproc: dict, builders: dict, summary: dict) -> str:
    pps = summary["pairs_per_second"]
    base = pps["original"]
    lines = [
        f"{'method':<44} {'pairs':>6} {'pairs/s':>8} {'x (a)':>6} {'cores used':>10} {'peak RSS/worker MB':>19}",
        "-" * 98,
    ]

    def row(label, pairs, rate, cores, rss):
        rss_text = f"{rss:.0f}" if rss is not None else "-"
        lines.append(f"{label:<44} {pairs:>6} {rate:>8.1f} {rate / base:>6.2f} {cores:>10.2f} {rss_text:>19}")

    n, rss = inproc["programs"], None  # one process ran (a), (b) and (c): its peak is in the JSON

    def cores(name):  # XLA compiles with several threads, so (a) uses more than one core
        return inproc["method_cpu_seconds"][name] / inproc["seconds"][name]

    row("(a) original: lower+compile+cost+as_text", n, pps["original"], cores("original"), rss)
    row("(b) floor: lower+as_text+lowered.cost", n, pps["floor"], cores("floor"), rss)
    row("(c) pipeline, one process", n, pps["pipeline"], cores("pipeline"), rss)
    labels = {
        "np1": "(d) load_dataset num_proc=1",
        "np2": "(d) load_dataset num_proc=2",
        "np2_large": "(d) load_dataset num_proc=2, larger",
    }
    for key, label in labels.items():
        if key in builders:
            b = builders[key]
            row(
                label,
                b["rows"],
                b["pairs_per_second"],
                b["cpu_seconds"] / b["process_seconds"],
                b["worker_peak_rss_mb"],
            )
    lines.append("")
    for name, value in summary["ratios"].items():
        lines.append(f"{name:<34} {value:6.2f}")
    lines.append("")
    for name, ok in summary["checks"].items():
        lines.append(f"[{'ok' if ok else 'MISS'}] {name}")
    return "\n".join(lines)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--builder-child"]:
        _builder_child(int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), tuple(argv[5].split(",")))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows",
        type=int,
        default=_env_int("BENCH_ROWS", 3000),
        help="train rows of the program set (validation: a tenth): the (d) builds build it, (a)(b)(c) run on it",
    )
    p.add_argument(
        "--programs",
        type=int,
        default=_env_int("BENCH_PROGRAMS", 0),
        help="run (a)(b)(c) on evenly spaced shards of the set holding this many programs (0: all of them)",
    )
    p.add_argument(
        "--large-rows",
        type=int,
        default=_env_int("BENCH_LARGE_ROWS", 50_000),
        help="train rows of the larger num_proc=2 build for memory flatness (0: skip; 50,000 take about 15 min)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=_env_int("BENCH_ROUNDS", 2),
        help="builds of each num_proc at --rows, in ABBA order (np2 np1 np1 np2; 0: none); rates pool rounds",
    )
    p.add_argument(
        "--rows-per-shard", type=int, default=50, help="rows per shard of every build; (a)(b)(c) go shard by shard"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--categories",
        default=os.environ.get("BENCH_CATEGORIES", ",".join(CORE_CATEGORIES)),
        help="comma-separated categories of every method's programs (default: the jit-lowered seven)",
    )
    p.add_argument(
        "--output", type=Path, default=None, help="JSON file (default benchmarks/results/throughput-<time>.json)"
    )
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    started = time.strftime("%Y%m%dT%H%M%S")
    categories = tuple(args.categories.split(","))
    program_set_shards = program_set(args.rows, args.rows_per_shard, args.seed, categories)
    inproc = InProcess(spread(program_set_shards, args.programs), args.seed + 1, categories)
    # Half of (a)(b)(c) before the builds and half after, the num_proc builds in ABBA order:
    # the machine's speed drifts during a run, and this way the drift weighs on both sides
    # of every ratio.
    middle = (len(inproc.tasks) + 1) // 2 if args.rounds else len(inproc.tasks)
    total = sum(t.num_rows for t in inproc.tasks)
    print(f"(a)(b)(c): {sum(t.num_rows for t in inproc.tasks[:middle])} of {total} programs ...", flush=True)
    inproc.run_until(middle)
    builders = {}
    if args.rounds:
        runs: dict[str, list[dict]] = {"np2": [], "np1": []}
        for key in scaling_order(args.rounds):
            num_proc = 2 if key == "np2" else 1
            print(f"(d): load_dataset train_size={args.rows} num_proc={num_proc} ...", flush=True)
            runs[key].append(bench_builder(args.rows, num_proc, args.rows_per_shard, args.seed, categories))
        builders = {key: pool_rounds(r) for key, r in runs.items()}
        print(f"(a)(b)(c): the other {total - len(inproc.ids)} programs ...", flush=True)
        inproc.run_until(len(inproc.tasks))
        # the same programs: every build made exactly the rows (c) made, in the same order
        if inproc.next_shard == len(program_set_shards):
            check_same_programs(inproc.ids, runs)
    if args.large_rows:
        print(f"(d): load_dataset train_size={args.large_rows} num_proc=2 ...", flush=True)
        builders["np2_large"] = bench_builder(args.large_rows, 2, args.rows_per_shard, args.seed, categories)
    inproc = inproc.result()
    summary = summarize(inproc, builders)
    table = render_table(inproc, builders, summary)
    print()
    print(table)

    import jax

    result = {
        "started": started,
        "command": "python benchmarks/bench_throughput.py " + " ".join(argv),
        "categories": categories,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "in_process": inproc,
        "builder": builders,
        **summary,
        "targets": TARGETS,
        "table": table,
    }
    out = args.output or ROOT / "benchmarks" / "results" / f"throughput-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
