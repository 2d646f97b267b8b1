"""The throughput benchmark stays runnable, and its checks say what they measure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_throughput as bench  # noqa: E402


def _builder(rows, pps, cpu, wall, rss):
    return {
        "rows": rows,
        "pairs_per_second": pps,
        "cpu_seconds": cpu,
        "process_seconds": wall,
        "worker_peak_rss_mb": rss,
    }


def test_summary_checks_each_target():
    inproc = {"pairs_per_second": {"original": 10.0, "floor": 40.0, "pipeline": 36.0}, "peak_rss_mb": 300.0}
    builders = {
        "np2": _builder(1100, 65.0, 40.0, 20.0, 300.0),
        "np1": _builder(1100, 35.0, 30.0, 30.0, 320.0),
        "np2_large": {**_builder(55000, 66.0, 1600.0, 830.0, 390.0), "worker_rss_halves_mb": [300.0, 360.0]},
    }
    summary = bench.summarize(inproc, builders)
    assert summary["ratios"]["builder_np2_over_original"] == 6.5
    assert abs(summary["ratios"]["pipeline_cost_over_floor"] - 40 / 36) < 1e-9
    assert summary["checks"] == {
        "(d) >= 6x (a)": True,
        "(c) <= 1.25x (b) per pair": True,
        "num_proc=2 >= 1.8x num_proc=1": True,  # 65 / 35 = 1.86
        "peak RSS per worker <= 600 MB": True,
        "no accumulation: 55,000-row build's 2nd-half worker RSS <= 1.1x its 1st half": False,  # 360 / 300
    }
    assert summary["ratios"]["worker_rss_large_over_small"] == 1.3


def test_halves_tell_a_plateau_from_growth():
    plateau = [(t, 300.0 if t < 5 else 330.0) for t in range(100)]
    growth = [(t, 300.0 + t) for t in range(100)]
    assert bench._halves(plateau) == [330.0, 330.0]
    assert bench._halves(growth) == [349.0, 399.0]
    assert bench._halves(plateau[:5]) is None


def test_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_throughput.py"), "--rows", "4", "--rows-per-shard", "2"]
    cmd += ["--rounds", "0", "--large-rows", "0", "--output", str(out), "--categories", "arithmetic,matrix"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["in_process"]["programs"] == 6  # 4 train + 2 validation rows, 3 shards
    assert result["in_process"]["shards"] == 3
    assert set(result["pairs_per_second"]) == {"original", "floor", "pipeline"}
    assert "(c) pipeline, one process" in done.stdout


def test_num_proc_builds_run_in_abba_order_so_linear_drift_cancels():
    assert bench.scaling_order(1) == ["np2", "np1"]
    assert bench.scaling_order(2) == ["np2", "np1", "np1", "np2"]
    assert bench.scaling_order(3).count("np1") == bench.scaling_order(3).count("np2") == 3


def test_rounds_pool_to_total_rows_over_total_seconds():
    def run(rows, seconds, peaks):
        return {
            **_builder(rows, rows / seconds, seconds * 2, seconds + 1, max(peaks)),
            "num_proc": 2,
            "build_seconds": seconds,
            "rows_per_shard": 50,
            "main_peak_rss_mb": 250.0,
            "worker_peaks_mb": peaks,
        }

    fast, slow = run(3300, 50.0, [270.0, 280.0]), run(3300, 60.0, [290.0, 260.0])
    pooled = bench.pool_rounds([fast, slow])
    assert pooled["rows"] == 6600
    assert pooled["pairs_per_second"] == 6600 / 110.0  # not the mean of the two rates
    assert pooled["cpu_seconds"] == 220.0
    assert pooled["worker_peak_rss_mb"] == 290.0
    assert pooled["worker_peaks_mb"] == [260.0, 270.0, 280.0, 290.0]
    assert pooled["rounds"] == [fast, slow]
    assert bench.pool_rounds([fast]) is fast

    np1 = bench.pool_rounds([run(3300, 100.0, [300.0]), run(3300, 110.0, [300.0])])
    inproc = {"pairs_per_second": {"original": 10.0, "floor": 40.0, "pipeline": 36.0}, "peak_rss_mb": 300.0}
    ratios = bench.summarize(inproc, {"np2": pooled, "np1": np1})["ratios"]
    assert ratios["np2_over_np1"] == (6600 / 110.0) / (6600 / 210.0)
    assert ratios["np2_over_np1_round_1"] == 2.0  # 100 s / 50 s
    assert ratios["np2_over_np1_round_2"] == 110.0 / 60.0


def test_builds_must_be_the_programs_the_in_process_methods_ran_on():
    ids = ["a", "b", "c"]
    same = {"ids_sha256": bench.ids_digest(ids)}
    bench.check_same_programs(ids, {"np2": [same, same], "np1": [same]})
    reordered = {"ids_sha256": bench.ids_digest(["b", "a", "c"])}
    with pytest.raises(AssertionError, match="np1: the build's rows are not the programs"):
        bench.check_same_programs(ids, {"np2": [same], "np1": [same, reordered]})


def test_spread_picks_evenly_spaced_shards():
    from generator.core.plan import plan_shards

    tasks = plan_shards(train_size=100, validation_size=0, seed=0, rows_per_shard=10)["train"]
    assert bench.spread(tasks, 0) == tasks
    assert bench.spread(tasks, 1000) == tasks
    picked = bench.spread(tasks, 30)
    assert [t.shard_index for t in picked] == [0, 3, 6]


def test_a_memory_build_alone_is_summarized_without_the_scaling_builds():
    inproc = {"pairs_per_second": {"original": 10.0, "floor": 40.0, "pipeline": 36.0}, "peak_rss_mb": 300.0}
    large = {**_builder(55000, 66.0, 1600.0, 830.0, 390.0), "worker_rss_halves_mb": [300.0, 315.0]}
    summary = bench.summarize(inproc, {"np2_large": large})
    assert summary["ratios"]["large_build_rss_second_half_over_first"] == 1.05
    assert "np2_over_np1" not in summary["ratios"]
    assert summary["checks"]["peak RSS per worker <= 600 MB"] is True
