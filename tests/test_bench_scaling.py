"""The scaling benchmark: shares of the two-core bound per size, its targets, and the cost of a million rows."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_scaling as scaling  # noqa: E402


def test_sizes_hold_about_a_twelfth_out_in_each_of_validation_and_test():
    assert scaling.sizes_for(300) == {"train_size": 250, "validation_size": 25, "test_size": 25}
    assert scaling.sizes_for(20000) == {"train_size": 16668, "validation_size": 1666, "test_size": 1666}
    assert sum(scaling.sizes_for(2000).values()) == 2000


def test_the_floor_samples_the_first_rows_of_every_shard():
    tasks = scaling.plan_for(scaling.bench_config("models"), 2000, 0)
    sample = scaling.first_rows(tasks, 600)
    assert [dataclasses.replace(t, num_rows=0) for t in sample] == [dataclasses.replace(t, num_rows=0) for t in tasks]
    assert 600 <= sum(t.num_rows for t in sample) < 600 + len(tasks)
    # the same share of every shard, rounded up: train's shards hold about ten times validation's
    assert [t.num_rows for t in sample[:8]] == [63] * 8 and {t.num_rows for t in sample[8:]} == {6, 7}
    # and so of every category, which whole shards are not: models' six categories over eight shards
    drawn = lambda ts: {t.category_of(t.row_offset + i * t.row_stride) for t in ts for i in range(t.num_rows)}  # noqa: E731
    assert drawn(tasks[0:1]) == {"moe", "recurrent", "transformer"}
    assert drawn(sample) == set(scaling.bench_config("models").categories)
    assert scaling.first_rows(tasks, 10**6) == tasks == scaling.first_rows(tasks, 0)


def test_the_plan_is_the_builders_own():
    from generator.core.config import BuildOptions

    tasks = scaling.plan_for(scaling.bench_config("balanced"), 300, 3)
    options = BuildOptions(seed=3, **scaling.sizes_for(300))
    assert tasks == [t for ts in options.shard_plan().values() for t in ts]


def test_sizes_are_given_for_every_config_or_per_config():
    assert scaling.parse_sizes("300,2000", ["balanced", "models"]) == {"balanced": [300, 2000], "models": [300, 2000]}
    assert scaling.parse_sizes("balanced=20000", ["balanced", "models"]) == {"balanced": [20000], "models": []}
    assert scaling.parse_sizes("", ["models"]) == {"models": []}
    with pytest.raises(ValueError, match="'mixed'.*balanced, models"):
        scaling.parse_sizes("mixed=300", ["balanced", "models"])
    assert scaling.parse_sizes("balanced=2000;models=300,2000", ["balanced", "models"]) == {
        "balanced": [2000],
        "models": [300, 2000],
    }
    with pytest.raises(ValueError, match=r"bad sizes 'balanced=2000,models=2000'.*apart by ';'.*balanced, models"):
        scaling.parse_sizes("balanced=2000,models=2000", ["balanced", "models"])
    with pytest.raises(ValueError, match="bad sizes '2k'"):
        scaling.parse_sizes("2k", ["balanced"])


def _entry(total, floor, np2=None, np1=None, ray=None, pipeline=None):
    builds = {k: {"pairs_per_second": v} for k, v in (("np2", np2), ("np1", np1), ("ray", ray)) if v}
    floor = {
        "pairs_per_second": floor,
        "programs": 600,
        **({"pipeline_pairs_per_second": pipeline} if pipeline else {}),
    }
    return {"total": total, "rows": total, "floor": floor, "builds": builds}


def test_shares_are_over_two_floors_and_small_builds_have_the_lower_target():
    small = scaling.summarize(_entry(300, 5.0, np2=8.2, np1=4.5))
    assert small["two_core_bound"] == 10.0 and small["np2_share"] == pytest.approx(0.82)
    assert small["checks"] == {"num_proc=2 >= 0.8 of two floors": True, "num_proc=2 >= 1.8x num_proc=1": True}
    large = scaling.summarize(_entry(2000, 5.0, np2=8.8, ray=8.4))
    assert large["checks"] == {
        "num_proc=2 >= 0.9 of two floors": False,
        "Ray >= 0.85 of two floors": False,
        "Ray within 10% of num_proc=2": True,
    }
    assert large["ray_over_np2"] == pytest.approx(8.4 / 8.8)
    for ray, within in ((9.7, False), (9.6, True), (7.8, False), (8.0, True)):  # 10% either way of 8.8
        assert (
            scaling.summarize(_entry(2000, 5.0, np2=8.8, ray=ray))["checks"]["Ray within 10% of num_proc=2"] is within
        )
    table = scaling.render_table({"models": [{**_entry(2000, 5.0, np2=8.8, ray=8.4), "summary": large}]})
    assert "| models | 2,000 | 5.0 (600) | - | 8.8 | 0.88 | - | - | - | - | 8.4 | 0.84 |" in table
    assert table.endswith(
        "missed: models 2,000: num_proc=2 >= 0.9 of two floors; models 2,000: Ray >= 0.85 of two floors"
    )


def test_the_table_tells_per_row_work_from_scheduling():
    entry = _entry(2000, 5.0, np2=8.0, np1=4.4, pipeline=4.4)
    entry["builds"]["np2"].update(cpu_seconds=380.0, seconds=200.0)
    summary = scaling.summarize(entry)
    assert summary["pipeline_over_floor"] == pytest.approx(5.0 / 4.4)  # per-row work beyond the floor
    assert summary["np2_over_two_pipelines"] == pytest.approx(8.0 / 8.8)  # parallel efficiency
    assert summary["np2_cores_busy"] == pytest.approx(1.9)
    assert "np2_cores_busy" not in summary["checks"] and len(summary["checks"]) == 2  # reported, not targets
    table = scaling.render_table({"balanced": [{**entry, "summary": summary}]})
    assert "| balanced | 2,000 | 5.0 (600) | 1.14 | 8.0 | 0.80 | 0.91 | 1.90 | 4.4 | 1.82 | - | - |" in table


def test_a_million_rows_cost_follows_from_the_largest_build():
    np2 = {"pairs_per_second": 10.0, "seconds": 2000.0, "ir_tokens": 8_000_000, "parquet_bytes": 130_000_000}
    np2["rows"] = 20000
    small = {**np2, "pairs_per_second": 9.0, "rows": 300}
    sections = {"balanced": [{"rows": 300, "builds": {"np2": small}}, {"rows": 20000, "builds": {"np2": np2}}]}
    (row,), text = scaling.cost_table(sections)
    assert row["measured_rows"] == 20000
    assert row["pairs_per_second_per_core"] == 5.0  # two workers on two cores
    assert row["ir_tokens_per_second_per_core"] == 2000.0
    assert row["bytes_per_row"] == 6500.0 and row["gb_per_million"] == 6.5
    assert row["core_hours_per_million"] == pytest.approx(1e6 / 5.0 / 3600)
    assert row["hours_on_64_cores"] == pytest.approx(row["core_hours_per_million"] / 64)
    assert "| balanced | 5.00 | 2,000 | 6,500 | 55.6 | 6.5 | 0.87 | 0.11 | 20,000 rows, num_proc=2 |" in text
    # a Ray build of the same size gives the bytes (its own Parquet shards)
    assert "ray_pairs_per_second_per_core" not in row
    ray = {"rows": 20000, "parquet_bytes": 120_000_000, "pairs_per_second": 9.5}
    (row,), _ = scaling.cost_table({"balanced": [{"rows": 20000, "builds": {"np2": np2, "ray": ray}}]})
    assert row["bytes_per_row"] == 6000.0
    assert row["ray_pairs_per_second_per_core"] == 4.75  # the Ray build's rate, beside num_proc=2's
    assert row["pairs_per_second_per_core"] == 5.0


def test_rounds_pool_to_total_rows_over_total_seconds():
    pooled = scaling.pool(
        [{"rows": 100, "seconds": 10.0, "ir_tokens": 5}, {"rows": 100, "seconds": 30.0, "ir_tokens": 7}]
    )
    assert pooled["pairs_per_second"] == 5.0 and pooled["rounds"] == 2 and pooled["ir_tokens"] == 12


def test_the_recorded_command_runs_in_a_shell_and_names_no_output_path():
    argv = ["--sizes", "balanced=20000;models=2000", "--output", "/some/where.json", "--card-json=/x/costs.json"]
    command = scaling.measurement_command([*argv, "--ray-sizes", ""])
    assert command == "python benchmarks/bench_scaling.py --sizes 'balanced=20000;models=2000' --ray-sizes ''"


@pytest.mark.slow
def test_scaling_bench_runs_end_to_end_at_a_tiny_size(tmp_path):
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scaling.py"), "--configs", "arithmetic"]
    cmd += ["--sizes", "36", "--np1-up-to", "36", "--ray-sizes", "", "--floor-programs", "8", "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    result = json.loads(out.read_text())
    (entry,) = result["sections"]["arithmetic"]
    assert entry["rows"] == 36 and set(entry["builds"]) == {"np2", "np1"}
    assert entry["floor"]["programs"] >= 8 and entry["summary"]["two_core_bound"] > 0
    assert result["costs"][0]["config"] == "arithmetic" and result["costs"][0]["bytes_per_row"] > 0
    assert "What a million rows costs" in done.stdout and done.returncode in (0, 1)  # 1: a target missed


def test_a_saved_run_is_rendered_again_with_this_code(tmp_path):
    np2 = {"pairs_per_second": 10.0, "seconds": 2000.0, "ir_tokens": 8_000_000, "parquet_bytes": 130_000_000}
    ray = {"pairs_per_second": 11.5, "seconds": 1739.0, "rows": 20000, "parquet_bytes": 120_000_000}
    entry = _entry(20000, 6.0)
    entry["builds"] = {"np2": {**np2, "rows": 20000}, "ray": ray}
    saved = {
        "started": "20261207T235959",
        "command": "python benchmarks/bench_scaling.py --sizes 20000",
        "machine": {"cpus": 2, "jax": "0.12.0.1", "python": "3.12.1"},  # a run saved before "processor"
        "sections": {"balanced": [{**entry, "summary": {"checks": {}}}]},  # a summary of older code
        "costs": [],
        "table": "old",
        "cost_table": "old",
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(saved))
    card, out = tmp_path / "costs.json", tmp_path / "again.json"
    assert scaling.main(["--from-results", str(path), "--card-json", str(card), "--output", str(out)]) == 1
    again = json.loads(out.read_text())
    (summary,) = [e["summary"] for e in again["sections"]["balanced"]]
    assert summary["checks"] == {
        "num_proc=2 >= 0.9 of two floors": False,  # 10 of 12
        "Ray >= 0.85 of two floors": True,
        "Ray within 10% of num_proc=2": False,  # 1.15
    }
    assert again["command"] == saved["command"] and again["started"] == saved["started"]
    costs = json.loads(card.read_text())
    assert costs["measured_on"] == "2026-12-07" and costs["command"] == saved["command"]
    assert costs["machine"].startswith("2 cores (") and costs["machine"].endswith("), jax 0.12.0.1")
    (row,) = costs["costs"]
    assert row["pairs_per_second_per_core"] == 5.0 and row["ray_pairs_per_second_per_core"] == 5.75
    assert scaling.main(["--from-results", str(path)]) == 1  # re-rendered, nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "costs.json", "run.json"]
