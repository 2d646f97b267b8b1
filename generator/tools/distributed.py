"""Distributed generation on Ray: workers write their own shards; the driver plans, tracks, verifies, finishes.

Each shard of the builder's shard plan (``core.plan.plan_shards``) is one Ray task. A shard is a
pure function of its ``ShardTask``, so a task that fails (an exception, its worker process or
its whole node dying) is simply run again, anywhere, and gives the same rows. The task writes
its shard itself, to the output location (a local or shared path, or any fsspec URL such as
``s3://bucket/prefix``), and returns only its small manifest entry: no row passes through the
driver or Ray's object store. The layout::

    <output>/<config>/.shards/<plan digest>/plan.json                  what the build is (written first)
    <output>/<config>/.shards/<plan digest>/<split>-0000i-of-0000N.parquet       a finished shard
    <output>/<config>/.shards/<plan digest>/<split>-0000i-of-0000N.parquet.json  its entry (after it)
    <output>/<config>/<split>-0000i-of-0000N.parquet    the finished layout, as push_to_hub names files
    <output>/<config>/manifest.json                     written last: marks the build finished

Nothing half-written looks finished: every file is written whole (a temporary name then a
rename on a local or shared path, a single put on an object store); a shard counts only once
its entry exists, and the folder counts as built only once ``manifest.json`` does. The plan
digest covers everything the rows depend on (the config's fields and shard plan, the dataset
version, ``generator.code_fingerprint()``), so shards of another build are never reused.

Rerunning the same command after the driver died keeps every shard whose file still matches
its entry (size, SHA-256, rows, ids) and builds only the rest; the finished build has exactly
the rows of an uninterrupted one. A rerun of a finished build checks it and does nothing else.

``ray.init()`` with no address starts a local Ray on this machine; ``address="auto"`` (or a
``ray://`` URL, or ``<head ip>:<port>``) joins a running cluster, whose nodes need this package
installed (e.g. ``pip install jax-stablehlo-pairs[ray]``, or a ``runtime_env``) and, for a
path output, the same shared filesystem at the same path.

Usage: ``python -m generator.tools.distributed --config balanced --output-dir staged``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.plan import ShardTask
from ..core.rows import ShardStats
from ..runtime.shards import generate_shard

DEFAULT_MAX_RETRIES = 3
MANIFEST = "manifest.json"
SHARDS_DIR = ".shards"
PLAN_FILE = "plan.json"
ENTRY_SUFFIX = ".json"
ATTEMPTS_DIR = ".attempts"
# The manifest's and the plan digest's format: bump it when what a shard file holds changes
# without the row code changing (e.g. how Parquet is written), so no old shard is reused.
MANIFEST_FORMAT = 1
# Filesystems whose single put of an object is all-or-nothing: a shard is written in one call.
# Any other (local, NFS, SFTP, ...) gets a temporary name and a rename.
SINGLE_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "memory"})
VERIFY_THREADS = 8

ShardFn = Callable[[ShardTask], tuple[Any, dict[str, Any]]]


def shard_table(task: ShardTask) -> tuple[Any, dict[str, Any]]:
    """One shard's rows as an Arrow table with the dataset's schema, and its ``ShardStats``."""
    import pyarrow as pa

    from ..core.schema import FEATURES

    stats = ShardStats()
    rows = [FEATURES.encode_example(row) for row in generate_shard(task, stats)]
    return pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema), stats.as_dict()


def shard_file_name(task: ShardTask, num_shards: int) -> str:
    """``<split>-0000i-of-0000N.parquet``, as ``push_to_hub`` names a split's files."""
    return f"{task.split}-{task.shard_index:05d}-of-{num_shards:05d}.parquet"


@dataclass
class RayBuildResult:
    """What a Ray build wrote.

    Attributes:
      path: the config's folder, ``<output>/<config>`` (a ``Path`` for a local output, else a URL).
      files: Parquet files per split, in shard order (``Path`` or URL, as ``path``).
      rows: rows per split.
      stats: the build's summed ``ShardStats`` (of every shard, reused ones included).
      manifest: the finished build's manifest (``path / "manifest.json"``).
      plan_digest: the digest naming this build (see ``plan_digest``).
      built: shards this run built.
      reused: shards this run kept from an earlier, interrupted run (all of them if it had finished).
      retried: shards this run built that needed more than one attempt.
      seconds: this run's wall time.
    """

    path: Path | str
    files: dict[str, list[Path | str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    stats: ShardStats = field(default_factory=ShardStats)
    manifest: Path | str = ""
    plan_digest: str = ""
    built: int = 0
    reused: int = 0
    retried: int = 0
    seconds: float = 0.0


def builder_config(config: str = "balanced", *, script: str | os.PathLike | None = None, **overrides):
    """The builder script's config ``config`` with field overrides (``train_size=...``), validated."""
    from .hub import DEFAULT_SCRIPT, check_configs, load_builder_module

    module = load_builder_module(script or DEFAULT_SCRIPT)
    check_configs(module, [config])
    base = next(c for c in module.JaxStablehloPairs.BUILDER_CONFIGS if c.name == config)
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    cfg.shard_plan()  # a bad size or seed fails here, before Ray starts
    return cfg


def plan_digest(cfg: Any, plan: dict[str, list[ShardTask]]) -> str:
    """The digest of everything a build's rows depend on: it names the build's in-progress folder.

    Covers the config's name and every build field (``core.config.BuildOptions``), its shard
    plan (every ``ShardTask``, whatever the plan code decides), the dataset version, the code
    fingerprint (the row code and the versions of the libraries rows depend on) and the manifest
    format. Two builds share a digest only if they give the same rows in the same files.

    Args:
      cfg: a builder config (``jax_stablehlo_pairs.PairsConfig``).
      plan: its ``shard_plan()``.
    """
    from ..core import fingerprint  # what generator.code_fingerprint() returns
    from ..core.config import BuildOptions
    from ..version import __version__

    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(BuildOptions)}
    what = {
        "format": MANIFEST_FORMAT,
        "config": cfg.name,
        "fields": fields,
        "version": __version__,
        "code": fingerprint(),
        "plan": {split: [t.to_dict() for t in tasks] for split, tasks in plan.items()},
    }
    text = json.dumps(what, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the output location --------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a build writes: an fsspec URL (a plain path is a local one), picklable for Ray tasks.

    Attributes:
      url: the output root, e.g. ``/data/staged``, ``file:///data/staged`` or ``s3://bucket/staged``.
      storage_options: passed to the fsspec filesystem (credentials, endpoint, ...).
    """

    url: str
    storage_options: tuple[tuple[str, Any], ...] = ()

    def fs(self) -> tuple[Any, str]:
        """The fsspec filesystem and the root path on it (fsspec caches the instance per process)."""
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **dict(self.storage_options))
        return fs, root.rstrip("/") or "/"

    def is_local(self) -> bool:
        return "file" in _protocols(self.fs()[0])


def _protocols(fs: Any) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def _put(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole: a reader sees the old file, the new one or none, never part of one."""
    protocols = _protocols(fs)
    if "file" in protocols:
        tmp = Path(path).with_name(f".{Path(path).name}.{secrets.token_hex(4)}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on a local or shared POSIX filesystem
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    elif SINGLE_PUT_PROTOCOLS.intersection(protocols):
        fs.pipe_file(path, data)  # one PUT: an object store shows the whole object or none
    else:
        tmp = _join(path.rpartition("/")[0], f".{path.rpartition('/')[2]}.{secrets.token_hex(4)}.tmp")
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)


def _read(fs: Any, path: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    data = _read(fs, path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # written whole, so only a foreign file can be bad: treat it as absent
        return None


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


# --- one shard, on a worker ---------------------------------------------------------------------


def _ids_digest(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _mark_attempt(fs: Any, workdir: str, name: str, run_id: str) -> int:
    """Record one attempt of shard ``name`` in run ``run_id``; returns which attempt this is (1 = first)."""
    folder = _join(workdir, ATTEMPTS_DIR, run_id)
    _put(fs, _join(folder, f"{name}.{secrets.token_hex(4)}"), b"")
    return len(fs.glob(_join(folder, f"{name}.*")))


def write_shard(
    task: ShardTask,
    location: Location,
    workdir: str,
    num_shards: int,
    run_id: str = "",
    shard_fn: ShardFn = shard_table,
) -> tuple[dict[str, Any], int]:
    """Build one shard and write it, then its entry, into ``workdir``; runs on a Ray worker.

    Args:
      task: the shard.
      location: the output location (the worker opens its filesystem itself).
      workdir: the build's in-progress folder on that filesystem, ``<config>/.shards/<digest>``.
      num_shards: shards of the task's split (the file name says ``-of-N``).
      run_id: the driver run's id; attempts are counted per run (for the retried count).
      shard_fn: turns a ``ShardTask`` into (Arrow table, stats dict).

    Returns:
      The shard's manifest entry (file, rows, bytes, SHA-256, ids digest, first and last id,
      task, stats) and which attempt of this run wrote it.
    """
    import pyarrow.parquet as pq

    fs, _ = location.fs()
    name = shard_file_name(task, num_shards)
    attempt = _mark_attempt(fs, workdir, name, run_id) if run_id else 1
    table, stats = shard_fn(task)
    if table.num_rows != task.num_rows:
        raise RuntimeError(
            f"shard {task.split}/{task.shard_index} gave {table.num_rows} rows, expected {task.num_rows}"
        )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    ids = table.column("id").to_pylist()
    entry = {
        "file": name,
        "split": task.split,
        "shard_index": task.shard_index,
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "ids_sha256": _ids_digest(ids),
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
        "task": json.loads(task.to_json()),  # as the entry file holds it (lists, not tuples)
        "stats": stats,
    }
    _put(fs, _join(workdir, name), data)
    _put(fs, _join(workdir, name + ENTRY_SUFFIX), _dumps(entry))  # last: the shard counts from now on
    return entry, attempt


# --- the driver ------------------------------------------------------------------------------------


def _check_file(fs: Any, path: str, entry: dict[str, Any], task: ShardTask) -> tuple[str | None, list[str]]:
    """Whether the file at ``path`` is the shard ``entry`` describes: (problem or None, its ids)."""
    import pyarrow.parquet as pq

    if entry.get("task") != json.loads(task.to_json()) or entry.get("rows") != task.num_rows:  # as JSON stores it
        return "its entry is not this plan's shard", []
    data = _read(fs, path)
    if data is None:
        return "file missing", []
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return "file differs from its entry (size or SHA-256)", []
    try:
        ids = pq.read_table(io.BytesIO(data), columns=["id"]).column("id").to_pylist()
    except Exception as e:
        return f"unreadable Parquet ({type(e).__name__})", []
    if len(ids) != task.num_rows or _ids_digest(ids) != entry["ids_sha256"]:
        return "rows or ids differ from its entry", []
    return None, ids


class _Build:
    """One config's sharded build at a location: plan, digest, resume, record, finish."""

    def __init__(self, cfg: Any, location: Location, *, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.location = location
        self.fs, self.root = location.fs()
        self.plan = cfg.shard_plan()
        self.digest = plan_digest(cfg, self.plan)
        self.cfgdir = _join(self.root, cfg.name)
        self.workdir = _join(self.cfgdir, SHARDS_DIR, self.digest)
        self.tasks = [t for tasks in self.plan.values() for t in tasks]
        self.names = {(t.split, t.shard_index): shard_file_name(t, len(self.plan[t.split])) for t in self.tasks}
        self.entries: dict[tuple[str, int], dict[str, Any]] = {}
        self.ids: dict[tuple[str, int], list[str]] = {}
        self.log = log

    def name(self, task: ShardTask) -> str:
        return self.names[(task.split, task.shard_index)]

    def _verify_all(self, found: dict[tuple[str, int], tuple[dict[str, Any], list[str]]]) -> dict:
        """Check each (entry, candidate paths) in parallel; returns key -> (entry, ids) of the good ones."""
        by_key = {(t.split, t.shard_index): t for t in self.tasks}

        def check(key):
            entry, paths = found[key]
            problems = []
            for path in paths:
                problem, ids = _check_file(self.fs, path, entry, by_key[key])
                if problem is None:
                    return key, entry, ids, None
                problems.append(problem)
            return key, entry, None, problems[0] if problems else "no file"

        good, bad = {}, []
        with ThreadPoolExecutor(VERIFY_THREADS) as pool:
            for key, entry, ids, problem in pool.map(check, list(found)):
                if problem is None:
                    good[key] = (entry, ids)
                else:
                    bad.append((key, problem))
        for key, problem in sorted(bad):
            self.log(f"shard {self.names[key]}: {problem}; it is built again")
        return good

    def finished(self) -> bool:
        """Whether ``<config>/manifest.json`` is this plan's and every file in it checks out."""
        manifest = _read_json(self.fs, _join(self.cfgdir, MANIFEST))
        if not manifest or manifest.get("plan_digest") != self.digest:
            return False
        entries = {(e["split"], e["shard_index"]): e for e in manifest.get("shards", [])}
        entries = {k: e for k, e in entries.items() if k in self.names}
        good = self._verify_all({k: (e, [_join(self.cfgdir, e["file"])]) for k, e in entries.items()})
        for key, (entry, ids) in good.items():  # a damaged finished build keeps its good shards too
            self.entries[key], self.ids[key] = entry, ids
        return len(good) == len(self.names)

    def resume(self) -> int:
        """Start or resume the build: write its plan, keep the shards that check out; returns how many."""
        self.fs.makedirs(self.workdir, exist_ok=True)
        plan_path = _join(self.workdir, PLAN_FILE)
        if not self.fs.exists(plan_path):
            what = {"format": MANIFEST_FORMAT, "config": self.cfg.name, "plan_digest": self.digest}
            what["plan"] = {s: [t.to_dict() for t in ts] for s, ts in self.plan.items()}
            _put(self.fs, plan_path, _dumps(what))
        found = {}
        for key, name in self.names.items():
            entry = _read_json(self.fs, _join(self.workdir, name + ENTRY_SUFFIX))
            if entry is not None:
                # An interrupted finish may have moved the file into the finished layout already.
                found[key] = (entry, [_join(self.workdir, name), _join(self.cfgdir, name)])
        found = {k: v for k, v in found.items() if k not in self.entries}
        for key, (entry, ids) in self._verify_all(found).items():
            self.entries[key], self.ids[key] = entry, ids
        for key in set(found) - set(self.entries):  # a bad shard is rebuilt from nothing
            self.fs.rm(_join(self.workdir, self.names[key] + ENTRY_SUFFIX))
        return len(self.entries)

    def todo(self) -> list[ShardTask]:
        return [t for t in self.tasks if (t.split, t.shard_index) not in self.entries]

    def record(self, task: ShardTask, entry: dict[str, Any]) -> None:
        """Check a task's returned entry against the plan and the file it wrote."""
        key = (task.split, task.shard_index)
        problem, ids = _check_file(self.fs, _join(self.workdir, self.name(task)), entry, task)
        if problem is not None:
            raise RuntimeError(f"shard {self.name(task)} as written: {problem}")
        self.entries[key], self.ids[key] = entry, ids

    def finish(self) -> dict[str, Any]:
        """Move the shards into the finished layout, then write the manifest (last), then clean up."""
        from ..core import fingerprint
        from ..version import __version__

        seen: dict[str, str] = {}
        for key in self.names:  # every id once in the whole config
            for i in self.ids[key]:
                if i in seen:
                    raise RuntimeError(f"row id {i} appears twice (in {seen[i]} and {self.names[key]})")
                seen[i] = self.names[key]
        manifest_path = _join(self.cfgdir, MANIFEST)
        if self.fs.exists(manifest_path):  # from here on the folder does not claim to be finished
            self.fs.rm(manifest_path)
        wanted = set(self.names.values())
        for path in self.fs.glob(_join(self.cfgdir, "*.parquet")):
            if path.rpartition("/")[2] not in wanted:  # an older build's file of another shard count
                self.fs.rm(path)
        for name in self.names.values():
            src = _join(self.workdir, name)
            if self.fs.exists(src):
                if "file" in _protocols(self.fs):
                    os.replace(src, _join(self.cfgdir, name))  # one rename, atomic
                else:
                    self.fs.mv(src, _join(self.cfgdir, name))
        manifest = {
            "format": MANIFEST_FORMAT,
            "config": self.cfg.name,
            "plan_digest": self.digest,
            "version": __version__,
            "code_fingerprint": fingerprint(),
            "rows": {s: sum(t.num_rows for t in ts) for s, ts in self.plan.items()},
            "shards": [self.entries[(t.split, t.shard_index)] for t in self.tasks],
        }
        _put(self.fs, manifest_path, _dumps(manifest))
        self.fs.rm(self.workdir, recursive=True)
        shards_dir = _join(self.cfgdir, SHARDS_DIR)
        if self.fs.exists(shards_dir) and not self.fs.ls(shards_dir, detail=False):
            self.fs.rmdir(shards_dir)
        return manifest

    def result(self, *, built: int, reused: int, retried: int, seconds: float) -> RayBuildResult:
        def out(path: str) -> Path | str:
            return Path(path) if self.location.is_local() else self.fs.unstrip_protocol(path)

        result = RayBuildResult(
            path=out(self.cfgdir),
            manifest=out(_join(self.cfgdir, MANIFEST)),
            plan_digest=self.digest,
            built=built,
            reused=reused,
            retried=retried,
            seconds=seconds,
        )
        for split, tasks in self.plan.items():
            result.files[split] = [out(_join(self.cfgdir, self.name(t))) for t in tasks]
            result.rows[split] = sum(self.entries[(t.split, t.shard_index)]["rows"] for t in tasks)
        for entry in self.entries.values():
            result.stats.add(ShardStats(**entry["stats"]))
        return result


def _location(output: str | os.PathLike, storage_options: dict[str, Any] | None) -> Location:
    """A ``Location`` whose URL is absolute, so every worker finds the same place."""
    loc = Location(os.fspath(output), tuple(sorted((storage_options or {}).items())))
    fs, root = loc.fs()
    return Location(fs.unstrip_protocol(root), loc.storage_options)


# A runner takes (build, tasks to run, run id, on_done(task, entry, attempt)) and runs them all.
Runner = Callable[["_Build", list[ShardTask], str, Callable[[ShardTask, dict[str, Any], int], None]], None]


def _run_sharded(
    cfg: Any,
    location: Location,
    runner: Runner,
    *,
    progress: bool,
) -> RayBuildResult:
    """Plan, resume, run what is left with ``runner``, verify and finish; prints where it stands."""
    from tqdm.auto import tqdm

    started = time.monotonic()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    build = _Build(cfg, location, log=log)
    sizes = ", ".join(f"{s} {sum(t.num_rows for t in ts)} rows in {len(ts)}" for s, ts in build.plan.items())
    log(f"{cfg.name}: plan {build.digest}: {len(build.tasks)} shards ({sizes}) -> {build.cfgdir}")
    if build.finished():
        log(f"{cfg.name}: already complete: {MANIFEST} and all {len(build.tasks)} shards check out; nothing to build")
        return build.result(built=0, reused=len(build.tasks), retried=0, seconds=time.monotonic() - started)
    reused = build.resume()
    todo = build.todo()
    if reused:
        log(f"{cfg.name}: resuming: {reused} shards already written and verified, {len(todo)} to build")
    counts = {"built": 0, "retried": 0}
    bar = tqdm(total=len(build.tasks), initial=reused, desc=f"{cfg.name} shards", unit="shard", disable=not progress)
    bar.set_postfix(reused=reused, retried=0)

    def on_done(task: ShardTask, entry: dict[str, Any], attempt: int) -> None:
        build.record(task, entry)
        counts["built"] += 1
        counts["retried"] += attempt > 1
        bar.update(1)
        bar.set_postfix(reused=reused, retried=counts["retried"])

    run_id = secrets.token_hex(6)
    try:
        if todo:
            runner(build, todo, run_id, on_done)
    finally:
        bar.close()
    build.finish()
    result = build.result(
        built=counts["built"], reused=reused, retried=counts["retried"], seconds=time.monotonic() - started
    )
    rows = ", ".join(f"{s} {n}" for s, n in result.rows.items())
    log(
        f"{cfg.name}: complete in {result.seconds:.1f}s: {rows} rows in {len(build.tasks)} shards "
        f"(built {result.built}, reused {result.reused}, retried {result.retried}); manifest {result.manifest}"
    )
    return result


def _local_runner(shard_fn: ShardFn) -> Runner:
    def run(build: _Build, todo: list[ShardTask], run_id: str, on_done) -> None:
        for task in todo:
            num = len(build.plan[task.split])
            entry, attempt = write_shard(task, build.location, build.workdir, num, run_id, shard_fn)
            on_done(task, entry, attempt)

    return run


def _ray_runner(shard_fn: ShardFn, max_retries: int) -> Runner:
    def run(build: _Build, todo: list[ShardTask], run_id: str, on_done) -> None:
        import ray

        remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=True)(write_shard)
        pending = {
            remote.remote(t, build.location, build.workdir, len(build.plan[t.split]), run_id, shard_fn): t for t in todo
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(done[0])
                try:
                    entry, attempt = ray.get(done[0])
                except Exception as e:  # retries exhausted
                    raise RuntimeError(
                        f"shard {task.split}/{task.shard_index} failed after {max_retries} retries: {e}"
                    ) from e
                on_done(task, entry, attempt)
        finally:
            for ref in pending:  # a failed build stops its other shards (a Ray we did not start lives on)
                ray.cancel(ref, force=True)

    return run


def _build_inputs(
    config: str,
    script: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    storage_options: dict[str, Any] | None,
    train_size: int | None,
    validation_size: int | None,
    test_size: int | None,
    seed: int | None,
    rows_per_shard: int | None,
) -> tuple[Any, Location]:
    """The builder config (``ValueError`` for a bad config or size, before any work) and the output
    location a sharded build writes to."""
    cfg = builder_config(
        config,
        script=script,
        train_size=train_size,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        rows_per_shard=rows_per_shard,
    )
    return cfg, _location(output_dir, storage_options)


def generate_with_ray(
    output_dir: str | os.PathLike,
    *,
    config: str = "balanced",
    train_size: int | None = None,
    validation_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    rows_per_shard: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    address: str | None = None,
    script: str | os.PathLike | None = None,
    shard_fn: ShardFn = shard_table,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> RayBuildResult:
    """Build one config on Ray into ``<output_dir>/<config>/<split>-0000i-of-0000N.parquet`` and ``manifest.json``.

    Resumable: run it again after an interruption (the driver killed, a node lost) and it keeps
    every shard already written that checks out against its entry, builds only the rest and
    ends with exactly the rows of an uninterrupted build.

    Args:
      output_dir: the output location: a local or shared path, or an fsspec URL
        (``s3://bucket/prefix``, ``file:///data``); every Ray node must reach it.
      config: a builder config name (``balanced``, ``mixed``, a category).
      train_size, validation_size, test_size, seed, rows_per_shard: override the config's fields.
      max_retries: how often Ray re-runs a failed shard (exception, lost worker or node).
      address: Ray address; ``None`` starts (or reuses) a local Ray.
      script: the builder script (default: the project's ``jax_stablehlo_pairs.py``).
      shard_fn: turns a ``ShardTask`` into (Arrow table, stats dict); replaceable for tests.
      storage_options: options of the fsspec filesystem (credentials, endpoint, ...).
      progress: show a progress bar over shards (done/planned, reused, retried) on stderr.

    Returns:
      A ``RayBuildResult``. Raises ``ValueError`` for a bad config or size before any work,
      and ``RuntimeError`` if a shard keeps failing or the rows do not add up.
    """
    cfg, location = _build_inputs(
        config, script, output_dir, storage_options, train_size, validation_size, test_size, seed, rows_per_shard
    )
    import ray

    started_ray = False

    def runner(build, todo, run_id, on_done):
        nonlocal started_ray
        if not ray.is_initialized():  # started only when there is work (a finished build needs no Ray)
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            started_ray = True
        _ray_runner(shard_fn, max_retries)(build, todo, run_id, on_done)

    try:
        return _run_sharded(cfg, location, runner, progress=progress)
    finally:
        if started_ray:
            ray.shutdown()


def generate_sharded(
    output_dir: str | os.PathLike,
    *,
    config: str = "balanced",
    train_size: int | None = None,
    validation_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    rows_per_shard: int | None = None,
    script: str | os.PathLike | None = None,
    shard_fn: ShardFn = shard_table,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> RayBuildResult:
    """``generate_with_ray`` without Ray: the same files, manifest and resume, shards built one by one here.

    For small builds and for filesystems only this process sees (fsspec's ``memory://``).
    Args as ``generate_with_ray``.
    """
    cfg, location = _build_inputs(
        config, script, output_dir, storage_options, train_size, validation_size, test_size, seed, rows_per_shard
    )
    return _run_sharded(cfg, location, _local_runner(shard_fn), progress=progress)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m generator.tools.distributed",
        description="Build a config on Ray into Parquet shards; rerun the same command to resume an interrupted build.",
    )
    p.add_argument("--config", default="balanced")
    p.add_argument("--output-dir", required=True, help="a local or shared path, or an fsspec URL (s3://..., file://)")
    p.add_argument("--train-size", type=int)
    p.add_argument("--validation-size", type=int)
    p.add_argument("--test-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--rows-per-shard", type=int)
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES)
    p.add_argument("--address", default=None, help="Ray address (default: a local Ray; 'auto' joins a running cluster)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the start and end lines stay)")
    args = p.parse_args(argv)
    try:
        result = generate_with_ray(
            args.output_dir,
            config=args.config,
            train_size=args.train_size,
            validation_size=args.validation_size,
            test_size=args.test_size,
            seed=args.seed,
            rows_per_shard=args.rows_per_shard,
            max_retries=args.max_retries,
            address=args.address,
            progress=not args.no_progress,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, files in result.files.items():
        print(f"{split}: {result.rows[split]} rows in {len(files)} files under {result.path}")
    print(f"stats: {result.stats.as_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
