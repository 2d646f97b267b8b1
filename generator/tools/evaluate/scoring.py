"""The benchmark scorer: predictions against a split's rows, layer by layer, into a report.

Layers per task (each reported over all of the task's rows; a layer an answer never reached
counts as failed, so a row that does not parse fails every layer after ``parses``):

- ``forward`` (predicted StableHLO): ``parses`` (jaxlib's MLIR parses and verifies it),
  ``signature`` (``main``'s argument and result types are the reference's), ``exact`` (the text
  equals the reference, leading and trailing whitespace aside), ``normalized`` (equal as MLIR
  prints both once parsed, without the module's name: up to value names and locations),
  ``agrees`` (XLA compiles it from its text and its outputs on the validator's inputs match the
  reference's within the validator's tolerances);
- ``reverse`` (predicted Python, run only with ``execute_predictions``): ``runs`` (it executes,
  defines the function the row names and ``example_args()``, which runs), ``exact`` (it lowers to
  the reference IR, up to the module name and value names), ``agrees`` (its lowered IR has the
  reference's signature and matches its outputs);
- ``cost`` (predicted cost figures): ``parses`` (all three figures, as the cost view prints them),
  one layer per figure (within 10% of the reference), ``all`` (all three within 10%), and each
  figure's relative error;
- ``optimize`` (predicted optimized HLO): ``parses`` (XLA's HLO parser takes it), ``exact``,
  ``agrees``.

``agrees`` leaves out rows it cannot run here, counted by reason in ``agrees_cap``: over the
cost cap (``CAP_FLOPS``, ``CAP_BYTES``), multi-device rows, rows with symbolic shapes, and rows
whose reference does not run.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .data import load_split, read_predictions
from .irtools import COST_FIGURES, parse_cost_text, reference_cost, relative_error
from .pool import Limits, Scored, Worker
from .worker import MISSING, UNPARSEABLE, WRONG_VALUES

TASKS: dict[str, tuple[str, ...]] = {
    "forward": ("parses", "signature", "exact", "normalized", "agrees"),
    "reverse": ("runs", "exact", "agrees"),
    "cost": ("parses", *COST_FIGURES, "all"),
    "optimize": ("parses", "exact", "agrees"),
}
# The layer that decides whether an answer is right (its failure class is the answer's), and the
# one that decides instead for rows left out of ``agrees``.
DECIDING = {"forward": ("agrees", "normalized"), "reverse": ("agrees", "exact"), "optimize": ("agrees", "exact")}
# What a task's reference is: rows without it are not part of the task.
REFERENCE_COLUMN = {"forward": "stablehlo_ir", "reverse": "python_source", "optimize": "optimized_hlo"}

# The cost cap of ``agrees``: rows above it are left out. Every op-table row of a 1,000-row
# balanced split is below it (at most 4.8e7 flops, 6.3e8 bytes accessed); real-sized model rows
# are far above (median 3.2e11 flops; a 1.8e9-flop decoding loop ran 46 s on one core).
CAP_FLOPS = 1e8
CAP_BYTES = 1e9
CAP_RULE = f"flops <= {CAP_FLOPS:.0e} and bytes_accessed <= {CAP_BYTES:.0e} (XLA's cost analysis of the reference)"
COST_TOLERANCE = 0.10
COST_WITHIN = f"relative error |p - r| / max(|r|, 1) <= {COST_TOLERANCE:g}"


class RefusedError(ValueError):
    """Refused to run predicted code without ``execute_predictions``."""


def check_task(task: str) -> str:
    """``task`` if it is a task, else a ``ValueError`` naming the valid ones."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task


def agrees_exclusion(row: Mapping[str, Any]) -> str | None:
    """Why a row is left out of ``agrees`` before anything runs, or ``None``."""
    from ...core.lowering import HOST_PLATFORM, parse_lowering

    platform, devices, _ = parse_lowering(row.get("lowering") or "jit")
    if platform != HOST_PLATFORM:
        return f"lowered for {platform} (its IR runs only there)"
    if devices > 1:
        return "multi-device (needs 8 partitions; not compiled here)"
    if any(d < 0 for s in row.get("input_signature") or [] for d in s["shape"]) or "tensor<?" in row["stablehlo_ir"]:
        return "symbolic shapes (not refined to static ones here)"
    flops, nbytes = row.get("flops"), row.get("bytes_accessed")
    if flops is None or nbytes is None or flops > CAP_FLOPS or nbytes > CAP_BYTES:
        return "over the cost cap"
    return None


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate, 1 - C(n-c, k) / C(n, k), from ``n`` samples of which ``c`` pass.

    With fewer than ``k`` samples: 1.0 if any passes, else 0.0.
    """
    if n <= 0:
        return 0.0
    if n < k:
        return 1.0 if c > 0 else 0.0
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _row_job(task: str, row: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "category",
        "function_name",
        "python_source",
        "stablehlo_ir",
        "input_signature",
        "optimized_hlo",
        "lowering",
    )
    return {k: row.get(k) for k in keys}


def _host_devices(row: Mapping[str, Any]) -> int:
    from ...core.lowering import host_devices

    return host_devices(row.get("lowering") or "jit")


class Workers:
    """The scoring workers of one evaluation, kept from one ``run_jobs`` to the next.

    The references' jobs and the answers' jobs run on the same processes: a worker's start
    (a fresh interpreter importing JAX) took two to four seconds here, paid once per worker instead of
    once per phase. A worker that died or asked to be restarted starts again on its next job, as
    before. ``close`` ends them all.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._idle: dict[int, list[Worker]] = defaultdict(list)
        self._lock = threading.Lock()

    def take(self, host_devices: int) -> Worker:
        """An idle worker with ``host_devices`` CPU devices, or a new one (started on its first job)."""
        with self._lock:
            if self._idle[host_devices]:
                return self._idle[host_devices].pop()
        return Worker(self.limits, host_devices)

    def give_back(self, worker: Worker) -> None:
        with self._lock:
            self._idle[worker.host_devices].append(worker)

    def close(self) -> None:
        with self._lock:
            idle = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for w in idle:
            w.close()


def run_jobs(
    jobs: Sequence[dict[str, Any]],
    limits: Limits,
    workers: int,
    progress: Callable[[int], None] | None = None,
    *,
    pool: Workers | None = None,
) -> list[Scored]:
    """Score ``jobs`` in ``workers`` worker processes (one thread each drives its own); results in order.

    A job's ``host_devices`` picks a worker with that many CPU devices (started when first needed).
    ``pool``: the workers to take from and give back (kept for the caller's next jobs); by
    default, workers of this call alone, closed when it returns.
    """
    if pool is None:
        pool = Workers(limits)
        try:
            return run_jobs(jobs, limits, workers, progress, pool=pool)
        finally:
            pool.close()
    if pool.limits != limits:
        raise ValueError(f"the pool's workers run under {pool.limits}, not {limits}")
    results: list[Scored | None] = [None] * len(jobs)
    lock = threading.Lock()
    next_job = iter(range(len(jobs)))

    def drive() -> None:
        own: dict[int, Worker] = {}
        try:
            while True:
                with lock:
                    i = next(next_job, None)
                if i is None:
                    return
                job = dict(jobs[i])
                devices = job.pop("host_devices", 1)
                if devices not in own:
                    own[devices] = pool.take(devices)
                results[i] = own[devices].score(job)
                if progress is not None:
                    with lock:
                        progress(1)
        finally:
            for w in own.values():
                pool.give_back(w)

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            drive()
        except BaseException as e:  # a worker that cannot start: surfaced in the caller
            errors.append(e)

    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(max(1, min(workers, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r if r is not None else Scored() for r in results]


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        return None, lambda n: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="answer")
    return bar, bar.update


def _score_cost(row: Mapping[str, Any], prediction: str) -> Scored:
    """The cost layers of one answer: text only, nothing runs."""
    result = Scored()
    ref = reference_cost(row)
    got = parse_cost_text(prediction)
    result.layers["parses"] = got is not None
    if got is None:
        result.failures["parses"] = (UNPARSEABLE, "not three finite figures: flops, transcendentals, bytes accessed")
        return result
    errors = {k: relative_error(got[k], ref[k]) for k in COST_FIGURES}
    for k in COST_FIGURES:
        result.layers[k] = errors[k] <= COST_TOLERANCE
        if not result.layers[k]:
            result.failures[k] = (WRONG_VALUES, f"relative error {errors[k]:.3g}")
    result.layers["all"] = all(result.layers[k] for k in COST_FIGURES)
    if not result.layers["all"]:
        result.failures["all"] = (WRONG_VALUES, ", ".join(f"{k} {errors[k]:.3g}" for k in COST_FIGURES))
    result.errors = errors
    return result


def _answer_class(task: str, scored: Scored, in_agrees: bool) -> str | None:
    """The failure class of a wrong answer (``None`` if right): the deciding layer's, else the
    first failure the answer met."""
    layers = TASKS[task]
    if task == "cost":
        deciding = "all"
    else:
        deciding = DECIDING[task][0] if in_agrees else DECIDING[task][1]
    if scored.layers.get(deciding):
        return None
    if deciding in scored.failures:
        return scored.failures[deciding][0]
    if "*" in scored.failures:
        return scored.failures["*"][0]
    for layer in layers:
        if layer in scored.failures:
            return scored.failures[layer][0]
    return MISSING


def evaluate(
    task: str,
    predictions: str | os.PathLike | Iterable[Mapping[str, Any]],
    staged: str | os.PathLike,
    config: str,
    split: str = "test",
    *,
    execute_predictions: bool = False,
    workers: int = 2,
    limits: Limits | None = None,
    progress: bool = False,
    answers: bool = True,
) -> dict[str, Any]:
    """Score predictions against one split of a staged config; the report as a dict.

    Args:
      task: ``forward``, ``reverse``, ``cost`` or ``optimize``.
      predictions: a JSONL file, or an iterable, of ``{"id": ..., "prediction": ...}``; several
        per id are samples (pass@k). An id of the split without one is a wrong answer
        (``missing_answer``); an id not in the split is an error naming it.
      staged: a staged folder (``<staged>/<config>/<split>-0000i-of-0000N.parquet``).
      config: the pairs config (e.g. ``balanced``).
      split: any split the config holds (``ValueError`` naming them otherwise).
      execute_predictions: allow running predicted Python (the reverse task); refused without.
      workers: worker processes scoring answers in parallel.
      limits: per-answer time, CPU and memory limits of the workers (``Limits()`` by default).
      progress: draw a progress bar on stderr.
      answers: include every answer's layers and failure in the report (``answers``).

    Returns:
      The report: ``task``, ``config``, ``split``, ``rows``, ``samples``, ``k``, ``layers``
      (layer -> ``rate`` (pass@1), ``pass_at_k``, ``denominator``), ``categories`` (category ->
      the same per layer), ``failures`` (class -> wrong answers), ``failures_by_layer``,
      ``agrees_cap`` (``rule``, ``left_out``, ``by_reason``), ``seconds``, and for ``cost``
      ``relative_error`` per figure; ``answers`` with ``answers=True``.

    Raises:
      RefusedError: ``task`` is ``reverse`` and ``execute_predictions`` is false (before any work).
      ValueError: an unknown task, config or split, a malformed predictions file, ids not in the split.
    """
    start = time.monotonic()
    check_task(task)
    if task == "reverse" and not execute_predictions:
        raise RefusedError(
            "refusing to run predicted Python (the reverse task executes it): pass execute_predictions=True "
            "(--execute-predictions) to run it in limited worker processes, which are not a security sandbox"
        )
    if not workers >= 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    limits = limits or Limits()
    rows = load_split(staged, config, split)
    preds = read_predictions(predictions)
    by_id: dict[str, list[str]] = defaultdict(list)
    for p in preds:
        by_id[p["id"]].append(p["prediction"])
    known = {r["id"] for r in rows}
    unknown = [i for i in by_id if i not in known]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction ids are not in {config}/{split}: {', '.join(map(repr, unknown[:5]))}"
            + (" ..." if len(unknown) > 5 else "")
        )
    if task == "cost":
        scored_rows = [r for r in rows if reference_cost(r) is not None]
    else:
        scored_rows = [r for r in rows if r.get(REFERENCE_COLUMN[task])]
    if not scored_rows:
        need = " (stage with --with-optimized-hlo)" if task == "optimize" else ""
        raise ValueError(f"no row of {config}/{split} has a reference for task {task!r}{need}")

    # Which rows enter agrees: the cap and kinds we cannot run, then each reference once.
    left_out: dict[str, str] = {}
    reference_failures: list[dict[str, Any]] = []
    in_agrees: set[str] = set()
    cache = Path(tempfile.mkdtemp(prefix="jsp-eval-ref-"))
    pool = Workers(limits)  # the references' workers score the answers too
    try:
        if "agrees" in TASKS[task]:
            for r in scored_rows:
                why = agrees_exclusion(r)
                if why is None:
                    in_agrees.add(r["id"])
                else:
                    left_out[r["id"]] = why
            ref_jobs = [
                {"task": "reference", "row": _row_job(task, r), "cache": str(cache), "optimized": task == "optimize"}
                for r in scored_rows
                if r["id"] in in_agrees
            ]
            bar, update = _progress_bar(len(ref_jobs), "references", progress)
            for job, ref in zip(ref_jobs, run_jobs(ref_jobs, limits, workers, update, pool=pool)):
                if ref.reference != "ok":
                    in_agrees.discard(job["row"]["id"])
                    left_out[job["row"]["id"]] = f"the reference does not run here ({ref.reference})"
                    reference_failures.append(
                        {"id": job["row"]["id"], "category": job["row"]["category"], "detail": ref.reference_detail}
                    )
            if bar is not None:
                bar.close()

        # Every answer: one job each (cost: scored here, nothing runs).
        slots: list[tuple[str, int]] = []
        jobs: list[dict[str, Any]] = []
        for r in scored_rows:
            for s, text in enumerate(by_id.get(r["id"], [])):
                slots.append((r["id"], s))
                jobs.append(
                    {
                        "task": task,
                        "row": _row_job(task, r),
                        "prediction": text,
                        "cache": str(cache),
                        "agrees": r["id"] in in_agrees,
                        "host_devices": _host_devices(r) if task == "reverse" else 1,
                    }
                )
        if task == "cost":
            row_of = {r["id"]: r for r in scored_rows}
            results = [_score_cost(row_of[j["row"]["id"]], j["prediction"]) for j in jobs]
        else:
            bar, update = _progress_bar(len(jobs), f"scoring {task}", progress)
            results = run_jobs(jobs, limits, workers, update, pool=pool)
            if bar is not None:
                bar.close()
    finally:
        pool.close()
        shutil.rmtree(cache, ignore_errors=True)

    per_row: dict[str, list[Scored]] = defaultdict(list)
    for (rid, _), res in zip(slots, results):
        per_row[rid].append(res)
    report = _report(task, config, split, scored_rows, per_row, in_agrees, left_out)
    report["rows_without_reference"] = len(rows) - len(scored_rows)
    if "agrees_cap" in report:
        report["agrees_cap"]["reference_failures"] = reference_failures
    if answers:
        report["answers"] = [
            {
                "id": rid,
                "sample": s,
                "layers": res.layers,
                "failure": _answer_class(task, res, rid in in_agrees),
                "details": {layer: detail for layer, (_, detail) in res.failures.items() if detail},
            }
            for (rid, s), res in zip(slots, results)
        ]
    report["seconds"] = round(time.monotonic() - start, 2)
    return report


def _report(
    task: str,
    config: str,
    split: str,
    rows: Sequence[Mapping[str, Any]],
    per_row: Mapping[str, list[Scored]],
    in_agrees: set[str],
    left_out: Mapping[str, str],
) -> dict[str, Any]:
    layers = TASKS[task]
    counts = [len(per_row.get(r["id"], [])) for r in rows]
    k = max(counts, default=0) or 1
    failures: Counter[str] = Counter()
    by_layer: dict[str, Counter[str]] = {layer: Counter() for layer in layers}
    # (category or None for overall, layer) -> [sum pass@1, sum pass@k, denominator]
    sums: dict[tuple[str | None, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    errors: dict[str, list[float]] = {f: [] for f in COST_FIGURES}
    for r in rows:
        results = per_row.get(r["id"], [])
        agrees = r["id"] in in_agrees
        if not results:
            failures[MISSING] += 1
        for res in results:
            why = _answer_class(task, res, agrees)
            if why is not None:
                failures[why] += 1
            for layer in layers:
                if not res.layers.get(layer) and (layer != "agrees" or agrees):
                    # a layer an earlier failure decided counts under that answer's class
                    earlier = (why or "different_text", None)
                    by_layer[layer][res.failures.get(layer, res.failures.get("*", earlier))[0]] += 1
            if res.errors is not None:
                for f in COST_FIGURES:
                    errors[f].append(res.errors[f])
        for layer in layers:
            if layer == "agrees" and not agrees:
                continue
            n = len(results)
            c = sum(bool(res.layers.get(layer)) for res in results)
            p1 = c / n if n else 0.0
            pk = pass_at_k(n, c, k)
            if not results:
                by_layer[layer][MISSING] += 1
            for key in ((None, layer), (r["category"], layer)):
                sums[key][0] += p1
                sums[key][1] += pk
                sums[key][2] += 1

    def rates(category: str | None) -> dict[str, dict[str, Any]]:
        out = {}
        for layer in layers:
            s1, sk, n = sums.get((category, layer), (0.0, 0.0, 0))
            out[layer] = {
                "rate": round(s1 / n, 4) if n else None,
                "pass_at_k": round(sk / n, 4) if n else None,
                "denominator": int(n),
            }
        return out

    categories = sorted({r["category"] for r in rows})
    reasons = Counter(left_out.values())
    report: dict[str, Any] = {
        "task": task,
        "config": config,
        "split": split,
        "rows": len(rows),
        "samples": sum(counts),
        "k": k,
        "layers": rates(None),
        "categories": {c: rates(c) for c in categories},
        "failures": dict(failures.most_common()),
        "failures_by_layer": {layer: dict(c.most_common()) for layer, c in by_layer.items() if c},
    }
    if "agrees" in layers:
        report["agrees_cap"] = {"rule": CAP_RULE, "left_out": len(left_out), "by_reason": dict(reasons.most_common())}
    if task == "cost":
        report["relative_error"] = {
            f: {
                "median": round(_median(v), 4) if v else None,
                "mean": round(sum(v) / len(v), 4) if v else None,
                "within": COST_WITHIN,
            }
            for f, v in errors.items()
        }
    return report


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a table: one line per category and one overall, a column per layer (pass@1 %)."""
    layers = list(report["layers"])
    head = f"{'category':16s} {'rows':>5s} " + " ".join(f"{layer:>12s}" for layer in layers)
    lines = [
        f"{report['task']} on {report['config']}/{report['split']}: {report['rows']} rows, "
        f"{report['samples']} answers (k = {report['k']}), {report['seconds']} s",
        head,
    ]

    def cells(rates: Mapping[str, Any]) -> str:
        return " ".join(
            f"{'-':>12s}" if rates[layer]["rate"] is None else f"{100 * rates[layer]['rate']:11.1f}%"
            for layer in layers
        )

    for category, rates in report["categories"].items():
        n = max(v["denominator"] for v in rates.values())
        lines.append(f"{category:16s} {n:5d} {cells(rates)}")
    lines.append(f"{'overall':16s} {report['rows']:5d} {cells(report['layers'])}")
    if report["k"] > 1:
        pk = {layer: {"rate": v["pass_at_k"]} for layer, v in report["layers"].items()}
        lines.append(f"{'pass@' + str(report['k']):16s} {report['rows']:5d} {cells(pk)}")
    if "agrees_cap" in report:
        cap = report["agrees_cap"]
        reasons = ", ".join(f"{why}: {n}" for why, n in cap["by_reason"].items()) or "none"
        lines.append(
            f"agrees: {report['layers']['agrees']['denominator']} rows; left out {cap['left_out']} ({reasons})"
        )
        lines.append(f"cost cap: {cap['rule']}")
    if "relative_error" in report:
        for f, e in report["relative_error"].items():
            lines.append(f"{f}: median relative error {e['median']}, mean {e['mean']}")
    if report["failures"]:
        lines.append("wrong answers by class: " + ", ".join(f"{c} {n}" for c, n in report["failures"].items()))
    return "\n".join(lines)
