"""``random`` programs take and use typed PRNG keys (``jax.random.key``, key arrays, keys from
seeds), and their rows reproduce, execute and pass IREE like any other; IREE runs the IR once
JAX's single-device sharding constraints on keys are taken out."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.core.plan import plan_shards
from generator.core.sampler import sample_program
from generator.errors import Reject
from generator.runtime.shards import generate_shard, reproduce_ir
from generator.tools.validate import validate_rows
from generator.tools.validate.iree import EMPTY_MESH_NOTE, without_empty_mesh


@pytest.fixture(scope="module")
def rows():
    (task,) = plan_shards(
        train_size=24, validation_size=0, seed=3, categories=("random",), min_shards_per_split=1, rows_per_shard=24
    )["train"]
    return list(generate_shard(task))


def _programs(n: int, seed: int = 0):
    rng, out = random.Random(seed), []
    while len(out) < n:
        try:
            out.append(sample_program(rng, "random"))
        except Reject:
            continue
    return out


def test_programs_pass_typed_keys_never_raw_ones():
    programs = _programs(300)
    inputs = [v.type for p in programs for v in p.inputs]
    assert not [t for t in inputs if t.dtype == "uint32" and t.shape == (2,)]
    keys = [t for t in inputs if t.is_key]
    assert {t.dtype for t in keys} == {"key<fry>"}  # arguments: JAX's default keys
    assert {t.rank for t in keys} == {0, 1}  # keys and key arrays (jax.random.split(key, n))
    ops = {s.op.name for p in programs for s in p.statements}
    for op in (
        "split",
        "split_keys",
        "fold_in",
        "fold_in_step",
        "key_at",
        "vmap_normal",
        "vmap_dropout",
        "key",
        "key_rbg",
    ):
        assert op in ops, op
    # a key flows into key ops only: no array op (glue, merges) ever reads one
    for p in programs:
        for s in p.statements:
            if any(getattr(o, "type", None) is not None and o.type.is_key for o in s.operands):
                assert "random" in s.op.categories or s.op.name == "merge_noise", s.op.name
                if s.op.name == "merge_noise":  # a left-over key becomes noise added to a float
                    assert "jax.random.normal({1}, {0}.shape, {0}.dtype)" in s.op.template
                    assert s.operands[1].type.rank == 0  # one key, never a key array


def test_sources_build_typed_keys_and_name_them(rows):
    for r in rows:
        src = r["python_source"]
        assert "jnp.uint32)" not in src.split("def example_args")[1]
        dtypes = [s["dtype"] for s in r["input_signature"]]
        assert "uint32" not in dtypes or "jax.random.bits" in src
        if "key<fry>" in dtypes:
            assert 'jax.random.key_dtype("threefry2x32")' in src
    sigs = [s["dtype"] for r in rows for s in r["input_signature"]]
    assert sigs.count("key<fry>") >= len(rows) // 2


def test_rows_with_typed_keys_reproduce(rows):
    for r in rows:
        assert reproduce_ir(r) == r["stablehlo_ir"]
    # a key argument lowers to its key data, through JAX's single-device sharding constraint
    keyed = [r for r in rows if any(s["dtype"] == "key<fry>" and s["shape"] == [] for s in r["input_signature"])]
    assert keyed and all(
        "tensor<2xui32>" in r["stablehlo_ir"] and "sdy.mesh @empty_mesh" in r["stablehlo_ir"] for r in keyed
    )


@pytest.mark.slow  # IREE on typed keys runs by default in the two tests below, on a function and a model row
def test_rows_with_typed_keys_execute_and_pass_iree(rows):
    pytest.importorskip("iree.compiler")
    sample = rows[:10]  # IREE compiles each row: a few seconds apiece
    report = validate_rows({"train": sample}, trust_code=True, sample=None, iree=True)
    assert report.ok, report.format()
    assert report.checks["execute"].passed == len(sample)
    iree = [rr.checks["iree"] for rr in report.row_results]
    passed = [o for o in iree if o.status == "pass"]
    assert len(passed) >= len(sample) * 2 // 3, report.format()
    assert sum(o.note == EMPTY_MESH_NOTE for o in passed) >= len(passed) // 2


def test_iree_runs_key_arguments_results_and_key_arrays_as_their_data():
    pytest.importorskip("iree.compiler")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from generator.tools.validate.iree import check_iree
    from generator.tools.validate.numerics import XlaRun, example_inputs, host_array

    def f(key, keys, x):
        key, sub = jax.random.split(key)
        noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys)
        return x + noise + jax.random.uniform(sub, x.shape), key

    specs = (
        jax.ShapeDtypeStruct((), jax.random.key_dtype("threefry2x32")),
        jax.ShapeDtypeStruct((4,), jax.random.key_dtype("threefry2x32")),
        jax.ShapeDtypeStruct((4, 3), jnp.float32),
    )
    ir = jax.jit(f).lower(*specs).as_text()
    assert ir.count("sdy.sharding_constraint") == 3  # two key arguments, one key result
    plain = without_empty_mesh(ir)
    assert plain is not None and "sdy" not in plain and "@main(%arg0: tensor<2xui32>, %arg1: tensor<4x2xui32>" in plain
    inputs = example_inputs("f", specs)
    outputs = [host_array(y) for y in jax.tree_util.tree_leaves(jax.jit(f)(*inputs))]
    assert outputs[1].dtype == np.uint32 and outputs[1].shape == (2,)  # the key, as its data
    outcome = check_iree(ir, XlaRun(fn=f, inputs=inputs, outputs=outputs))
    assert outcome.status == "pass" and outcome.note == EMPTY_MESH_NOTE, outcome
    wrong = [outputs[0], outputs[1] + np.uint32(1)]  # IREE's key data must be XLA's
    assert check_iree(ir, XlaRun(fn=f, inputs=inputs, outputs=wrong)).status == "fail"


MODEL_WITH_KEY = """import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DropoutConfig:
    d_model: int = 256
    rate: float = 0.1


def dropout_layer(x, key, config: DropoutConfig):
    keep = jax.random.bernoulli(key, 1.0 - config.rate, x.shape)
    return jnp.where(keep, x / (1.0 - config.rate), 0.0) @ jnp.ones((config.d_model, 4), x.dtype)


def example_args():
    config = DropoutConfig()
    return (
        jax.ShapeDtypeStruct((8, config.d_model), jnp.float32),
        jax.ShapeDtypeStruct((), jax.random.key_dtype("threefry2x32")),
        config,
    )
"""


def test_a_model_row_with_a_key_passes_iree_at_reduced_size():
    """Model rows take typed keys too: IREE's frontend check of the real-sized IR and the
    reduced-size run both see the IR without JAX's empty-mesh constraints."""
    pytest.importorskip("iree.compiler")
    from generator.core.lowering import JAX_VERSION, lower_source, lowering_method
    from generator.tools.validate.runner import run_job

    pair = lower_source(MODEL_WITH_KEY, "dropout_layer")
    assert pair.static_argnums == (2,) and "sdy.mesh @empty_mesh" in pair.stablehlo_ir
    job = {
        "category": "train_step",
        "python_source": MODEL_WITH_KEY,
        "function_name": "dropout_layer",
        "stablehlo_ir": pair.stablehlo_ir,
        "jax_version": JAX_VERSION,
        "input_signature": [{"shape": list(s), "dtype": d} for s, d in pair.input_signature],
        "lowering": lowering_method(1, static_argnums=pair.static_argnums),
        "checks": ["reproduce", "execute", "iree"],
    }
    out = run_job(job)
    assert {c: (o.status.value, o.note) for c, o in out.items()} == {
        "reproduce": ("pass", None),
        "execute": ("pass", "reduced size"),
        "iree": ("pass", "reduced size"),
    }, out


def test_only_empty_mesh_constraints_are_taken_out():
    mesh = (
        'module @jit_f {\n  sdy.mesh @mesh = <["x"=2]>\n'
        "  func.func public @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {\n"
        '    %0 = sdy.sharding_constraint %arg0 <@mesh, [{"x"}]> : tensor<4xf32>\n'
        "    return %0 : tensor<4xf32>\n  }\n}\n"
    )
    assert without_empty_mesh(mesh) is None  # a real mesh: the IR stays as it is (and IREE skips it)
    both = mesh.replace(
        '  sdy.mesh @mesh = <["x"=2]>\n', '  sdy.mesh @mesh = <["x"=2]>\n  sdy.mesh @empty_mesh = <[]>\n'
    ).replace("    return %0", "    %1 = sdy.sharding_constraint %0 <@empty_mesh, [{}]> : tensor<4xf32>\n    return %1")
    assert without_empty_mesh(both) is None
    assert without_empty_mesh("module {\n}\n") is None


def test_evaluate_runs_rows_with_key_arguments(rows, tmp_path):
    from generator.core.schema import FEATURES
    from generator.tools.evaluate import evaluate

    keyed = [r for r in rows if any(s["dtype"] == "key<fry>" for s in r["input_signature"])][:1]
    folder = tmp_path / "staged" / "random"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist([FEATURES.encode_example(r) for r in keyed], schema=FEATURES.arrow_schema)
    pq.write_table(table, folder / "test-00000-of-00001.parquet")
    answers = [{"id": r["id"], "prediction": r["python_source"]} for r in keyed]
    report = evaluate(
        "reverse", answers, tmp_path / "staged", "random", "test", execute_predictions=True, progress=False
    )
    assert report["layers"]["exact"]["rate"] == 1.0
    assert report["layers"]["agrees"]["rate"] == 1.0 and report["layers"]["agrees"]["denominator"] == len(keyed)
    forward = [{"id": r["id"], "prediction": r["stablehlo_ir"].replace("%0", "%zero")} for r in keyed]
    report = evaluate("forward", forward, tmp_path / "staged", "random", "test", progress=False)
    assert report["layers"]["agrees"]["rate"] == 1.0, report
