"""The leakage yardstick: held-out rows whose IR op sequence or call sequence occurs in train."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from generator.tools import leakage
from generator.tools.cli import main

IR = """module @jit_f attributes {{mhlo.num_partitions = 1 : i32}} {{
  func.func public @main(%arg0: tensor<{n}xf32>) -> (tensor<f32> {{jax.result_info = "result"}}) {{
    %0 = stablehlo.{op} %arg0 : tensor<{n}xf32>
    %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
    %1 = stablehlo.reduce(%0 init: %cst) applies stablehlo.add across dimensions = [0] : (tensor<{n}xf32>, tensor<f32>) -> tensor<f32>
    return %1 : tensor<f32>
  }}
}}
"""


def row(category: str, op: str, n: int, call: str, name: str = "f") -> dict:
    source = f"import jax.numpy as jnp\n\ndef {name}(x):\n    return jnp.sum(jnp.{call}(x))\n\ndef example_args():\n    return (jnp.zeros({n}),)\n"
    return {"category": category, "python_source": source, "stablehlo_ir": IR.format(op=op, n=n)}


def test_sequences_ignore_sizes_and_names_but_not_ops():
    a, b = row("x", "exponential", 4, "exp"), row("x", "exponential", 4096, "exp", name="g")
    assert leakage.ir_op_sequence(a["stablehlo_ir"]) == (
        "stablehlo.exponential",
        "stablehlo.constant",
        "stablehlo.reduce",
    )
    assert leakage.ir_op_sequence(a["stablehlo_ir"]) == leakage.ir_op_sequence(b["stablehlo_ir"])
    assert leakage.call_sequence(a["python_source"]) == ("jnp.sum", "jnp.exp")  # not example_args()' jnp.zeros
    assert leakage.call_sequence(a["python_source"]) == leakage.call_sequence(b["python_source"])
    assert leakage.ir_op_sequence(row("x", "tanh", 4, "tanh")["stablehlo_ir"]) != leakage.ir_op_sequence(
        a["stablehlo_ir"]
    )


def test_measure_counts_a_row_that_leaks_by_either_sequence():
    train = [row("a", "exponential", 8, "exp"), row("b", "tanh", 8, "tanh")]
    held = [
        row("a", "exponential", 16, "exp"),  # both sequences in train
        row("a", "log", 16, "tanh"),  # calls only (category a: its call sequence is b's)
        row("b", "sine", 8, "sin"),  # neither
        row("b", "cosine", 8, "cos"),  # neither
    ]
    report = leakage.measure({"train": train, "validation": held[:2], "test": held[2:]})
    assert report["train_rows"] == 2 and report["held_out_rows"] == 4
    assert (report["ir"], report["calls"], report["either"]) == (0.25, 0.5, 0.5)
    assert report["by_category"]["a"] == {"held_out_rows": 2, "ir": 0.5, "calls": 1.0, "either": 1.0}
    assert report["by_category"]["b"]["either"] == 0.0
    assert leakage.measure({"train": train})["ir"] is None


def test_leakage_command_reads_a_staged_folder(tmp_path, capsys):
    folder = tmp_path / "staged" / "tiny"
    folder.mkdir(parents=True)
    for split, rows in {
        "train": [row("a", "exponential", 8, "exp")],
        "test": [row("a", "exponential", 9, "exp")],
    }.items():
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}-00000-of-00001.parquet")
    out = tmp_path / "leak.json"
    assert main(["leakage", str(tmp_path / "staged"), "--report-json", str(out)]) == 0
    assert "100.0%" in capsys.readouterr().out
    assert json.loads(out.read_text())["tiny"]["either"] == 1.0
    assert main(["leakage", str(tmp_path / "staged"), "--configs", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no config 'nope'" in err and "configs there: tiny" in err


def test_leakage_command_names_a_missing_folder(tmp_path, capsys):
    assert main(["leakage", str(tmp_path / "nowhere")]) == 2
    assert "no staged folder" in capsys.readouterr().err


def test_readers_skip_hidden_folders(tmp_path):
    """An interrupted Ray build keeps its in-progress shards under <config>/.shards/: never read as data."""
    from generator.tools.io import read_configs

    config = tmp_path / "tiny"
    (config / ".shards" / "abc").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row("a", "exponential", 8, "exp")]), config / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([row("a", "tanh", 8, "tanh")]), config / ".shards" / "abc" / "train-0.parquet")
    rows = read_configs(tmp_path)
    assert {name: {s: len(r) for s, r in splits.items()} for name, splits in rows.items()} == {"tiny": {"train": 1}}
