"""Sharded builds: the builder's rows, the Hub staging's layout, a manifest, resume, retries, node loss.

The build's logic (plan digest, shards written whole by the task, resume after a kill, manifest
last) is tested without Ray through ``generate_sharded`` (fast, in the default run, with a local
path and fsspec's ``memory://``). Tests that start Ray are marked ``ray`` and ``slow``:
``make test-ray`` runs them in a local Ray, ``make test-ray-cluster`` the ones on a local
multi-node cluster (a head and two worker nodes, each its own raylet, started with ``ray start``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from generator.core.schema import FEATURES  # noqa: E402
from generator.runtime.shards import generate_shard  # noqa: E402
from generator.tools.distributed import (  # noqa: E402
    MANIFEST,
    SHARDS_DIR,
    builder_config,
    generate_sharded,
    generate_with_ray,
    plan_digest,
    shard_table,
)
from generator.tools.localcluster import Cluster  # noqa: E402

SIZES = {
    "train_size": 3,
    "validation_size": 2,
    "test_size": 1,
    "rows_per_shard": 2,
    "seed": 3,
}  # 3 + 2 + 1 one-row shards
NAMES = (
    ["test-00000-of-00001.parquet"]
    + [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    + [f"validation-0000{i}-of-00002.parquet" for i in range(2)]
)


def _expected_rows(config: str, **sizes) -> dict[str, list[dict]]:
    plan = builder_config(config, **(sizes or SIZES)).shard_plan()
    return {
        split: [FEATURES.encode_example(r) for t in tasks for r in generate_shard(t)] for split, tasks in plan.items()
    }


def _written_rows(files) -> list[dict]:
    return [row for f in files for row in pq.read_table(str(f)).to_pylist()]


class Interrupted(BaseException):
    """Stands for the driver dying: nothing after it runs, as after a SIGKILL."""


def _dies_after(n: int, calls: list):
    def shard_fn(task):
        if len(calls) == n:
            raise Interrupted
        calls.append((task.split, task.shard_index))
        return shard_table(task)

    return shard_fn


# ---------------------------------------------------------------------------- without Ray (fast)


@pytest.fixture(scope="module")
def expected():
    return _expected_rows("matrix")


def test_sharded_build_writes_the_builders_rows_with_a_manifest(tmp_path, expected):
    result = generate_sharded(tmp_path, config="matrix", progress=False, **SIZES)

    assert sorted(p.name for p in (tmp_path / "matrix").iterdir()) == sorted([*NAMES, MANIFEST])
    assert result.rows == {"train": 3, "validation": 2, "test": 1}
    assert (result.built, result.reused, result.retried) == (6, 0, 0)
    for split in ("train", "validation", "test"):
        assert _written_rows(result.files[split]) == expected[split]
    manifest = json.loads((tmp_path / "matrix" / MANIFEST).read_text())
    assert manifest["plan_digest"] == result.plan_digest
    assert manifest["rows"] == result.rows
    assert [e["file"] for e in manifest["shards"]] == [
        f.name for s in ("train", "validation", "test") for f in result.files[s]
    ]
    for entry in manifest["shards"]:
        ids = pq.read_table(tmp_path / "matrix" / entry["file"], columns=["id"]).column("id").to_pylist()
        assert entry["rows"] == len(ids) and (entry["first_id"], entry["last_id"]) == (ids[0], ids[-1])
    assert not [p for p in tmp_path.rglob(".*")]  # no in-progress folder or temporary left


def test_killed_build_resumes_with_the_shards_it_wrote(tmp_path, expected, capsys):
    calls: list = []
    with pytest.raises(Interrupted):
        generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(4, calls), progress=False, **SIZES)
    folder = tmp_path / "matrix"
    assert not (folder / MANIFEST).exists()  # nothing looks finished
    assert not list(folder.glob("*.parquet"))  # the finished layout is untouched until the end
    [workdir] = (folder / SHARDS_DIR).iterdir()
    assert len(list(workdir.glob("*.parquet.json"))) == 4

    again: list = []
    result = generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(99, again), progress=False, **SIZES)

    assert (result.reused, result.built) == (4, 2)
    assert len(again) == 2 and not set(again) & set(calls)  # only the missing shards were built
    for split in ("train", "validation", "test"):
        assert _written_rows(result.files[split]) == expected[split]
    assert "resuming: 4 shards already written and verified, 2 to build" in capsys.readouterr().err
    assert not (folder / SHARDS_DIR).exists()


def test_rerun_of_a_finished_build_checks_it_and_builds_nothing(tmp_path, capsys):
    first = generate_sharded(tmp_path, config="matrix", progress=False, **SIZES)
    before = {p.name: p.read_bytes() for p in first.path.iterdir()}
    calls: list = []
    again = generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(0, calls), progress=False, **SIZES)
    assert (again.built, again.reused) == (0, 6) and calls == []
    assert {p.name: p.read_bytes() for p in again.path.iterdir()} == before
    assert "already complete" in capsys.readouterr().err


def test_a_damaged_shard_is_caught_by_its_entry_and_rebuilt(tmp_path, expected, capsys):
    calls: list = []
    with pytest.raises(Interrupted):
        generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(3, calls), progress=False, **SIZES)
    [workdir] = (tmp_path / "matrix" / SHARDS_DIR).iterdir()
    damaged = sorted(workdir.glob("*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])  # e.g. a copy cut short by hand
    result = generate_sharded(tmp_path, config="matrix", progress=False, **SIZES)
    assert (result.reused, result.built) == (2, 4)
    assert f"shard {damaged.name}: file differs from its entry" in capsys.readouterr().err
    for split in ("train", "validation", "test"):
        assert _written_rows(result.files[split]) == expected[split]


def test_plan_digest_covers_what_rows_depend_on(monkeypatch):
    def digest(**overrides):
        cfg = builder_config("matrix", **{**SIZES, **overrides})
        return plan_digest(cfg, cfg.shard_plan())

    base = digest()
    assert digest() == base
    assert len({base, digest(seed=4), digest(train_size=8), digest(rows_per_shard=3)}) == 4
    assert digest(program_size="small") != base
    monkeypatch.setattr("generator.core.fingerprint", lambda: "other code")
    assert digest() != base
    monkeypatch.undo()
    monkeypatch.setattr("generator.version.__version__", "0.0.0")
    assert digest() != base


def test_shards_of_another_build_are_never_reused(tmp_path, capsys):
    calls: list = []
    with pytest.raises(Interrupted):
        generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(3, calls), progress=False, **SIZES)
    other = generate_sharded(tmp_path, config="matrix", progress=False, **{**SIZES, "seed": 4})
    assert (other.reused, other.built) == (0, 6)
    # The interrupted seed-3 build keeps its own folder, resumable, beside the finished seed-4 one.
    assert [p.name for p in (tmp_path / "matrix" / SHARDS_DIR).iterdir()] != [other.plan_digest]
    back = generate_sharded(tmp_path, config="matrix", progress=False, **SIZES)
    assert (back.reused, back.built) == (3, 3)
    assert json.loads((back.path / MANIFEST).read_text())["plan_digest"] == back.plan_digest


def test_the_old_build_stays_finished_until_the_new_one_is(tmp_path):
    old = generate_sharded(tmp_path, config="matrix", progress=False, **{**SIZES, "rows_per_shard": 6})
    old_files = sorted(p.name for p in old.path.glob("*.parquet"))
    calls: list = []
    with pytest.raises(Interrupted):
        generate_sharded(tmp_path, config="matrix", shard_fn=_dies_after(3, calls), progress=False, **SIZES)
    assert sorted(p.name for p in old.path.glob("*.parquet")) == old_files
    assert json.loads((old.path / MANIFEST).read_text())["plan_digest"] == old.plan_digest
    new = generate_sharded(tmp_path, config="matrix", progress=False, **SIZES)
    assert sorted(p.name for p in new.path.iterdir()) == sorted([*NAMES, MANIFEST])  # stale shards gone


def test_fsspec_memory_filesystem(expected):
    import fsspec

    root = f"memory://jsp-{secrets.token_hex(4)}"
    calls: list = []
    with pytest.raises(Interrupted):
        generate_sharded(root, config="matrix", shard_fn=_dies_after(2, calls), progress=False, **SIZES)
    result = generate_sharded(root, config="matrix", progress=False, **SIZES)
    assert (result.reused, result.built) == (2, 4)
    assert result.path == f"{root.replace('://', ':///')}/matrix"
    fs = fsspec.filesystem("memory")
    folder = result.path.removeprefix("memory://")
    assert sorted(p.rpartition("/")[2] for p in fs.find(folder)) == sorted([*NAMES, MANIFEST])
    for split in ("train", "validation", "test"):
        rows = [r for f in result.files[split] for r in pq.read_table(fs.open(f.removeprefix("memory://"))).to_pylist()]
        assert rows == expected[split]
    fs.rm(folder, recursive=True)


def test_bad_config_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown configs"):
        generate_with_ray(out, config="nope")
    with pytest.raises(ValueError, match="train_size"):
        generate_with_ray(out, config="matrix", train_size=-1)
    assert not out.exists()


# ---------------------------------------------------------------------------- a local Ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    # "local": a Ray of its own, even where a killed cluster left its address file in Ray's temp folder
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_build_writes_the_builders_rows_in_hub_layout(local_ray, tmp_path, expected):
    result = generate_with_ray(tmp_path, config="matrix", **SIZES)

    assert sorted(p.name for p in (tmp_path / "matrix").iterdir()) == sorted([*NAMES, MANIFEST])
    assert result.rows == {"train": 3, "validation": 2, "test": 1}
    for split in ("train", "validation", "test"):
        rows = _written_rows(result.files[split])
        assert rows == expected[split]
        assert all(r["category"] == "matrix" for r in rows)
    from datasets import load_dataset

    loaded = load_dataset(
        "parquet", data_files={s: [str(f) for f in fs] for s, fs in result.files.items()}, cache_dir=str(tmp_path / "c")
    )
    assert loaded["train"].features == FEATURES
    assert loaded["validation"].to_list() == expected["validation"]
    assert not [p for p in tmp_path.rglob(".*") if "c" not in p.relative_to(tmp_path).parts[:1]]  # no leftovers


@pytest.mark.ray
@pytest.mark.slow
def test_ray_build_to_a_file_url(local_ray, tmp_path, expected):
    result = generate_with_ray(f"file://{tmp_path}/out", config="matrix", **SIZES)
    assert result.path == tmp_path / "out" / "matrix"
    assert _written_rows(result.files["train"]) == expected["train"]


@pytest.mark.ray
@pytest.mark.slow
def test_failed_shards_are_retried_without_lost_or_duplicated_rows(local_ray, tmp_path):
    marks = tmp_path / "attempts"
    marks.mkdir()

    def flaky(task):  # first attempt of every shard fails; shard train/0's worker dies outright
        mark = marks / f"{task.split}-{task.shard_index}"
        if not mark.exists():
            mark.write_text("failed once")
            if (task.split, task.shard_index) == ("train", 0):
                os._exit(1)
            raise OSError("injected failure")
        return shard_table(task)

    result = generate_with_ray(tmp_path / "out", config="balanced", shard_fn=flaky, **SIZES)

    assert len(list(marks.iterdir())) == 6  # every shard failed once, then succeeded
    assert result.retried == 6
    expected = _expected_rows("balanced")
    for split in ("train", "validation", "test"):
        assert _written_rows(result.files[split]) == expected[split]


@pytest.mark.ray
@pytest.mark.slow
def test_a_shard_that_keeps_failing_fails_the_build_and_keeps_the_old_folder(local_ray, tmp_path):
    old = tmp_path / "matrix"
    old.mkdir()
    (old / "train-00000-of-00001.parquet").write_text("previous build")

    def broken(task):
        raise OSError("disk on fire")

    with pytest.raises(RuntimeError, match="failed after 1 retries"):
        generate_with_ray(tmp_path, config="matrix", shard_fn=broken, max_retries=1, **SIZES)
    assert [p.name for p in tmp_path.iterdir()] == ["matrix"]
    assert (old / "train-00000-of-00001.parquet").read_text() == "previous build"
    assert not (old / MANIFEST).exists()


# ---------------------------------------------------------------------------- a local multi-node cluster

# Big enough that a build takes a while on a few cores, small enough to keep the test quick.
CLUSTER_SIZES = {"train_size": 480, "validation_size": 48, "test_size": 48, "rows_per_shard": 6, "seed": 1}
CLUSTER_SHARDS = 96


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    c = Cluster(workers=2)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _build_command(out: Path, address: str) -> list[str]:
    argv = [sys.executable, "-m", "generator.tools.distributed", "--config", "matrix", "--output-dir", str(out)]
    argv += ["--address", address, "--no-progress"]
    for k, v in CLUSTER_SIZES.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def _run_build(out: Path, cluster: Cluster, timeout: float = 600) -> tuple[float, str]:
    t = time.monotonic()
    argv = _build_command(out, cluster.address)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cluster.driver_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.monotonic() - t, done.stderr


def _entries(out: Path) -> list[Path]:
    return list((out / "matrix" / SHARDS_DIR).glob("*/*.parquet.json"))


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the build ended before the test could interrupt it"
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.05)


def _finished_rows(out: Path) -> dict[str, list[dict]]:
    manifest = json.loads((out / "matrix" / MANIFEST).read_text())
    rows: dict[str, list[dict]] = {}
    for entry in manifest["shards"]:
        rows.setdefault(entry["split"], []).extend(pq.read_table(out / "matrix" / entry["file"]).to_pylist())
    return rows


def _end_line(stderr: str) -> dict[str, int]:
    m = re.search(r"built (\d+), reused (\d+), retried (\d+)", stderr)
    assert m, stderr[-2000:]
    return dict(zip(("built", "reused", "retried"), map(int, m.groups())))


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    seconds, stderr = _run_build(out, cluster)
    assert _end_line(stderr) == {"built": CLUSTER_SHARDS, "reused": 0, "retried": 0}
    return out, seconds


@pytest.mark.ray
@pytest.mark.slow
def test_cluster_driver_killed_then_rerun_resumes(cluster, uninterrupted, tmp_path):
    reference, full_seconds = uninterrupted
    out = tmp_path / "out"
    argv = _build_command(out, cluster.address)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster.driver_env)
    try:
        _wait_for(lambda: len(_entries(out)) >= CLUSTER_SHARDS * 2 // 3, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = len(_entries(out))
    assert not (out / "matrix" / MANIFEST).exists() and not list((out / "matrix").glob("*.parquet"))

    resumed_seconds, stderr = _run_build(out, cluster)

    counts = _end_line(stderr)
    assert counts["reused"] >= written >= CLUSTER_SHARDS * 2 // 3
    assert counts["built"] == CLUSTER_SHARDS - counts["reused"]
    assert _finished_rows(out) == _finished_rows(reference)
    ours, theirs = (json.loads((o / "matrix" / MANIFEST).read_text()) for o in (out, reference))
    assert [e["sha256"] for e in ours["shards"]] == [e["sha256"] for e in theirs["shards"]]  # the same bytes
    print(
        f"\nuninterrupted {full_seconds:.1f}s; killed after {written}/{CLUSTER_SHARDS} shards; "
        f"rerun {resumed_seconds:.1f}s (reused {counts['reused']}, built {counts['built']})"
    )
    assert resumed_seconds < full_seconds


@pytest.mark.ray
@pytest.mark.slow
def test_cluster_worker_node_lost_mid_build(cluster, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    out = tmp_path / "out"
    raylet = cluster.raylet_of(2)
    t = time.monotonic()
    argv = _build_command(out, cluster.address)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.driver_env)
    try:
        _wait_for(lambda: len(_entries(out)) >= 4, proc)
        os.kill(raylet, signal.SIGKILL)  # the node is lost with whatever it was running
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    counts = _end_line(stderr)
    assert counts["built"] == CLUSTER_SHARDS
    assert _finished_rows(out) == _finished_rows(reference)
    print(f"\nnode lost mid-build: completed in {time.monotonic() - t:.1f}s, retried {counts['retried']} shards")
    assert cluster.alive_nodes() == 2
