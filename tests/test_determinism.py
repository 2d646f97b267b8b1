"""Same version, config, seed and sizes give identical rows across runs, num_proc and PYTHONHASHSEED."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from generator.core.plan import plan_shards
from generator.runtime.shards import generate_shard
from tests.conftest import ROOT, SCRIPT

SIZES = dict(train_size=6, validation_size=3, test_size=3, rows_per_shard=3, seed=3)

SHARDS = textwrap.dedent(
    """
    import hashlib, json, sys
    from generator.runtime.shards import generate_shard
    from generator.core.plan import plan_shards
    plan = plan_shards(**json.loads(sys.argv[1]))
    rows = {s: [r for t in tasks for r in generate_shard(t)] for s, tasks in plan.items()}
    print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())
    """
)

BUILDER = textwrap.dedent(
    """
    import hashlib, json, sys
    import datasets
    sizes, num_proc, cache = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    ds = datasets.load_dataset(sys.argv[4], "balanced", cache_dir=cache, num_proc=num_proc, trust_remote_code=True, **sizes)
    rows = {s: ds[s].to_list() for s in ds}
    print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())
    """
)


def _digest_here(sizes) -> str:
    plan = plan_shards(**sizes)
    rows = {s: [r for t in tasks for r in generate_shard(t)] for s, tasks in plan.items()}
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _run(code: str, *args: str, hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "HF_DATASETS_TRUST_REMOTE_CODE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_shards_identical_across_runs_and_hash_seeds():
    here = _digest_here(SIZES)
    assert _digest_here(SIZES) == here  # a second run in the same process
    for hashseed in ("0", "4242"):
        assert _run(SHARDS, json.dumps(SIZES), hashseed=hashseed) == here, f"PYTHONHASHSEED={hashseed}"


def test_builder_with_num_proc_2_and_another_hash_seed_gives_the_same_rows(tmp_path):
    here = _digest_here(SIZES)
    got = _run(BUILDER, json.dumps(SIZES), "2", str(tmp_path / "c"), SCRIPT, hashseed="7")
    assert got == here


@pytest.mark.slow
@pytest.mark.parametrize("num_proc, hashseed", [("null", "1"), ("1", "99"), ("3", "123456")])
def test_builder_matrix(tmp_path, num_proc, hashseed):
    sizes = dict(train_size=30, validation_size=10, test_size=10, rows_per_shard=7, seed=9)
    assert _run(BUILDER, json.dumps(sizes), num_proc, str(tmp_path / "c"), SCRIPT, hashseed=hashseed) == _digest_here(
        sizes
    )
