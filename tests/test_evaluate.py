"""The benchmark scorer: layers that tell right answers from wrong ones, limited workers, baselines.

The rows are built here from a few hand-written programs (``lower_source``, as the builder
lowers), written in the staged layout (``<folder>/<config>/<split>-00000-of-00001.parquet``).
"""

from __future__ import annotations

import hashlib
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.core.lowering import lower_source
from generator.core.views import cost_text
from generator.tools import cli
from generator.tools.evaluate import (
    Limits,
    RefusedError,
    baseline_predictions,
    evaluate,
    format_report,
    pass_at_k,
)
from generator.tools.evaluate.irtools import parse_cost_text

SOURCES = {
    "elementwise": (
        "scale_shift",
        "import jax\nimport jax.numpy as jnp\n\n\ndef scale_shift(x):\n    return x * 2.0 + jnp.sin(x)\n\n\n"
        "def example_args():\n    return (jax.ShapeDtypeStruct((8,), jnp.float32),)\n",
    ),
    "matrix": (
        "project",
        "import jax\nimport jax.numpy as jnp\n\n\ndef project(a, b):\n    return jnp.tanh(a @ b) * 2.0\n\n\n"
        "def example_args():\n    return (jax.ShapeDtypeStruct((4, 8), jnp.float32), jax.ShapeDtypeStruct((8, 3), jnp.float32))\n",
    ),
    "reduction": (
        "column_total",
        "import jax\nimport jax.numpy as jnp\n\n\ndef column_total(x):\n    return jnp.sum(x * 2.0, axis=0)\n\n\n"
        "def example_args():\n    return (jax.ShapeDtypeStruct((16, 4), jnp.float32),)\n",
    ),
}
# The train split: programs like the test's, so ``nearest`` has neighbours to find.
TRAIN_SOURCES = {
    "elementwise": (
        "scale_shift_again",
        "import jax\nimport jax.numpy as jnp\n\n\ndef scale_shift_again(x):\n    return x * 2.0 + jnp.sin(x)\n\n\n"
        "def example_args():\n    return (jax.ShapeDtypeStruct((8,), jnp.float32),)\n",
    ),
    "matrix": (
        "matmul_only",
        "import jax\nimport jax.numpy as jnp\n\n\ndef matmul_only(a, b, c):\n    return jnp.dot(a, b) - c\n\n\n"
        "def example_args():\n    return (jax.ShapeDtypeStruct((2, 2), jnp.float32),) * 3\n",
    ),
}


def make_row(category: str, name: str, source: str) -> dict:
    pair = lower_source(source, name, optimize=True)
    sig = [{"shape": list(s), "dtype": d} for s, d in pair.input_signature]
    return {
        "id": hashlib.sha256(source.encode()).hexdigest()[:16],
        "category": category,
        "function_name": name,
        "python_source": source,
        "stablehlo_ir": pair.stablehlo_ir,
        "input_signature": sig,
        "output_signature": [{"shape": list(s), "dtype": d} for s, d in pair.output_signature],
        "flops": pair.cost_analysis["flops"],
        "transcendentals": pair.cost_analysis["transcendentals"],
        "bytes_accessed": pair.cost_analysis["bytes accessed"],
        "lowering": "jit",
        "optimized_hlo": pair.optimized_hlo,
    }


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate") / "staged"
    for split, sources in (("validation", SOURCES), ("train", TRAIN_SOURCES)):
        rows = [make_row(c, n, s) for c, (n, s) in sources.items()]
        (root / "tiny").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "tiny" / f"{split}-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def rows(staged):
    return pq.read_table(staged / "tiny" / "validation-00000-of-00001.parquet").to_pylist()


def score(task, predictions, staged, **kwargs):
    return evaluate(task, predictions, staged, "tiny", "validation", **kwargs)


def rates(report) -> dict[str, float]:
    return {layer: v["rate"] for layer, v in report["layers"].items()}


def renamed(ir: str) -> str:
    """The same module with every value and the module renamed."""
    ir = re.sub(r"%(\d+)", r"%v\1", ir)
    ir = re.sub(r"%cst", "%const", ir)
    return re.sub(r"module @\w+", "module @jit_renamed", ir, count=1)


def test_reference_answers_score_one_on_every_layer(staged, monkeypatch):
    from generator.tools.evaluate.pool import Worker

    starts = []
    start = Worker._start
    monkeypatch.setattr(Worker, "_start", lambda self: (starts.append(self), start(self))[1])
    for task in ("forward", "cost", "optimize"):
        starts.clear()
        predictions = baseline_predictions("reference", task, staged, "tiny", "validation")
        report = score(task, predictions, staged, workers=1)
        assert set(rates(report).values()) == {1.0}, (task, report["layers"])
        assert report["failures"] == {} and report["rows"] == 3
        if task != "cost":
            assert report["agrees_cap"]["left_out"] == 0 and report["layers"]["agrees"]["denominator"] == 3
        # the worker that ran the references scored the answers too (cost runs nothing)
        assert len(starts) == (0 if task == "cost" else 1), task


def test_forward_layers_tell_right_from_wrong(staged, rows):
    preds = []
    for r in rows:
        ir = r["stablehlo_ir"]
        assert "2.000000e+00" in ir
        preds += [
            {"id": r["id"], "prediction": renamed(ir)},  # sample 0: renamed values and module
            {"id": r["id"], "prediction": ir.replace("2.000000e+00", "3.000000e+00")},  # 1: a changed constant
            {"id": r["id"], "prediction": ir[: len(ir) // 2]},  # 2: truncated
        ]
    report = score("forward", preds, staged)
    by_sample = {s: [a for a in report["answers"] if a["sample"] == s] for s in range(3)}
    for a in by_sample[0]:
        assert a["layers"] == {"parses": True, "signature": True, "exact": False, "normalized": True, "agrees": True}
        assert a["failure"] is None
    for a in by_sample[1]:
        assert a["layers"]["parses"] and a["layers"]["signature"] and not a["layers"]["agrees"]
        assert a["failure"] == "wrong_values"
    for a in by_sample[2]:
        assert a["layers"] == {"parses": False} and a["failure"] == "unparseable"
    assert report["k"] == 3
    assert rates(report) == pytest.approx(
        {"parses": 2 / 3, "signature": 2 / 3, "exact": 0, "normalized": 1 / 3, "agrees": 1 / 3}, abs=1e-3
    )
    assert {v["pass_at_k"] for layer, v in report["layers"].items() if layer != "exact"} == {1.0}
    assert report["failures"] == {"wrong_values": 3, "unparseable": 3}
    table = format_report(report)
    assert "overall" in table and "pass@3" in table and "33.3%" in table


def test_missing_and_unknown_ids(staged, rows):
    # which ids count is the same for every task: the cost task scores without workers
    preds = [{"id": r["id"], "prediction": cost_text(r)} for r in rows[1:]]
    report = score("cost", preds, staged)
    assert report["layers"]["parses"]["rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["layers"]["parses"]["denominator"] == 3
    assert report["failures"] == {"missing_answer": 1}
    with pytest.raises(ValueError, match="not in tiny/validation: 'nope'"):
        score("cost", preds + [{"id": "nope", "prediction": "x"}], staged)
    with pytest.raises(ValueError, match="unknown split 'test' of config 'tiny'; valid splits: train, validation"):
        evaluate("cost", preds, staged, "tiny", "test")
    with pytest.raises(ValueError, match="unknown task 'backward'; valid tasks: forward, reverse, cost, optimize"):
        evaluate("backward", preds, staged, "tiny", "validation")


def test_pass_at_k():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 1, 5) == 1.0 and pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(2, 1, 4) == 1.0 and pass_at_k(0, 0, 1) == 0.0


def test_cost_figures_within_ten_percent(staged, rows):
    r = rows[0]
    text = cost_text(r)
    assert parse_cost_text(text) == {k: r[k] for k in ("flops", "transcendentals", "bytes_accessed")}
    off = text.replace(f"flops: {int(r['flops'])}", f"flops: {r['flops'] * 1.2!r}")
    preds = [{"id": r["id"], "prediction": off}, {"id": rows[1]["id"], "prediction": "flops: many"}]
    report = score("cost", preds, staged)
    first = report["answers"][0]["layers"]
    assert first == {"parses": True, "flops": False, "transcendentals": True, "bytes_accessed": True, "all": False}
    assert report["relative_error"]["flops"]["median"] == pytest.approx(0.2, abs=0.01)
    assert report["failures"] == {"wrong_values": 1, "unparseable": 1, "missing_answer": 1}


def test_reverse_is_refused_without_execute_predictions(staged, rows, capsys):
    preds = [{"id": r["id"], "prediction": "import os; os.remove('x')"} for r in rows]
    with pytest.raises(RefusedError, match="execute_predictions"):
        score("reverse", preds, staged)
    assert (
        cli.main(
            [
                "evaluate",
                "--task",
                "reverse",
                "--baseline",
                "copy",
                "--staged",
                str(staged),
                "--config",
                "tiny",
                "--split",
                "validation",
            ]
        )
        == 3
    )
    assert "REFUSED" in capsys.readouterr().err


def test_hostile_reverse_predictions_fail_alone(staged, rows, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")  # must not reach a worker
    loop = "while True:\n    pass\n"
    hungry = "x = bytearray(100 * 2**30)\n"
    killer = "import os\nos.kill(os.getpid(), 9)\n"
    leak = "import os\nassert 'HF_TOKEN' not in os.environ, 'the token leaked'\nimport sys\nprint('garbage' * 1000)\nsys.stdout.write('{not json\\n')\n"
    preds = []
    for r in rows:
        preds.append({"id": r["id"], "prediction": r["python_source"]})
    a, b, c = rows
    preds += [
        {"id": a["id"], "prediction": loop + a["python_source"]},
        {"id": b["id"], "prediction": hungry + b["python_source"]},
        {"id": c["id"], "prediction": killer + c["python_source"]},
        {"id": a["id"], "prediction": leak + a["python_source"]},
        {"id": b["id"], "prediction": "import sys\nsys.exit(3)\n"},
        {"id": c["id"], "prediction": c["python_source"].replace("column_total", "other_name")},
    ]
    report = score("reverse", preds, staged, execute_predictions=True, limits=Limits(time_limit=5, cpu_seconds=10))
    failure = {(x["id"], x["sample"]): x["failure"] for x in report["answers"]}
    assert [failure[(r["id"], 0)] for r in rows] == [None, None, None]
    assert failure[(a["id"], 1)] == "timeout"
    assert failure[(b["id"], 1)] == "out_of_memory"
    assert failure[(c["id"], 1)] == "crash"
    assert failure[(a["id"], 2)] is None  # printed garbage, but the answer is right and no token reached it
    assert failure[(b["id"], 2)] == "crash"  # sys.exit
    assert failure[(c["id"], 2)] == "missing_definition"
    assert report["failures"] == {"timeout": 1, "out_of_memory": 1, "crash": 2, "missing_definition": 1}


def test_baselines_and_cli(staged, rows, tmp_path):
    nearest = {
        p["id"]: p["prediction"] for p in baseline_predictions("nearest", "forward", staged, "tiny", "validation")
    }
    train = {r["function_name"]: r for r in pq.read_table(staged / "tiny" / "train-00000-of-00001.parquet").to_pylist()}
    assert nearest[rows[0]["id"]] == train["scale_shift_again"]["stablehlo_ir"]  # the same program, another name
    assert nearest[rows[1]["id"]] == train["matmul_only"]["stablehlo_ir"]
    copy = baseline_predictions("copy", "forward", staged, "tiny", "validation")
    assert [p["prediction"] for p in copy] == [r["python_source"] for r in rows]
    out, preds = tmp_path / "report.json", tmp_path / "preds.jsonl"
    argv = ["evaluate", "--task", "cost", "--baseline", "nearest", "--staged", str(staged), "--config", "tiny"]
    argv += ["--split", "validation", "--report-json", str(out), "--write-predictions", str(preds)]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["baseline"] == "nearest" and report["task"] == "cost" and report["rows"] == 3
    # scale_shift's neighbour is the same program: the same cost figures; the others' are not
    assert [a["layers"]["all"] for a in report["answers"]] == [True, False, False]
    assert len(preds.read_text().splitlines()) == 3
    argv = ["evaluate", "--task", "cost", "--predictions", str(preds), "--staged", str(staged), "--config", "tiny"]
    assert cli.main(argv + ["--split", "validation"]) == 0
    assert cli.main(argv + ["--split", "nope"]) == 2


def test_a_worker_for_multi_device_rows_has_their_devices():
    """Reverse answers of multi_device rows lower on a mesh of 8 host devices: the worker must have them."""
    import subprocess
    import sys

    from generator.tools.evaluate.pool import Limits, worker_env

    env = worker_env(Limits(), host_devices=8)
    done = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.device_count())"], env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "8", done.stderr[-2000:]
