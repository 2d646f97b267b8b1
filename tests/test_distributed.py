"""Ray runner: same rows as the builder's shards, the Hub staging's file layout, retried shards.

Marked ``ray`` (and ``slow``): starting Ray takes seconds, so the default run skips it;
``make test-ray`` runs it (needs the ``ray`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from generator.core.schema import FEATURES  # noqa: E402
from generator.runtime.shards import generate_shard  # noqa: E402
from generator.tools.distributed import builder_config, generate_with_ray, shard_table  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SIZES = {"train_size": 6, "validation_size": 3, "test_size": 2, "rows_per_shard": 2, "seed": 3}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _expected_rows(config: str) -> dict[str, list[dict]]:
    plan = builder_config(config, **SIZES).shard_plan()
    return {
        split: [FEATURES.encode_example(r) for t in tasks for r in generate_shard(t)] for split, tasks in plan.items()
    }


def _written_rows(files: list[Path]) -> list[dict]:
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_ray_build_writes_the_builders_rows_in_hub_layout(local_ray, tmp_path):
    result = generate_with_ray(tmp_path, config="matrix", **SIZES)

    names = sorted(p.name for p in (tmp_path / "matrix").iterdir())
    assert names == ["test-00000-of-00001.parquet"] + [f"train-0000{i}-of-00003.parquet" for i in range(3)] + [
        f"validation-0000{i}-of-00002.parquet" for i in range(2)
    ]
    assert result.rows == {"train": 6, "validation": 3, "test": 2}
    expected = _expected_rows("matrix")
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
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


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
    expected = _expected_rows("balanced")
    for split in ("train", "validation", "test"):
        assert _written_rows(result.files[split]) == expected[split]


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


def test_bad_config_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown configs"):
        generate_with_ray(out, config="nope")
    with pytest.raises(ValueError, match="train_size"):
        generate_with_ray(out, config="matrix", train_size=-1)
    assert not out.exists()
