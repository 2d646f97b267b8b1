"""Faults: a killed build reruns to exactly the right rows, runaway lowerings are cut off,
and a failing shard fails the build naming itself and its seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import generator.core.lowering
import generator.core.rows
from generator.core.plan import plan_shards
from generator.core.rows import ShardStats
from generator.runtime.shards import generate_shard
from tests.conftest import SCRIPT

ROOT = Path(SCRIPT).parent


def _expected(**sizes) -> dict[str, list[str]]:
    return {split: [r["id"] for t in tasks for r in generate_shard(t)] for split, tasks in plan_shards(**sizes).items()}


def _completed_builds(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("dataset_info.json") if not any(part.endswith(".incomplete") for part in p.parts)]


def test_lowering_that_hangs_is_cut_off_and_counted(monkeypatch):
    real = generator.core.lowering.lower_source
    calls = []

    def sometimes_hangs(source, name, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            time.sleep(120)  # stands in for a lowering that never returns
        return real(source, name, **kwargs)

    monkeypatch.setattr(generator.core.lowering, "lower_source", sometimes_hangs)
    monkeypatch.setattr(generator.core.rows, "LOWERING_TIME_LIMIT_S", 0.5)
    signal.setitimer(signal.ITIMER_REAL, 300)  # someone else's timer (as pytest-timeout sets)
    try:
        (task,) = plan_shards(min_shards_per_split=1, train_size=3, validation_size=0, seed=1)["train"]
        stats = ShardStats()
        start = time.monotonic()
        rows = list(generate_shard(task, stats))
        elapsed = time.monotonic() - start
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(rows) == 3 and stats.lowering_timeouts == 1 and elapsed < 30
    assert "longer than 0.5 s" in stats.failure_examples[0]
    assert 200 < remaining <= 300  # the other timer survives


def test_lowering_that_explodes_is_counted_and_resampled(monkeypatch):
    real = generator.core.lowering.lower_source
    calls = []

    def explodes_once(source, name, **kwargs):
        calls.append(name)
        if len(calls) == 1:
            raise MemoryError("module too large")
        return real(source, name, **kwargs)

    monkeypatch.setattr(generator.core.lowering, "lower_source", explodes_once)
    (task,) = plan_shards(min_shards_per_split=1, train_size=2, validation_size=0, seed=1)["train"]
    stats = ShardStats()
    assert len(list(generate_shard(task, stats))) == 2
    assert stats.lowering_failures == 1 and "MemoryError" in stats.failure_examples[0]


def test_shard_that_raises_fails_the_build_naming_shard_and_seed(builder_module, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("sampler bug")

    monkeypatch.setattr(generator.core.rows, "sample_program", broken)
    builder = builder_module.JaxStablehloPairs(
        config_name="balanced", cache_dir=str(tmp_path), train_size=4, validation_size=2, seed=5
    )
    with pytest.raises(Exception) as info:
        builder.download_and_prepare()
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("shard train/0 (seed 5" in m and "sampler bug" in m for m in chain), chain
    assert _completed_builds(tmp_path) == []  # nothing a later load could serve


KILLED_BUILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import generator.runtime.shards as shards

    real, marker = shards.generate_in_process, Path(sys.argv[2])

    def slow(task, stats):  # the second shard crawls, so the kill lands mid-build
        for row in real(task, stats):
            (marker.parent / f"generating-{os.getpid()}").touch()
            yield row
            if task.shard_index >= 1:
                marker.touch()
                time.sleep(0.5)

    shards.generate_in_process = slow
    import datasets
    datasets.load_dataset(sys.argv[3], "balanced", cache_dir=sys.argv[1], trust_remote_code=True,
                          train_size=12, validation_size=4, test_size=4, rows_per_shard=4, seed=2,
                          num_proc=eval(sys.argv[4]))
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # an unreaped zombie is dead


def _all_gone(pids, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for pid in left:  # do not leave them running after a failure
        os.kill(pid, signal.SIGKILL)
    return not left


def test_a_forked_worker_dies_with_its_parent():
    program = textwrap.dedent(
        """
        import os, signal, time
        import generator.runtime.forksafe as fs
        pid = os.fork()
        if pid == 0:
            fs.die_with_parent_if_forked()
            time.sleep(60)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL
    child = int(done.stdout.split()[0])
    assert _all_gone([child], timeout=10)


def _descendants(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        kids = [int(c) for t in tasks for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in _descendants(k)]


@pytest.mark.parametrize("num_proc", [None, pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_mid_build_then_rebuild_gives_exactly_the_right_rows(tmp_path, num_proc):
    import datasets

    cache, marker = tmp_path / "cache", tmp_path / "in-second-shard"
    env = {**os.environ, "HF_DATASETS_TRUST_REMOTE_CODE": "1", "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-c", KILLED_BUILD, str(cache), str(marker), SCRIPT, repr(num_proc)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the build never reached its second shard"
    others = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    # A worker that was generating rows dies with its parent instead of generating on for nobody.
    generating = [int(p.name.split("-")[1]) for p in tmp_path.glob("generating-*")]
    assert _all_gone([p for p in generating if p != proc.pid]), "a generating worker outlived the killed build"
    _all_gone(others, timeout=0)  # idle ones (datasets' progress manager) wait on a pipe: end them
    assert list(cache.rglob("*.incomplete")), "expected the killed build's partial output"
    assert _completed_builds(cache) == []

    ds = datasets.load_dataset(
        SCRIPT,
        "balanced",
        cache_dir=str(cache),
        trust_remote_code=True,
        train_size=12,
        validation_size=4,
        test_size=4,
        rows_per_shard=4,
        seed=2,
    )
    expected = _expected(train_size=12, validation_size=4, test_size=4, rows_per_shard=4, seed=2)
    assert {s: ds[s]["id"] for s in ds} == expected
    assert not list(cache.rglob("*.incomplete"))
