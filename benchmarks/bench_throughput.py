"""Throughput benchmark: pairs/second of four ways to make the same (source, StableHLO) pairs.

Methods, measured side by side in one run (timings on a shared machine are noisy, so the
ratios are what matter):

  a. original: per program ``example_args()``, ``jit``, ``lower``, ``compile``,
     ``compiled.cost_analysis()``, ``as_text()`` (the design this project replaced);
  b. floor: ``example_args()``, ``jit``, ``lower``, ``as_text()``, ``lowered.cost_analysis()``:
     the least JAX work that yields what a row holds from its executed source (no cost analysis
     for symbolic shapes: rows hold none);
  c. pipeline: ``generator.runtime.shards.generate_in_process`` in this process (sample, render,
     exec, lower, cost analysis, dedup, row building);
  d. builder: ``load_dataset(jax_stablehlo_pairs.py, <config>, num_proc=2)`` end to end, in a
     fresh interpreter with a temporary HF cache; also ``num_proc=1`` for the scaling ratio.

Configs. The bench measures what users build: each config it is given (``--config``, env
``BENCH_CONFIGS``; by default ``models``, then ``balanced``) is one section of the run with its
own program set, table and targets. A config's categories and mixture are the builder's
(``balanced``/``mixed``: all of ``generator.core.categories.CATEGORIES``; ``models``: the six
model categories; a category's name: that category alone); ``--categories`` overrides them
for every config (for quick runs). Targets: (c) within 1.1x of (b) per pair on every config;
(d) with ``num_proc=2`` at least 6x (a) on ``balanced`` and 10x on ``models`` (other configs:
10x if they hold only model categories, else 6x); ``num_proc=2`` 1.8x ``num_proc=1``; at most
600 MB peak RSS per build worker. Two workers cannot beat two floors on two cores, so (d) can
reach at most twice (b) over (a): the table gives (d) over 2x (b) beside it, for information
(``builder_np2_over_two_floors``).

The same programs. A config's program set is its shard plan at ``--rows`` train rows (and a
tenth of that in validation, as many in test). The (d) builds build exactly it (checked: every build's row ids
equal those (c) made; if they do not, the error says where they part and whether the code
that decides rows, ``generator.code_fingerprint()``, changed on disk during the run), and (a),
(b), (c) go through it shard by shard: the pipeline makes a
shard's rows, then (a) and (b) (in alternating order) lower the same sources the way the
dataset documents (``jax.jit(fn, static_argnums=static_argnums(args)).lower(*args)``, so model
rows pass their pytrees traced and their configs and graph definitions static), and every IR
they produce must equal the row's ``stablehlo_ir``. Programs differ a lot in cost (a 50-row
shard's mean cost per row varies by about 13%), so comparing (d) with (a) on different samples
of programs would measure the samples. JAX caches the traces of the jitted ``jax.numpy``
functions a program calls, so whichever method met a shard first would pay for everyone:
``jax.clear_caches()`` before each method's pass over a shard gives all three the same (cold)
start. Sources are executed outside the (a)/(b) timers (Python compiling a module and
creating its classes; (c) pays for sampling, rendering and ``exec``); the arguments are not:
(a) and (b) make a pair the way the dataset documents it, ``example_args()`` included, so a
model row's floor includes ``jax.eval_shape`` of the model's init (the ``ShapeDtypeStruct``
pytrees it lowers on). That part is also timed on its own (``example_args_seconds`` per method
in the JSON), and the table gives (c) over (b) without it, for information
(``pipeline_cost_over_floor_lowering_only``: the bench's definition before model programs,
whose arguments were plain shapes).

Rows that (a)/(b) cannot make here. Multi-device rows (``lowering`` ``jit:host_devices=N``)
need N host CPU devices, which XLA fixes when a process starts: (a) and (b) lower them in a
child interpreter started with ``--xla_force_host_platform_device_count=N`` (one per N, started
and warmed up before any timing), which times its own work; the table counts them. Rows with
symbolic shapes (``dynamic_shapes``) cannot be compiled, so the original method cannot make
them at all: (a) leaves them out, its rates are over the rows it made, and the table counts
them; (b), (c) and (d) make every row.

Rates. Each method's rate is pairs per second and IR lines (``stablehlo_lines``) per second;
the ratios and targets compare pairs per second, with (d)/(a) also in IR lines.

The machine is shared and its speed drifts during a run, so every ratio compares
measurements taken around the same times: within a config, half of the (a)/(b)/(c) shards run
before the (d) builds and half after, and the ``num_proc`` builds run in ABBA order (np2, np1,
np1, np2 for two rounds); each method's rate pools its rounds (total rows over total seconds).

Memory. A larger ``num_proc=2`` build (``--large-rows`` train rows, 2,000 by default, of
``--large-config``, ``models`` by default; in that config's section, or a section of its own if
the run does not measure that config) records its workers' RSS once a second; the table gives
the peak over its first half and over its second, which must be within 1.1x (no accumulation).

Sizes and time. ``--rows`` is N for every config, or ``CONFIG=N,...``; by default 300 train
rows for configs of model categories only (``models``: 330 programs) and 1,000 for the others
(``balanced``: 1,100 programs, a quarter of them model programs). Per program, in CPU seconds
(jax 0.12, tiny runs): a model program costs (a) about 2.2 (XLA compiles of real-sized models),
(b) and (c) about 0.28; an op-table program (a) 0.24, (b) and (c) 0.05. So a default run takes
about 45-50 minutes on two free cores: ``models`` about 24 ((a)(b)(c) 12, the four builds 6, the
memory build 6), ``balanced`` about 22 ((a)(b)(c) 15, the builds 7). (The seven-category bench
before it, 3,000 rows and a 50,000-row memory build, took about 30.) ``--programs`` runs (a)(b)(c)
on part of the set, ``--rounds 0`` and ``--large-rows 0`` skip the builds.

Usage: ``python benchmarks/bench_throughput.py [--config models,balanced] [--rows N|CONFIG=N,...] [--programs N]
[--rounds N] [--large-rows N] [--large-config NAME] [--categories A,B]`` (or ``make bench``; env
``BENCH_CONFIGS``, ``BENCH_ROWS``, ``BENCH_PROGRAMS``, ``BENCH_ROUNDS``, ``BENCH_LARGE_ROWS``,
``BENCH_LARGE_CONFIG``, ``BENCH_CATEGORIES``). Writes ``benchmarks/results/throughput-<time>.json``
unless ``--output`` says otherwise.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "jax_stablehlo_pairs.py"
DEFAULT_CONFIGS = ("models", "balanced")
# Train rows of a config's program set unless --rows says otherwise: a model program costs (a)
# about 10x and (b)/(c) about 3x what an average balanced one does (measured, see the docstring).
MODEL_CONFIG_ROWS, DEFAULT_ROWS = 300, 1000
# (d) with num_proc=2 over (a), per config (others: MODEL_SPEEDUP if they hold only model
# categories, else OP_SPEEDUP; see ``targets_for``).
OP_SPEEDUP, MODEL_SPEEDUP = 6.0, 10.0
SPEEDUP_TARGETS = {"balanced": OP_SPEEDUP, "models": MODEL_SPEEDUP}
TARGETS = {
    "pipeline_cost_over_floor_max": 1.1,
    "np2_over_np1": 1.8,
    "peak_worker_rss_mb_max": 600,
    # "flat": in the large build, workers' RSS over its second half is within 10% of its first
    "large_build_rss_growth_max": 1.1,
}
METHODS = ("original", "floor", "pipeline")


# ---------------------------------------------------------------- configs


@dataclass(frozen=True)
class BenchConfig:
    """What one section of the run builds: a builder config, maybe with its categories overridden."""

    name: str
    categories: tuple[str, ...]
    mixture: str = "balanced"
    categories_overridden: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}[{','.join(self.categories)}]" if self.categories_overridden else self.name

    def builder_kwargs(self) -> dict[str, Any]:
        """``load_dataset`` keyword arguments besides the config name (the override, if any)."""
        return {"categories": self.categories} if self.categories_overridden else {}


def config_names() -> tuple[str, ...]:
    """The builder's configs (``jax_stablehlo_pairs._configs``): balanced, mixed, models, one per category."""
    from generator.core.categories import CATEGORIES

    return ("balanced", "mixed", "models", *CATEGORIES)


def bench_config(name: str, categories: tuple[str, ...] | None = None) -> BenchConfig:
    """The builder config ``name``'s categories and mixture (``categories`` overrides them).

    Mirrors the builder's definitions without importing the builder (which imports ``datasets``
    into the process that times (a), (b) and (c)); the (d) builds load the config by name, and
    their rows must equal (c)'s, so a mismatch cannot go unnoticed.
    """
    from generator.core.categories import CATEGORIES, MODEL_CATEGORIES
    from generator.core.plan import check_categories

    if name in ("balanced", "mixed"):
        own = CATEGORIES
    elif name == "models":
        own = MODEL_CATEGORIES
    elif name in CATEGORIES:
        own = (name,)
    else:
        raise ValueError(f"unknown config {name!r}; valid configs: {', '.join(config_names())}")
    mixture = "mixed" if name == "mixed" else "balanced"
    if categories is None or tuple(categories) == own:
        return BenchConfig(name, own, mixture)
    return BenchConfig(name, check_categories(categories), mixture, categories_overridden=True)


def rows_for(spec: str, config: str) -> int:
    """Train rows of ``config``'s program set from ``--rows``/``BENCH_ROWS``: "N" (every config),
    "CONFIG=N,..." (the configs named; others their default), or "" (every config its default)."""
    spec = str(spec).strip()
    if spec.isdigit():
        return int(spec)
    sizes = {}
    for item in filter(None, (i.strip() for i in spec.split(","))):
        name, _, n = item.partition("=")
        if not n.strip().isdigit():
            raise ValueError(f"bad --rows {spec!r}: give N or CONFIG=N,... (e.g. models=400,balanced=3000)")
        sizes[name.strip()] = int(n)
    unknown = set(sizes) - set(config_names())
    if unknown:
        raise ValueError(f"--rows names unknown configs {', '.join(sorted(unknown))}")
    return sizes[config] if config in sizes else default_rows(config)


def default_rows(config: str) -> int:
    """``MODEL_CONFIG_ROWS`` for a config of model categories only (``models``, ``transformer``...), else ``DEFAULT_ROWS``."""
    from generator.core.categories import MODEL_CATEGORIES

    return MODEL_CONFIG_ROWS if set(bench_config(config).categories) <= set(MODEL_CATEGORIES) else DEFAULT_ROWS


def default_rows_text() -> str:
    return f"{MODEL_CONFIG_ROWS} for models and each model category, {DEFAULT_ROWS} for the others"


def select_configs(text: str) -> list[str]:
    """Config names from ``--config``/``BENCH_CONFIGS`` (comma-separated, in order, repeats dropped)."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"no config given; valid configs: {', '.join(config_names())}")
    bad = [n for n in names if n not in config_names()]
    if bad:
        raise ValueError(f"unknown configs {', '.join(bad)}; valid configs: {', '.join(config_names())}")
    return names


def targets_for(config: BenchConfig) -> dict[str, float]:
    """The targets of one config's section: (d)/(a) depends on the config, the rest does not."""
    from generator.core.categories import MODEL_CATEGORIES

    speedup = SPEEDUP_TARGETS.get(config.name)
    if speedup is None:
        speedup = MODEL_SPEEDUP if set(config.categories) <= set(MODEL_CATEGORIES) else OP_SPEEDUP
    return {"builder_np2_over_original": speedup, **TARGETS}


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


def _original(fn, args: tuple) -> str:
    import jax

    from generator.core.lowering import static_argnums

    lowered = jax.jit(fn, static_argnums=static_argnums(args)).lower(*args)
    compiled = lowered.compile()
    compiled.cost_analysis()
    return lowered.as_text()


def _floor(fn, args: tuple, *, cost: bool = True) -> str:
    import jax

    from generator.core.lowering import static_argnums

    lowered = jax.jit(fn, static_argnums=static_argnums(args)).lower(*args)
    text = lowered.as_text()
    if cost:  # XLA cannot cost symbolic shapes; their rows hold no cost figures
        lowered.cost_analysis()
    return text


def lower_with(method: str, fn, example_args, symbolic: bool) -> tuple[str, float]:
    """The IR text ``method`` ("original" or "floor") makes of one executed program, from its
    ``example_args()`` on; with the seconds its ``example_args()`` took (part of the method's)."""
    t = time.perf_counter()
    args = example_args()
    args_seconds = time.perf_counter() - t
    if method == "original":
        return _original(fn, args), args_seconds
    return _floor(fn, args, cost=not symbolic), args_seconds


def lower_all(method: str, executed: list[tuple], symbolic: list[bool]) -> list[tuple[str, float]]:
    """``lower_with`` over executed programs, one after another, under the collector policy
    the pipeline's shards run under (``runtime.shards.collector_kept_off_survivors``): what
    each program leaves alive in JAX's caches is kept out of the collector's walks, so (a),
    (b) and (c) differ by their work, not by how often the collector walks old objects."""
    from generator.runtime.shards import collector_kept_off_survivors

    made = []
    with collector_kept_off_survivors() as after_program:
        for program, sym in zip(executed, symbolic):
            made.append(lower_with(method, *program, sym))
            after_program(caches_cleared=False)
    return made


def symbolic_shapes(row: dict) -> bool:
    """Whether a row's inputs have symbolic dimensions (recorded as -1): XLA cannot compile it."""
    return any(d < 0 for sig in row["input_signature"] for d in sig["shape"])


def row_host_devices(row: dict) -> int:
    from generator.core.lowering import host_devices

    return host_devices(row["lowering"])


def made_by(method: str, rows: list[dict]) -> list[int]:
    """Indices of the rows ``method`` makes: the original method cannot compile symbolic shapes."""
    return [i for i, r in enumerate(rows) if method != "original" or not symbolic_shapes(r)]


def by_host_devices(rows: list[dict], indices: list[int]) -> dict[int, list[int]]:
    """``indices`` grouped by the host CPU devices their rows' lowering needs (1: this process)."""
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(row_host_devices(rows[i]), []).append(i)
    return groups


def count_programs(rows: list[dict]) -> dict[str, Any]:
    """What the table counts of some rows: those (a) leaves out, and those needing host devices."""
    devices = by_host_devices(rows, list(range(len(rows))))
    return {
        "programs": len(rows),
        "left_out_of_original": {"symbolic_shapes": len(rows) - len(made_by("original", rows))},
        "host_devices": {n: len(ix) for n, ix in sorted(devices.items()) if n > 1},
    }


def add_counts(total: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    out = {
        "programs": total.get("programs", 0) + counts["programs"],
        "left_out_of_original": {},
        "host_devices": dict(total.get("host_devices", {})),
    }
    for key in ("left_out_of_original",):
        for reason, n in counts[key].items():
            out[key][reason] = total.get(key, {}).get(reason, 0) + n
    for devices, n in counts["host_devices"].items():
        out["host_devices"][devices] = out["host_devices"].get(devices, 0) + n
    return out


def rates(programs: dict[str, int], ir_lines: dict[str, int], seconds: dict[str, float]) -> dict[str, dict]:
    """Pairs and IR lines per second of each method (None for a method that made nothing)."""

    def per_second(count: dict[str, int]) -> dict[str, float | None]:
        return {k: count[k] / s if s > 0 and programs[k] else None for k, s in seconds.items()}

    return {"pairs_per_second": per_second(programs), "ir_lines_per_second": per_second(ir_lines)}


def validation_rows(rows: int) -> int:
    return max(2, rows // 10)


def program_set(config: BenchConfig, rows: int, rows_per_shard: int, seed: int) -> list:
    """The shards of the (d) builds (``config`` at ``rows`` train rows and a tenth of that in
    validation, as many in test): (a), (b) and (c) run on these same programs."""
    from generator.core.plan import plan_shards
    from generator.core.policy import policy_for

    plan = plan_shards(
        train_size=rows,
        validation_size=validation_rows(rows),
        test_size=validation_rows(rows),
        seed=seed,
        categories=config.categories,
        mixture=config.mixture,
        rows_per_shard=rows_per_shard,
        policy=policy_for("medium"),
    )
    return [task for tasks in plan.values() for task in tasks]


def first_rows(tasks: list, programs: int) -> list:
    """The first rows of every shard of ``tasks``, the same share of each, at least ``programs``
    rows in all (every row if 0 or more than the set holds).

    A prefix of a shard makes exactly the shard's first rows (a row depends on its shard and its
    index in it, never on how many follow), and every shard is in the sample. Whole shards are
    not a fair sample: a split's shards deal its rows round-robin and its categories come
    round-robin too, so a shard can draw only some of them (``models``' six categories over a
    split of eight shards: every other shard draws ``decoding``, ``train_step`` and ``vision``,
    the others the rest, at three times the CPU per row). Seven evenly spaced shards of the
    2,000-row ``models`` plan cost 12% less per row than the whole build (measured).
    """
    from dataclasses import replace

    rows = sum(t.num_rows for t in tasks)
    if not programs or programs >= rows:
        return list(tasks)
    return [replace(t, num_rows=max(1, -(-t.num_rows * programs // rows))) for t in tasks]


class HostDevices:
    """(a) and (b) for rows that need ``devices`` host CPU devices: a child interpreter started
    with them (``XLA_FLAGS=--xla_force_host_platform_device_count``), speaking the generator's
    JSON-lines protocol (``generator.runtime.child.serve``). It times its own work, so the pipe
    costs (a) and (b) nothing; it has started JAX's backend before the first request."""

    def __init__(self, devices: int):
        from generator.runtime.child import child_env

        env = child_env(host_devices=devices)
        env["JAX_PLATFORMS"] = "cpu"
        self.devices = devices
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--host-devices-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
            bufsize=1,
        )
        self._receive()  # {"ready": true}: imports and the backend are done

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.devices}-device child exited (code {self.proc.wait()})")
        return json.loads(line)

    def run(self, method: str, rows: list[dict]) -> tuple[list[str], float, float, float]:
        """IR texts of ``rows`` by ``method``, with the wall and CPU seconds the child spent on
        them and the wall seconds of their ``example_args()`` (part of those)."""
        programs = [
            {"source": r["python_source"], "function_name": r["function_name"], "symbolic": symbolic_shapes(r)}
            for r in rows
        ]
        self.proc.stdin.write(json.dumps({"method": method, "programs": programs}) + "\n")
        self.proc.stdin.flush()
        msg = self._receive()
        if "error" in msg:
            raise RuntimeError(f"{method} in the {self.devices}-device child: {msg['error']}")
        return msg["texts"], msg["seconds"], msg["cpu"], msg["example_args_seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def _host_devices_child_setup() -> None:
    import jax

    import generator.core.lowering  # noqa: F401

    jax.devices()  # start the backend before any timing


def _host_devices_child_answer(request: dict) -> Iterator[dict]:
    """One method over some programs, in the host-devices child: sources executed untimed,
    cold caches, then the method timed as in this process."""
    import jax

    from generator.core.lowering import exec_source

    try:
        programs = request["programs"]
        executed = [exec_source(p["source"], p["function_name"]) for p in programs]
        jax.clear_caches()
        t, c = time.perf_counter(), time.process_time()
        made = lower_all(request["method"], executed, [p["symbolic"] for p in programs])
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        yield {
            "texts": [text for text, _ in made],
            "seconds": seconds,
            "cpu": cpu,
            "example_args_seconds": sum(s for _, s in made),
        }
    except Exception as e:  # reported to the parent, which stops the bench
        yield {"error": f"{type(e).__name__}: {str(e)[:3000]}"}


def warm_up_rows(categories: tuple[str, ...], programs: int) -> int:
    """Rows of the untimed warm-up: each category twice (at least 12, at most 50, at most the set)."""
    return min(programs, 50, max(12, 2 * len(categories)))


class InProcess:
    """(a), (b), (c) on the same programs, shard by shard; ``run_until`` may be called more than once.

    ``make bench`` runs half the shards before the ``load_dataset`` builds and half after, so
    a drift of the machine's speed during the run weighs on (a) and on (d) alike.
    """

    def __init__(
        self, tasks: list, warm_up_seed: int, config: BenchConfig, methods: tuple[str, ...] = ("original", "floor")
    ):
        self.tasks, self.warm_up_seed, self.config = tasks, warm_up_seed, config
        self.methods = methods  # of (a) and (b), the ones measured beside (c) (the scaling bench: the floor only)
        self.seconds = dict.fromkeys(METHODS, 0.0)
        self.cpu = dict.fromkeys(METHODS, 0.0)
        self.programs = dict.fromkeys(METHODS, 0)
        self.ir_lines = dict.fromkeys(METHODS, 0)
        self.example_args_seconds = dict.fromkeys(("original", "floor"), 0.0)
        self.counts: dict[str, Any] = {}
        self.cpu_total = 0.0
        self.next_shard = 0
        self.ids: list[str] = []
        self.warm = False
        self.children: dict[int, HostDevices] = {}

    def _lower(self, method: str, rows: list[dict], executed: dict[int, tuple]) -> tuple[list[int], dict, float, float]:
        """(a) or (b) over one shard's rows with cold caches: rows needing host devices in
        their child, the rest here. Returns the rows made, their texts, wall and CPU seconds
        (adding the ``example_args()`` part of the wall seconds to ``example_args_seconds``)."""
        import jax

        made = made_by(method, rows)
        groups = by_host_devices(rows, made)
        local = groups.pop(1, [])
        jax.clear_caches()
        t, c = time.perf_counter(), time.process_time()
        lowered = lower_all(method, [executed[i] for i in local], [symbolic_shapes(rows[i]) for i in local])
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        texts = {i: text for i, (text, _) in zip(local, lowered)}
        args_seconds = sum(s for _, s in lowered)
        for devices, indices in groups.items():
            if devices not in self.children:
                self.children[devices] = HostDevices(devices)
            out, s, c, a = self.children[devices].run(method, [rows[i] for i in indices])
            texts.update(zip(indices, out))
            seconds, cpu, args_seconds = seconds + s, cpu + c, args_seconds + a
        if self.warm:
            self.example_args_seconds[method] += args_seconds
        return made, texts, seconds, cpu

    @staticmethod
    def _exec(rows: list[dict]) -> dict[int, tuple]:
        """The rows this process lowers, executed: ``(fn, example_args)`` by index, the
        arguments not made yet (the methods make them)."""
        from generator.core.lowering import exec_source

        return {
            i: exec_source(r["python_source"], r["function_name"])
            for i, r in enumerate(rows)
            if row_host_devices(r) == 1
        }

    def _warm_up(self) -> None:
        """Imports, JAX's backend, the host-devices children and first-use costs, on programs
        that are not measured."""
        from generator.core.plan import plan_shards
        from generator.core.rows import ShardStats
        from generator.runtime.shards import generate_in_process

        n = warm_up_rows(self.config.categories, sum(t.num_rows for t in self.tasks))
        plan = plan_shards(
            train_size=n,
            validation_size=0,
            seed=self.warm_up_seed,
            rows_per_shard=25,
            categories=self.config.categories,
            mixture=self.config.mixture,
        )
        for task in plan["train"]:
            rows = list(generate_in_process(task, ShardStats()))
            executed = self._exec(rows)
            for method in self.methods:
                self._lower(method, rows, executed)
        self.warm = True

    def run_until(self, end: int) -> None:
        """Measure the shards not measured yet before index ``end``."""
        import jax

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
            self.programs["pipeline"] += len(rows)
            self.ir_lines["pipeline"] += sum(r["stablehlo_lines"] for r in rows)
            executed = self._exec(rows)
            order = list(self.methods)
            for name in order if k % 2 == 0 else order[::-1]:
                made, texts, seconds, cpu = self._lower(name, rows, executed)
                self.seconds[name] += seconds
                self.cpu[name] += cpu
                self.programs[name] += len(made)
                self.ir_lines[name] += sum(rows[i]["stablehlo_lines"] for i in made)
                for i in made:
                    if texts[i] != rows[i]["stablehlo_ir"]:
                        raise AssertionError(
                            f"{name}: IR of {rows[i]['function_name']} ({rows[i]['category']}) differs from the "
                            "row's stablehlo_ir"
                        )
            self.counts = add_counts(self.counts, count_programs(rows))
            self.ids += [r["id"] for r in rows]
            self.next_shard = k + 1
        self.cpu_total += time.process_time() - start

    def close(self) -> None:
        for child in self.children.values():
            child.close()
        self.children = {}

    def result(self) -> dict:
        return {
            "programs": len(self.ids),
            "shards": self.next_shard,
            "cpu_seconds": self.cpu_total,  # this process's; the host-devices children's are in method_cpu_seconds
            "seconds": self.seconds,
            "method_cpu_seconds": self.cpu,
            "method_programs": self.programs,
            # the wall seconds of example_args() calls, part of each method's seconds
            "example_args_seconds": self.example_args_seconds,
            "ir_lines": self.ir_lines,
            **rates(self.programs, self.ir_lines, self.seconds),
            "left_out_of_original": self.counts.get("left_out_of_original", {"symbolic_shapes": 0}),
            "host_devices_programs": self.counts.get("host_devices", {}),
            "peak_rss_mb": _rss_mb(os.getpid(), "VmHWM"),
        }


# ---------------------------------------------------------------- (d)


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def check_same_programs(ids: list[str], runs: dict[str, list[dict]], fingerprint: str | None = None) -> None:
    """Raise unless every build made exactly the rows ``ids`` (those (c) made), in order.

    The message says where the rows part and whether the code that decides rows changed on
    disk during the run (``fingerprint``: ``generator.code_fingerprint()`` when (c) imported it).
    """
    expected = ids_digest(ids)
    for key, builds in runs.items():
        for b in builds:
            if b["ids_sha256"] == expected:
                continue
            why = []
            if fingerprint and b.get("code_fingerprint") not in (None, fingerprint):
                why.append(
                    f"the generator's code changed during the run (fingerprint {fingerprint} in this process, "
                    f"{b['code_fingerprint']} in the build)"
                )
            if b.get("ids") is not None:
                got = b["ids"]
                first = next((i for i, (x, y) in enumerate(zip(ids, got)) if x != y), min(len(ids), len(got)))
                why.append(f"{len(got)} rows against {len(ids)}, the first different one at index {first}")
            detail = ": " + "; ".join(why) if why else ""
            raise AssertionError(f"{key}: the build's rows are not the programs (a)(b)(c) ran on{detail}")


def _builder_child(rows: int, num_proc: int, rows_per_shard: int, seed: int, config: str, categories: str) -> None:
    """Runs in a fresh interpreter: one ``load_dataset`` build; prints a JSON line."""
    from datasets import load_dataset

    import generator

    validation = validation_rows(rows)
    kwargs = {"categories": tuple(categories.split(","))} if categories else {}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = load_dataset(
            str(SCRIPT),
            config,
            trust_remote_code=True,
            cache_dir=cache,
            train_size=rows,
            validation_size=validation,
            rows_per_shard=rows_per_shard,
            seed=seed,
            num_proc=num_proc if num_proc > 1 else None,
            **kwargs,
        )
        seconds = time.perf_counter() - t
        ids = [i for split in ds for i in ds[split]["id"]]
        ir_lines = sum(n for split in ds for n in ds[split]["stablehlo_lines"])
    out = {"rows": len(ids), "ir_lines": ir_lines, "seconds": seconds, "ids_sha256": ids_digest(ids), "ids": ids}
    print(json.dumps({**out, "code_fingerprint": generator.code_fingerprint()}))


@dataclass
class ChildRun:
    """One build run in a fresh interpreter: the JSON line it printed last, its wall seconds, the
    CPU seconds of its whole process tree and each process's peak RSS."""

    result: dict
    wall: float
    cpu_seconds: float
    pid: int
    memory: PeakMemory


def run_child(script: Path, args: list[str], what: str, env: dict | None = None) -> ChildRun:
    """``python script *args`` in a fresh interpreter with its own HF home (so its own cache);
    ``what`` names the build in the error if it fails. ``env``: the environment to start from
    (this process's by default)."""
    with tempfile.TemporaryDirectory() as home:
        env = {
            **(env or os.environ),
            "HF_HOME": home,
            "HF_DATASETS_TRUST_REMOTE_CODE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }
        cmd = [sys.executable, str(Path(script).resolve()), *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakMemory(proc.pid) as mem:
            out, err = proc.communicate()
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{err[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return ChildRun(json.loads(out.strip().splitlines()[-1]), wall, cpu, proc.pid, mem)


def bench_builder(rows: int, num_proc: int, rows_per_shard: int, seed: int, config: BenchConfig) -> dict:
    """(d): one build of ``config`` in a fresh interpreter with its own HF cache; peak RSS per process.

    Also the CPU seconds of the whole process tree: on a shared machine, ``cpu_seconds /
    build_seconds`` shows how many cores the build actually got.
    """
    args = ["--builder-child", str(rows), str(num_proc), str(rows_per_shard), str(seed), config.name]
    args.append(",".join(config.builder_kwargs().get("categories", ())))
    run = run_child(Path(__file__), args, f"builder run ({config.label}, rows={rows}, num_proc={num_proc})")
    result, mem = run.result, run.memory
    workers = [v for pid, v in mem.peaks.items() if pid != run.pid]
    return {
        "config": config.label,
        "num_proc": num_proc,
        "rows": result["rows"],
        "ir_lines": result["ir_lines"],
        "ids_sha256": result["ids_sha256"],
        "ids": result["ids"],  # dropped once checked (``run_section``)
        "code_fingerprint": result["code_fingerprint"],
        "build_seconds": result["seconds"],
        "process_seconds": run.wall,
        "cpu_seconds": run.cpu_seconds,
        "rows_per_shard": rows_per_shard,
        "pairs_per_second": result["rows"] / result["seconds"],
        "ir_lines_per_second": result["ir_lines"] / result["seconds"],
        "main_peak_rss_mb": mem.peaks.get(run.pid),
        # with num_proc=1 the main process is the only worker
        "worker_peak_rss_mb": max(workers) if workers else mem.peaks.get(run.pid),
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
    ir_lines = sum(r["ir_lines"] for r in runs)
    seconds = sum(r["build_seconds"] for r in runs)
    workers = [p for r in runs for p in r["worker_peaks_mb"]]
    return {
        "config": runs[0].get("config"),
        "num_proc": runs[0]["num_proc"],
        "rows": rows,
        "ir_lines": ir_lines,
        "build_seconds": seconds,
        "process_seconds": sum(r["process_seconds"] for r in runs),
        "cpu_seconds": sum(r["cpu_seconds"] for r in runs),
        "rows_per_shard": runs[0]["rows_per_shard"],
        "pairs_per_second": rows / seconds,
        "ir_lines_per_second": ir_lines / seconds,
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


def summarize(inproc: dict | None, builders: dict, targets: dict | None = None) -> dict:
    """Rates, ratios and checks of one config's section (``inproc`` None: a memory build alone)."""
    targets = targets or {"builder_np2_over_original": OP_SPEEDUP, **TARGETS}
    pps = dict(inproc["pairs_per_second"]) if inproc else {}
    lps = dict(inproc["ir_lines_per_second"]) if inproc else {}
    original = pps.get("original")
    ratios = {}
    if original:
        ratios["floor_over_original"] = pps["floor"] / original
    if inproc:
        ratios["pipeline_cost_over_floor"] = pps["floor"] / pps["pipeline"]  # cost per pair, (c)/(b)
        args_seconds = (inproc.get("example_args_seconds") or {}).get("floor")
        if args_seconds and pps["pipeline"]:
            # (b) without its example_args() calls (for information: the definition before model programs)
            lowering_only = inproc["seconds"]["floor"] - args_seconds
            ratios["pipeline_cost_over_floor_lowering_only"] = (
                inproc["method_programs"]["floor"] / lowering_only / pps["pipeline"]
            )
    for key in ("np2", "np1"):
        if key in builders:
            pps[f"builder_{key}"] = builders[key]["pairs_per_second"]
            lps[f"builder_{key}"] = builders[key]["ir_lines_per_second"]
    if "np2" in builders and original:
        ratios["builder_np2_over_original"] = pps["builder_np2"] / original
        ratios["builder_np2_over_original_ir_lines"] = lps["builder_np2"] / lps["original"]
    if "np2" in builders and pps.get("floor"):
        # Two workers at JAX's floor are what num_proc=2 can reach on two cores: (d) over that
        # bound is the builder's efficiency whatever (a) costs (for information).
        ratios["builder_np2_over_two_floors"] = pps["builder_np2"] / (2 * pps["floor"])
    if "np1" in builders and "np2" in builders:
        ratios["np2_over_np1"] = pps["builder_np2"] / pps["builder_np1"]
        rounds = zip(builders["np2"].get("rounds", []), builders["np1"].get("rounds", []))
        for i, (np2, np1) in enumerate(rounds, 1):
            ratios[f"np2_over_np1_round_{i}"] = np2["pairs_per_second"] / np1["pairs_per_second"]
        # The machine is shared: a build may get fewer cores than it has workers. Pairs per CPU
        # second show the per-core efficiency; "if 2 cores" projects it onto two free cores.
        per_core = {
            k: builders[k]["pairs_per_second"] * builders[k]["process_seconds"] / builders[k]["cpu_seconds"]
            for k in ("np1", "np2")
        }
        ratios["np2_per_core_over_np1_per_core"] = per_core["np2"] / per_core["np1"]
        ratios["np2_over_np1_if_2_cores"] = 2 * per_core["np2"] / per_core["np1"]
        if original:  # (a) as measured (its compiles already use more than one core) against (d) on 2 free cores
            ratios["np2_over_original_if_2_cores"] = 2 * per_core["np2"] / original
    if "np2_large" in builders and "np2" in builders:
        ratios["worker_rss_large_over_small"] = (
            builders["np2_large"]["worker_peak_rss_mb"] / builders["np2"]["worker_peak_rss_mb"]
        )
    halves = builders.get("np2_large", {}).get("worker_rss_halves_mb")
    if halves:
        ratios["large_build_rss_second_half_over_first"] = halves[1] / halves[0]
    # Only builder workers count as "a worker": this process also compiles for (a) and keeps
    # XLA executables alive (its peak is in the JSON).
    peak = max((b["worker_peak_rss_mb"] for b in builders.values()), default=None)
    checks = {}
    speedup = targets["builder_np2_over_original"]
    if "builder_np2_over_original" in ratios:
        checks[f"(d) >= {speedup:g}x (a)"] = ratios["builder_np2_over_original"] >= speedup
    if "pipeline_cost_over_floor" in ratios:
        limit = targets["pipeline_cost_over_floor_max"]
        checks[f"(c) <= {limit:g}x (b) per pair"] = ratios["pipeline_cost_over_floor"] <= limit
    if "np2_over_np1" in ratios:
        checks[f"num_proc=2 >= {targets['np2_over_np1']:g}x num_proc=1"] = (
            ratios["np2_over_np1"] >= targets["np2_over_np1"]
        )
    if peak is not None:
        limit = targets["peak_worker_rss_mb_max"]
        checks[f"peak RSS per worker <= {limit:g} MB"] = peak <= limit
    if "large_build_rss_second_half_over_first" in ratios:
        large = builders["np2_large"]
        limit = targets["large_build_rss_growth_max"]
        what = (
            f"{large['rows']:,}-row {large['config']} build" if large.get("config") else f"{large['rows']:,}-row build"
        )
        checks[f"no accumulation: {what}'s 2nd-half worker RSS <= {limit:g}x its 1st half"] = (
            ratios["large_build_rss_second_half_over_first"] <= limit
        )
    return {
        "pairs_per_second": pps,
        "ir_lines_per_second": lps,
        "ratios": ratios,
        "peak_worker_rss_mb": peak,
        "checks": checks,
    }


def _rate_text(rate: float | None, width: int, digits: int = 1) -> str:
    return f"{rate:>{width}.{digits}f}" if rate is not None else f"{'-':>{width}}"


def render_table(title: str, inproc: dict | None, builders: dict, summary: dict) -> str:
    pps, lps = summary["pairs_per_second"], summary["ir_lines_per_second"]
    base = pps.get("original")
    header = (
        f"{'method':<44} {'pairs':>6} {'pairs/s':>8} {'IR lines/s':>10} {'x (a)':>6} {'cores used':>10} "
        f"{'peak RSS/worker MB':>19}"
    )
    lines = [title, header, "-" * len(header)]

    def row(label, pairs, rate, line_rate, cores, rss):
        rss_text = f"{rss:.0f}" if rss is not None else "-"
        ratio = rate / base if base and rate is not None else None
        cores_text = _rate_text(cores, 10, 2)
        lines.append(
            f"{label:<44} {pairs:>6} {_rate_text(rate, 8)} {_rate_text(line_rate, 10, 0)} {_rate_text(ratio, 6, 2)} "
            f"{cores_text} {rss_text:>19}"
        )

    if inproc:
        # one process ran (a), (b) and (c): its peak is in the JSON
        def cores(name):  # XLA compiles with several threads, so (a) uses more than one core
            s = inproc["seconds"][name]
            return inproc["method_cpu_seconds"][name] / s if s else None

        made = inproc["method_programs"]
        for name, label in (
            ("original", "(a) original: args+lower+compile+cost+text"),
            ("floor", "(b) floor: args+lower+as_text+lowered.cost"),
            ("pipeline", "(c) pipeline, one process"),
        ):
            row(label, made[name], pps[name], lps[name], cores(name), None)
    labels = {
        "np1": "(d) load_dataset num_proc=1",
        "np2": "(d) load_dataset num_proc=2",
        "np2_large": "(d) load_dataset num_proc=2, memory build",
    }
    for key, label in labels.items():
        if key in builders:
            b = builders[key]
            cores = b["cpu_seconds"] / b["process_seconds"]
            row(label, b["rows"], b["pairs_per_second"], b["ir_lines_per_second"], cores, b["worker_peak_rss_mb"])
    lines.append("")
    if inproc:
        left_out = inproc["left_out_of_original"].get("symbolic_shapes", 0)
        if left_out:
            lines.append(
                f"(a) left out {left_out} of {inproc['programs']} programs: symbolic shapes cannot be compiled; "
                f"its rates are over the {inproc['method_programs']['original']} it made"
            )
        for devices, n in inproc["host_devices_programs"].items():
            lines.append(
                f"(a) and (b) lowered {n} multi-device program{'s' if n != 1 else ''} in a child process with "
                f"{devices} host CPU devices (timed there)"
            )
    halves = builders.get("np2_large", {}).get("worker_rss_halves_mb")
    if halves:
        large = builders["np2_large"]
        lines.append(
            f"worker RSS over the {large['rows']:,}-row memory build: {halves[0]:.0f} MB peak in its 1st half, "
            f"{halves[1]:.0f} MB in its 2nd ({halves[1] / halves[0]:.2f}x)"
        )
    if lines[-1]:
        lines.append("")
    for name, value in summary["ratios"].items():
        lines.append(f"{name:<40} {value:6.2f}")
    lines.append("")
    for name, ok in summary["checks"].items():
        lines.append(f"[{'ok' if ok else 'MISS'}] {name}")
    return "\n".join(lines)


def section_title(config: BenchConfig, rows: int, rows_per_shard: int) -> str:
    from generator.core.categories import MODEL_CATEGORIES

    ops = "" if set(config.categories) <= set(MODEL_CATEGORIES) else "medium op programs, "
    return (
        f"== {config.label}: {len(config.categories)} categories, {config.mixture} mixture, {ops}"
        f"{rows} train + {validation_rows(rows)} validation + {validation_rows(rows)} test rows, {rows_per_shard}-row shards =="
    )


# ---------------------------------------------------------------- main


def run_section(config: BenchConfig, args: argparse.Namespace, large: BenchConfig | None) -> dict:
    """One config: (a)(b)(c) half before and half after the (d) builds; then the memory build if ``large`` is this config."""
    print(f"\n== {config.label} ==", flush=True)
    rows = rows_for(args.rows, config.name)
    program_set_shards = program_set(config, rows, args.rows_per_shard, args.seed)
    inproc = InProcess(first_rows(program_set_shards, args.programs), args.seed + 1, config)
    # Half of (a)(b)(c) before the builds and half after, the num_proc builds in ABBA order:
    # the machine's speed drifts during a run, and this way the drift weighs on both sides
    # of every ratio.
    middle = (len(inproc.tasks) + 1) // 2 if args.rounds else len(inproc.tasks)
    total = sum(t.num_rows for t in inproc.tasks)
    try:
        print(f"(a)(b)(c): {sum(t.num_rows for t in inproc.tasks[:middle])} of {total} programs ...", flush=True)
        inproc.run_until(middle)
        builders = {}
        if args.rounds:
            runs: dict[str, list[dict]] = {"np2": [], "np1": []}
            for key in scaling_order(args.rounds):
                num_proc = 2 if key == "np2" else 1
                print(f"(d): load_dataset {config.label} train_size={rows} num_proc={num_proc} ...", flush=True)
                runs[key].append(bench_builder(rows, num_proc, args.rows_per_shard, args.seed, config))
            builders = {key: pool_rounds(r) for key, r in runs.items()}
            print(f"(a)(b)(c): the other {total - len(inproc.ids)} programs ...", flush=True)
            inproc.run_until(len(inproc.tasks))
            # the same programs: every build made exactly the rows (c) made, in the same order
            if inproc.next_shard == len(program_set_shards):
                check_same_programs(inproc.ids, runs, args.code_fingerprint)
            for build in (b for r in runs.values() for b in r):
                del build["ids"]
    finally:
        inproc.close()
    if large is not None and large.name == config.name:
        builders["np2_large"] = memory_build(config, args)
    result = inproc.result()
    targets = targets_for(config)
    summary = summarize(result, builders, targets)
    table = render_table(section_title(config, rows, args.rows_per_shard), result, builders, summary)
    return {
        "config": config.name,
        "categories": config.categories,
        "mixture": config.mixture,
        "rows": rows,
        "in_process": result,
        "builder": builders,
        **summary,
        "targets": targets,
        "table": table,
    }


def memory_build(config: BenchConfig, args: argparse.Namespace) -> dict:
    print(f"(d): load_dataset {config.label} train_size={args.large_rows} num_proc=2 (memory) ...", flush=True)
    build = bench_builder(args.large_rows, 2, args.rows_per_shard, args.seed, config)
    del build["ids"]
    return build


def memory_section(config: BenchConfig, args: argparse.Namespace) -> dict:
    """The memory build of a config the run does not otherwise measure."""
    print(f"\n== {config.label}: memory build ==", flush=True)
    builders = {"np2_large": memory_build(config, args)}
    targets = targets_for(config)
    summary = summarize(None, builders, targets)
    title = f"== {config.label}: memory build only, {args.rows_per_shard}-row shards =="
    table = render_table(title, None, builders, summary)
    return {"config": config.name, "categories": config.categories, "builder": builders, **summary, "table": table}


def machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What a result's figures were measured on: cores, Python, JAX, and the load around the run."""
    import jax

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[BenchConfig], BenchConfig | None]:
    """The options, the configs of the run's sections, and the memory build's config (None: no memory build)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        default=os.environ.get("BENCH_CONFIGS", ",".join(DEFAULT_CONFIGS)),
        help="comma-separated builder configs, one section each, in order (default: models,balanced)",
    )
    p.add_argument(
        "--rows",
        default=os.environ.get("BENCH_ROWS", ""),
        help="train rows of each config's program set (validation and test: a tenth each): the (d) builds build it, (a)(b)(c) "
        f"run on it. N for every config, or CONFIG=N,... (others: {default_rows_text()})",
    )
    p.add_argument(
        "--programs",
        type=int,
        default=_env_int("BENCH_PROGRAMS", 0),
        help="run (a)(b)(c) on the first rows of every shard of the set, this many programs in all (0: all of them)",
    )
    p.add_argument(
        "--large-rows",
        type=int,
        default=_env_int("BENCH_LARGE_ROWS", 2000),
        help="train rows of the num_proc=2 build for memory flatness (0: skip)",
    )
    p.add_argument(
        "--large-config",
        default=os.environ.get("BENCH_LARGE_CONFIG", "models"),
        help="config of the memory build (default: models)",
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
        default=os.environ.get("BENCH_CATEGORIES", ""),
        help="comma-separated categories overriding every config's own (default: none, each config's own)",
    )
    p.add_argument(
        "--output", type=Path, default=None, help="JSON file (default benchmarks/results/throughput-<time>.json)"
    )
    args = p.parse_args(argv)
    try:
        for name in select_configs(args.config):
            rows_for(args.rows, name)
        override = tuple(c.strip() for c in args.categories.split(",") if c.strip()) or None
        configs = [bench_config(name, override) for name in select_configs(args.config)]
        large = bench_config(select_configs(args.large_config)[0], override) if args.large_rows else None
    except ValueError as e:
        p.error(str(e))
    return args, configs, large


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--builder-child"]:
        _builder_child(int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), argv[5], argv[6])
        return 0
    if argv[:1] == ["--host-devices-child"]:
        from generator.runtime.child import serve

        serve(_host_devices_child_answer, setup=_host_devices_child_setup, ready=True)
        return 0
    args, configs, large = parse_args(argv)
    # what decides rows, as this process imports it: the builds import it again later
    import generator
    import generator.core.lowering
    import generator.runtime.shards  # noqa: F401

    args.code_fingerprint = generator.code_fingerprint()

    load_before = os.getloadavg()
    started = time.strftime("%Y%m%dT%H%M%S")
    sections = {}
    for config in configs:
        sections[config.label] = run_section(config, args, large)
        print("\n" + sections[config.label]["table"], flush=True)
    if large is not None and large.name not in {c.name for c in configs}:
        label = f"{large.label} (memory)"
        sections[label] = memory_section(large, args)
        print("\n" + sections[label]["table"], flush=True)
    table = "\n\n".join(s["table"] for s in sections.values())

    result = {
        "started": started,
        "command": "python benchmarks/bench_throughput.py " + " ".join(argv),
        "configs": [c.label for c in configs],
        "code_fingerprint": args.code_fingerprint,
        "machine": machine_info(load_before),
        "sections": sections,
        "table": table,
    }
    out = args.output or ROOT / "benchmarks" / "results" / f"throughput-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
