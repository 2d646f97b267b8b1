"""Checking a built dataset: structure, reproduction, execution with XLA, execution with IREE.

Four checks, from cheap to thorough:

1. structure: every column present with its type, ids derived from the source, op lists
   and line counts consistent with the IR, no repeated id/source/IR, no IR in two splits;
2. reproduce (every row): re-lowering ``python_source`` gives ``stablehlo_ir`` byte for
   byte under the jax version recorded in the row (under another jax version: the same
   op histogram, and the report says so);
3. execute (a sample): ``jax.jit(fn)`` compiles with XLA and runs on concrete inputs made
   from ``example_args()``; outputs match ``output_signature`` and are finite;
4. iree (the same sample, opt-in): IREE compiles ``stablehlo_ir`` on its own and runs it on
   the same inputs; its outputs match JAX's within dtype-aware tolerances.

Checks 2-4 run the rows' code, in a child process with a time limit per row
(``runner``); they need ``trust_code=True`` for rows this tool did not build. Each check's
result on a row is a ``CheckOutcome`` (``outcome``); example inputs and tolerances are in
``numerics``, the iree check and the constructs IREE cannot take (``IREE_UNPORTABLE``) in
``iree``. The package imports no JAX (``--structure-only`` needs none): JAX, numpy and IREE
are imported inside the functions that run code.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.models import MODEL_CATEGORIES, MODEL_LIBRARIES, imported_libraries
from ...core.schema import COLUMNS
from .iree import IREE_UNPORTABLE
from .outcome import CheckOutcome, Status

if TYPE_CHECKING:  # annotations only: validating a folder needs no ``datasets``
    import datasets

__all__ = [
    "CODE_CHECKS",
    "IREE_UNPORTABLE",
    "REFUSAL",
    "CheckOutcome",
    "CheckResult",
    "Report",
    "RowResult",
    "Status",
    "check_structure",
    "validate_dataset",
    "validate_rows",
]

CODE_CHECKS = ("reproduce", "execute", "iree")

REFUSAL = (
    "refusing to run this dataset's python_source: re-lowering and executing rows runs their "
    "code with your user's rights (the child process is not a sandbox), and this tool did not "
    "build these rows. Read the code, then pass --trust-code (trust_code=True), or check "
    "structure only with --structure-only."
)


@dataclass
class CheckResult:
    """Counts of one check over the rows it ran on."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    notes: Counter[str] = field(default_factory=Counter)

    @property
    def ran(self) -> int:
        return self.passed + self.failed

    def count(self, outcome: CheckOutcome) -> None:
        """Count one row's outcome; a pass's or skip's note is counted by its text."""
        if outcome.status == Status.PASS:
            self.passed += 1
        elif outcome.status == Status.SKIP:
            self.skipped += 1
        else:
            self.failed += 1
            return
        if outcome.note:
            self.notes[outcome.note] += 1


@dataclass(frozen=True)
class RowResult:
    """The code checks' outcomes on one row (``Report.row_results``).

    Attributes:
      id, category: the row's columns of those names.
      split: the split the row came from ("" if unknown).
      checks: per check that ran on the row (``reproduce``, ``execute``, ``iree``), its outcome.
    """

    id: str
    category: str
    split: str
    checks: Mapping[str, CheckOutcome]

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "category", "split", "checks": {name: CheckOutcome.to_dict()}}``, for ``--report-json``."""
        return {
            "id": self.id,
            "category": self.category,
            "split": self.split,
            "checks": {name: outcome.to_dict() for name, outcome in self.checks.items()},
        }


@dataclass
class Report:
    """What ``validate_rows`` found.

    Attributes:
      config: name of the config checked ("" for a plain folder).
      rows: rows in all splits; ``split_rows``: per split.
      unique_ids, unique_sources: distinct values over all splits.
      cross_split_ir: normalized IR texts found in more than one split.
      cross_split_structures: ``structure`` keys found in more than one split.
      misplaced_structures: rows of a ``train``/``validation``/``test`` split whose structure
        belongs to another split (``core.structure.split_of``).
      missing_columns, extra_columns: column names against the schema.
      checks: per check name (``structure`` and ``CODE_CHECKS``), its counts.
      failures: one line per failure, ``<id>: <check>: <why>``.
      notes: things the reader must know (e.g. a different jax version).
      refused: why code checks did not run, if they were asked for but not allowed.
      row_results: per row that ran code, its ``RowResult``; ``to_json`` writes each as
        ``{"id", "category", "split", "checks": {name: {"status", "detail"?, "note"?}}}``
        (``--report-json``).
    """

    config: str = ""
    rows: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)
    unique_ids: int = 0
    unique_sources: int = 0
    cross_split_ir: int = 0
    cross_split_structures: int = 0
    misplaced_structures: int = 0
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    checks: dict[str, CheckResult] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    row_results: list[RowResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.rows > 0
            and self.refused is None
            and not self.missing_columns
            and not self.extra_columns
            and not self.failures
            and self.unique_ids == self.rows
            and self.unique_sources == self.rows
            and self.cross_split_ir == 0
            and self.cross_split_structures == 0
            and self.misplaced_structures == 0
            and all(c.failed == 0 for c in self.checks.values())
        )

    def reduced_size_counts(self) -> dict[str, dict[str, int]]:
        """Per execution check, counts over the model rows alone (they run at reduced size)."""
        counts: dict[str, dict[str, int]] = {}
        for r in self.row_results:
            if r.category not in MODEL_CATEGORIES:
                continue
            for name, outcome in r.checks.items():
                if name == "reproduce":
                    continue
                c = counts.setdefault(name, {"passed": 0, "failed": 0, "skipped": 0, "ran": 0})
                key = {Status.PASS: "passed", Status.FAIL: "failed", Status.SKIP: "skipped"}[outcome.status]
                c[key] += 1
                c["ran"] += key != "skipped"
        return counts

    def format(self) -> str:
        pct = lambda a, b: 100.0 * a / b if b else 0.0  # noqa: E731
        head = f"config {self.config!r}: " if self.config else ""
        splits = ", ".join(f"{s} {n}" for s, n in self.split_rows.items())
        lines = [
            f"{head}{self.rows} rows ({splits})",
            f"unique: ids {pct(self.unique_ids, self.rows):.1f}%, sources {pct(self.unique_sources, self.rows):.1f}%; "
            f"IR shared across splits: {self.cross_split_ir}; structures shared across splits: "
            f"{self.cross_split_structures}; rows outside their structure's split: {self.misplaced_structures}",
        ]
        if self.missing_columns:
            lines.append(f"missing columns: {', '.join(self.missing_columns)}")
        if self.extra_columns:
            lines.append(f"unexpected columns: {', '.join(self.extra_columns)}")
        for name, c in self.checks.items():
            notes = "".join(f"; {k}: {n}" for k, n in sorted(c.notes.items()))
            skipped = f", {c.skipped} skipped" if c.skipped else ""
            lines.append(f"{name:<10} {c.passed}/{c.ran} pass ({pct(c.passed, c.ran):.1f}%){skipped}{notes}")
        reduced = self.reduced_size_counts()
        if reduced:
            parts = [
                f"{name} {c['passed']}/{c['ran']} pass" + (f", {c['skipped']} skipped" if c["skipped"] else "")
                for name, c in reduced.items()
            ]
            lines.append(f"model rows, executed at reduced size: {'; '.join(parts)}")
        if self.summary:
            from ..stats import format_summary

            lines.append(format_summary(self.summary))
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"FAIL {f}" for f in self.failures[:30]]
        if len(self.failures) > 30:
            lines.append(f"... and {len(self.failures) - 30} more failures")
        if self.refused:
            lines.append(f"REFUSED: {self.refused}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data: counts per check, every failure, and each row's results."""
        return {
            "config": self.config,
            "ok": self.ok,
            "rows": self.rows,
            "split_rows": self.split_rows,
            "unique_ids": self.unique_ids,
            "unique_sources": self.unique_sources,
            "cross_split_ir": self.cross_split_ir,
            "cross_split_structures": self.cross_split_structures,
            "misplaced_structures": self.misplaced_structures,
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
            "checks": {
                name: {"passed": c.passed, "failed": c.failed, "skipped": c.skipped, "notes": dict(c.notes)}
                for name, c in self.checks.items()
            },
            "reduced_size": self.reduced_size_counts(),
            "failures": self.failures,
            "notes": self.notes,
            "refused": self.refused,
            "row_results": [r.to_dict() for r in self.row_results],
        }


# --- structure ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_signature(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(s, dict)
        and set(s) == {"shape", "dtype"}
        and isinstance(s["dtype"], str)
        and isinstance(s["shape"], list)
        and all(_is_int(d) and d >= -1 for d in s["shape"])  # -1: a symbolic dimension
        for s in v
    )


_TYPE_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "float64": ("a number", lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))),
    "int32": ("an int32", lambda v: _is_int(v) and -(2**31) <= v < 2**31),
    "string": ("a string", lambda v: isinstance(v, str)),
    "strings": ("a list of strings", _is_str_list),
    "signature": ("a list of {shape, dtype}", _is_signature),
}


# Columns that may be null (numbers may always be: a cost figure XLA does not report).
NULLABLE = {"optimized_hlo", "optimized_hlo_tokens", "mesh", "flax_version", "optax_version", "equinox_version"}


def _kind(feature: Any) -> str:
    if isinstance(feature, list):
        return "signature" if isinstance(feature[0], dict) else "strings"
    return feature.dtype


def _row_problems(r: dict[str, Any]) -> list[str]:
    """Type and consistency problems of one row that has every column."""
    from ...core.irtext import stablehlo_ops
    from ...core.tokens import count_tokens
    from ...core.views import TOKEN_COLUMNS

    problems = []
    for name, (feature, _) in COLUMNS.items():
        what, ok = _TYPE_CHECKS[_kind(feature)]
        if not ok(r[name]) and not (name in NULLABLE and r[name] is None):
            problems.append(f"{name} is not {what}: {str(r[name])[:60]!r}")
    if problems:
        return problems
    if r["id"] != hashlib.sha256(r["python_source"].encode()).hexdigest()[:16]:
        problems.append("id is not sha256(python_source)[:16]")
    ops = stablehlo_ops(r["stablehlo_ir"])
    if r["stablehlo_ops"] != sorted(ops) or r["num_stablehlo_ops"] != sum(ops.values()):
        problems.append("stablehlo_ops/num_stablehlo_ops do not match stablehlo_ir")
    if r["stablehlo_lines"] != r["stablehlo_ir"].count("\n"):
        problems.append("stablehlo_lines does not match stablehlo_ir")
    for text, column in TOKEN_COLUMNS.items():
        if r[text] is None:
            if r[column] is not None:
                problems.append(f"{column} is {r[column]} but {text} is null")
        elif r[column] != count_tokens(r[text]):
            problems.append(f"{column} is {r[column]} but {text} has {count_tokens(r[text])} tokens")
    if f"def {r['function_name']}(" not in r["python_source"]:
        problems.append(f"python_source defines no function {r['function_name']!r}")
    imported = imported_libraries(r["python_source"])
    for lib in MODEL_LIBRARIES:
        if (r[f"{lib}_version"] is not None) != (lib in imported):
            problems.append(
                f"{lib}_version is {r[f'{lib}_version']!r} but python_source {'imports' if lib in imported else 'does not import'} {lib}"
            )
    return problems


def check_structure(rows_by_split: Mapping[str, list[dict[str, Any]]], report: Report) -> list[dict[str, Any]]:
    """Fill ``report``'s structure fields; return the rows whose code checks may run."""
    from ...core.irtext import normalize_ir
    from ...core.structure import SPLITS, split_of

    all_rows = [r for rows in rows_by_split.values() for r in rows]
    report.rows = len(all_rows)
    report.split_rows = {s: len(rows) for s, rows in rows_by_split.items()}
    result = report.checks.setdefault("structure", CheckResult())
    if not all_rows:
        report.failures.append("dataset: structure: no rows")
        return []
    columns = set().union(*(r.keys() for r in all_rows))
    report.missing_columns = [c for c in COLUMNS if any(c not in r for r in all_rows)]
    report.extra_columns = sorted(columns - set(COLUMNS))
    if report.missing_columns:
        result.failed = len(all_rows)
        return []
    good = []
    for r in all_rows:
        problems = _row_problems(r)
        if problems:
            result.failed += 1
            report.failures.append(f"{r['id']}: structure: {'; '.join(problems)}")
        else:
            result.passed += 1
            good.append(r)
    report.unique_ids = len({r["id"] for r in all_rows})
    report.unique_sources = len({r["python_source"] for r in all_rows})
    ir_splits: dict[str, set[str]] = {}
    within = 0
    for split, rows in rows_by_split.items():
        seen = set()
        for r in rows:
            if not isinstance(r["stablehlo_ir"], str):
                continue
            key = normalize_ir(r["stablehlo_ir"])
            within += key in seen
            seen.add(key)
            ir_splits.setdefault(key, set()).add(split)
    report.cross_split_ir = sum(len(s) > 1 for s in ir_splits.values())
    structure_splits: dict[str, set[str]] = {}
    for split, rows in rows_by_split.items():
        for r in rows:
            structure_splits.setdefault(r["structure"], set()).add(split)
            if split in SPLITS and split_of(str(r["structure"])) != split:
                report.misplaced_structures += 1
    report.cross_split_structures = sum(len(s) > 1 for s in structure_splits.values())
    for what, n in (("ids", report.rows - report.unique_ids), ("sources", report.rows - report.unique_sources)):
        if n:
            report.failures.append(f"dataset: structure: {n} repeated {what}")
    if within:
        report.failures.append(f"dataset: structure: {within} rows repeat another row's IR within their split")
    if report.cross_split_ir:
        report.failures.append(f"dataset: structure: {report.cross_split_ir} IR texts appear in more than one split")
    if report.cross_split_structures:
        report.failures.append(
            f"dataset: structure: {report.cross_split_structures} structure keys appear in more than one split"
        )
    if report.misplaced_structures:
        report.failures.append(
            f"dataset: structure: {report.misplaced_structures} rows are in a split their structure key does not "
            "belong to (generator.core.structure.split_of)"
        )
    return good


# --- the whole report --------------------------------------------------------------------


def validate_rows(
    rows_by_split: Mapping[str, list[dict[str, Any]]],
    *,
    trust_code: bool = False,
    structure_only: bool = False,
    sample: int | None = 50,
    iree: bool = False,
    seed: int = 0,
    time_limit: float = 60.0,
    config: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Validate the rows of one config.

    Args:
      rows_by_split: rows per split, as ``generator.tools.io`` reads them.
      trust_code: allow checks that run ``python_source``; without it they are refused
        (the report fails and says why) unless ``structure_only``.
      structure_only: check structure only, run no code.
      sample: rows to execute (with XLA, and with IREE if ``iree``); ``None``: all rows.
        Reproduction always covers every row.
      iree: also compile and run each sampled row's IR with IREE (``pip install .[iree]``).
      seed: picks the sample.
      time_limit: seconds per row in the child process before it is cut off.
      progress: called with (rows done, rows to do).
    """
    report = Report(config=config)
    good = check_structure(rows_by_split, report)
    split_of = {id(r): s for s, rows in rows_by_split.items() for r in rows}
    if structure_only:
        report.summary = _summary(rows_by_split) if good else {}
        return report
    if not trust_code:
        report.refused = REFUSAL
        return report
    if iree:
        _require_iree()
    from ...core.lowering import JAX_VERSION

    picked = set(
        range(len(good))
        if sample is None or sample >= len(good)
        else random.Random(seed).sample(range(len(good)), sample)
    )
    checks = ["reproduce", "execute"] + (["iree"] if iree else [])
    for name in checks:
        report.checks[name] = CheckResult()
    other_jax = Counter(r["jax_version"] for r in good if r["jax_version"] != JAX_VERSION)
    if other_jax:
        report.notes.append(
            f"{sum(other_jax.values())} rows were lowered by another jax ({', '.join(sorted(other_jax))}; this is "
            f"{JAX_VERSION}): their IR is compared by op histogram, not byte for byte"
        )
    from ...core.lowering import host_devices
    from .runner import RowRunner

    runners: dict[int, RowRunner] = {}  # one child per device count: XLA fixes it at start-up
    try:
        for i, r in enumerate(good):
            asked = checks if i in picked else ["reproduce"]
            try:
                devices = host_devices(r["lowering"])
            except ValueError as e:
                results = {name: CheckOutcome.failed(str(e)) for name in asked}
            else:
                if devices not in runners:
                    runners[devices] = RowRunner(time_limit=time_limit, host_devices=devices)
                results = runners[devices].run(r, asked)
            report.row_results.append(
                RowResult(id=r["id"], category=r["category"], split=split_of.get(id(r), ""), checks=results)
            )
            for name, outcome in results.items():
                report.checks[name].count(outcome)
                if outcome.status == Status.FAIL:
                    report.failures.append(f"{r['id']}: {name}: {outcome.detail or ''}")
            if progress:
                progress(i + 1, len(good))
    finally:
        for runner in runners.values():
            runner.close()
    report.summary = _summary(rows_by_split)
    return report


def _summary(rows_by_split: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    from ..stats import summarize

    try:
        return summarize(rows_by_split)
    except Exception:  # a summary is a courtesy; a malformed row is already reported
        return {}


def _require_iree() -> None:
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except ImportError:
        raise ValueError(
            "--iree needs IREE: pip install 'jax-stablehlo-pairs[iree]' (iree-base-compiler, iree-base-runtime)"
        ) from None


def validate_dataset(ds: datasets.DatasetDict | datasets.Dataset, **kwargs: Any) -> Report:
    """``validate_rows`` on a ``datasets.DatasetDict`` or ``Dataset`` (same keyword arguments)."""
    from ..io import rows_of_dataset

    return validate_rows(rows_of_dataset(ds), **kwargs)


def check_view_rows(
    view_rows: Mapping[str, list[dict[str, Any]]], pairs_rows: Mapping[str, list[dict[str, Any]]], view: str
) -> list[str]:
    """Problems of a task view's rows (``core.views``): each must be the view of its pair (joined
    by ``id``) with the template it names, and its token counts must count its texts."""
    from ...core.tokens import count_tokens
    from ...core.views import VIEWS, view_row

    pairs = {r["id"]: r for rows in pairs_rows.values() for r in rows}
    problems: list[str] = []
    for split, rows in view_rows.items():
        for i, r in enumerate(rows):
            where = f"{view}/{split} row {i} ({r.get('id')!r})"
            pair = pairs.get(r.get("id"))
            template = r.get("template")
            if pair is None:
                problems.append(f"{where}: no pair has this id")
                continue
            if not _is_int(template) or not 0 <= template < len(VIEWS[view].templates):
                problems.append(f"{where}: template {template!r} is not one of the view's {len(VIEWS[view].templates)}")
                continue
            expected = view_row(pair, view, template=template)
            if r != expected:
                keys = sorted(k for k in {*r, *(expected or {})} if r.get(k) != (expected or {}).get(k))
                problems.append(f"{where}: differs from its pair's {view} row in {', '.join(keys)}")
                continue
            prompt, completion = (
                (r["messages"][0]["content"], r["messages"][1]["content"])
                if "messages" in r
                else (r["prompt"], r["completion"])
            )
            if (count_tokens(prompt), count_tokens(completion)) != (r["prompt_tokens"], r["completion_tokens"]):
                problems.append(f"{where}: prompt_tokens/completion_tokens do not count the prompt and completion")
    return problems
