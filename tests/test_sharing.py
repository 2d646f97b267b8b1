"""Workers share a build's shards out (``runtime.sharing``): each job still yields its own shards'
rows in order, a worker with nothing left makes another's unclaimed shards and later splits'."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from generator.core.plan import plan_shards
from generator.runtime.sharing import SharedShards

SLOW = ("train", 4)  # the shard that keeps job B busy while job A runs out of work


def _make(task):
    time.sleep(0.8 if (task.split, task.shard_index) == SLOW else 0.01)
    for i in range(task.num_rows):
        yield {"shard": f"{task.split}-{task.shard_index}", "i": i, "made_by": os.getpid()}


def _job(shared, own, out):
    out.put((os.getpid(), [(t.split, t.shard_index, i, row) for t, i, row in shared.rows(own, _make)]))


def _plan():
    plan = plan_shards(train_size=16, validation_size=2, test_size=0, seed=0)
    assert [len(plan[s]) for s in ("train", "validation")] == [8, 2]
    return plan


def test_jobs_yield_their_own_rows_in_order_and_the_idle_one_makes_the_others(tmp_path):
    plan = _plan()
    shared = SharedShards(str(tmp_path), tuple(t for tasks in plan.values() for t in tasks))
    train = plan["train"]
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    jobs = [fork.Process(target=_job, args=(shared, own, out)) for own in (train[:4], train[4:])]
    for job in jobs:
        job.start()
    results = dict(out.get(timeout=30) for _ in jobs)
    for job in jobs:
        job.join(timeout=30)
    a, b = (results[job.pid] for job in jobs)

    def expected(own):
        return [(t.split, t.shard_index, i) for t in own for i in range(t.num_rows)]

    # each job: exactly its own shards' rows, in order (what datasets writes is unchanged)
    assert [r[:3] for r in a] == expected(train[:4]) and [r[:3] for r in b] == expected(train[4:])
    assert all(row["shard"] == f"{s}-{k}" and row["i"] == i for s, k, i, row in a + b)
    # job B sat on its slow shard: job A made B's later shards (from the end) meanwhile
    made_by = {(s, k): row["made_by"] for s, k, _, row in b}
    assert made_by[SLOW] == jobs[1].pid
    assert {made_by[("train", k)] for k in (5, 6, 7)} == {jobs[0].pid}
    # and the next split's shards: stored for their owner, who only reads them
    stored = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".rows")
    assert stored == ["validation-0.rows", "validation-1.rows"]
    rows = list(shared.rows(plan["validation"], lambda task: pytest.fail(f"made twice: {task}")))
    assert [(t.shard_index, row["made_by"]) for t, _, row in rows] == [(0, jobs[0].pid), (1, jobs[0].pid)]
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".claim"]  # read rows are removed


def test_a_job_alone_in_its_split_makes_its_shards_in_order_and_nothing_else(tmp_path):
    plan = _plan()
    shared = SharedShards(str(tmp_path), tuple(t for tasks in plan.values() for t in tasks))
    rows = list(shared.rows(plan["train"], _make))
    assert [(t.shard_index, i) for t, i, _ in rows] == [(t.shard_index, i) for t in plan["train"] for i in range(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"train-{k}.claim" for k in range(8))


def test_a_shard_that_failed_in_another_worker_fails_its_owner_by_name(tmp_path):
    plan = _plan()
    shared = SharedShards(str(tmp_path), tuple(plan["train"]))

    def broken(task):
        raise ValueError("no program")
        yield

    with pytest.raises(ValueError):  # the worker that took the shard fails itself ...
        shared._help(broken)
    taken = plan["train"][-1]  # (it takes the last shard first)
    with pytest.raises(RuntimeError, match=r"shard train/7 failed in another worker: ValueError: no program"):
        list(shared.rows([taken], _make))  # ... and its owner says which shard and why


# A fresh interpreter that does what the builder does: share a lowering server, fork two workers
# (before JAX starts, as datasets' num_proc workers are), each lowering a program over a mesh of
# 8 devices; it prints what each worker got and the servers that ran, then whether it stopped.
SHARED_SERVER_SCRIPT = """
import json, multiprocessing, os, sys
from generator.runtime import device_server

SOURCE = '''
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

MESH = jax.make_mesh((8,), ("data",))


def scale(x):
    return x * 2.0


def example_args():
    return (jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=NamedSharding(MESH, P("data"))),)
'''


def worker(out):
    pair = device_server.lower_on_host_devices(SOURCE, "scale")
    out.put({"pid": os.getpid(), "server": device_server._server.proc.pid, "ir": pair.stablehlo_ir})


fork = multiprocessing.get_context("fork")
with device_server.shared_with_forked_workers(needed=sys.argv[1] != "0", servers=max(1, int(sys.argv[1]))):
    started = [server.proc.pid for server, _ in device_server._shared] or None
    out = fork.Queue()
    jobs = [fork.Process(target=worker, args=(out,)) for _ in range(2)]
    for job in jobs:
        job.start()
    got = [out.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join()
print(json.dumps({"started": started, "got": got, "after": device_server._server is None and not device_server._shared}))
print(json.dumps({"still_running": [pid for pid in started or [] if os.path.exists(f"/proc/{pid}")]}))
"""


@pytest.mark.parametrize("servers", [1, 2, 0], ids=["one-shared", "two-shared", "not-needed"])
def test_forked_workers_lower_on_shared_servers_which_stop_at_the_end(servers):
    """With ``shared_with_forked_workers``, the servers start before the workers fork, the
    workers lower on them (no server of their own), and they are gone when the block ends; when
    not needed, nothing starts until a worker asks, and each worker then starts its own."""
    import json
    import subprocess
    import sys

    from generator.runtime.child import child_env

    done = subprocess.run(
        [sys.executable, "-c", SHARED_SERVER_SCRIPT, str(servers)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result, end = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    got = result["got"]
    assert len({g["pid"] for g in got}) == 2 and got[0]["ir"] == got[1]["ir"]
    assert "mhlo.num_partitions = 8" in got[0]["ir"] and "sdy.sharding" in got[0]["ir"]
    used = {g["server"] for g in got}
    if servers:
        assert len(result["started"]) == servers and used <= set(result["started"])  # started before the fork
        assert result["after"] and end["still_running"] == []
    else:
        assert result["started"] is None and len(used) == 2  # a server per worker


def test_a_worker_lowers_on_a_shared_server_no_other_worker_holds(monkeypatch):
    """Each shared server has its own lock: a worker takes the one its pid points at if free,
    else any free one, and waits only when all are busy."""
    import multiprocessing
    import os

    from generator.runtime import device_server

    locks = [multiprocessing.get_context("fork").Lock() for _ in range(2)]
    monkeypatch.setattr(device_server, "_shared", [("first", locks[0]), ("second", locks[1])])
    mine = os.getpid() % 2
    with device_server._claim_shared_server() as server:
        assert server == ("first", "second")[mine] and locks[mine].acquire(block=False) is False
    assert locks[mine].acquire(block=False)  # released after the block; now another worker holds it
    with device_server._claim_shared_server() as server:
        assert server == ("first", "second")[1 - mine]
    locks[mine].release()
    monkeypatch.setattr(device_server, "_shared", [])
    with device_server._claim_shared_server() as server:
        assert server is None  # not shared: the process's own server


def test_shared_servers_must_be_a_positive_count():
    from generator.runtime import device_server

    with pytest.raises(ValueError, match="servers must be a positive integer, got 0"):
        with device_server.shared_with_forked_workers(servers=0):
            pass
