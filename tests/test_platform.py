"""Rows lowered for another platform (cuda, rocm, tpu) without its hardware: built, reproduced, validated."""

from __future__ import annotations

import pytest

from generator.core.lowering import extract_ir, lowering_method, parse_lowering
from generator.core.plan import plan_shards
from generator.runtime.shards import generate_shard, reproduce_ir
from generator.tools.validate import validate_rows

CATEGORIES = ("linalg", "composite", "multi_device", "moe")


@pytest.fixture(scope="module")
def tpu_rows():
    plan = plan_shards(train_size=4, validation_size=0, seed=2, categories=CATEGORIES, platform="tpu")
    return [r for t in plan["train"] for r in generate_shard(t)]


def test_a_platform_build_lowers_for_it(tpu_rows):
    cpu = {
        r["category"]: r
        for t in plan_shards(train_size=4, validation_size=0, seed=2, categories=CATEGORIES)["train"]
        for r in generate_shard(t)
    }
    for r in tpu_rows:  # the platform, the devices a mesh needs, and a model row's static arguments
        how = parse_lowering(r["lowering"])
        assert (how.platform, how.host_devices) == ("tpu", 8 if r["mesh"] else 1)
        assert r["category"] == "moe" or how.static_argnums == ()
    assert [r["lowering"] for r in tpu_rows if r["category"] != "moe"] == [
        "jit:platform=tpu,host_devices=8" if r["mesh"] else "jit:platform=tpu"
        for r in tpu_rows
        if r["category"] != "moe"
    ]
    assert [r["category"] for r in tpu_rows if r["mesh"]][:1] == ["multi_device"]
    for r in tpu_rows:
        assert reproduce_ir(r) == r["stablehlo_ir"]
        assert r["flops"] is not None  # XLA's cost model costs any platform's module
    linalg = next(r for r in tpu_rows if r["category"] == "linalg")
    assert "lapack" not in linalg["stablehlo_ir"]  # TPU's own kernels, not the CPU's LAPACK
    # the same seed draws the same programs for the cpu: only the lowering differs
    assert cpu["linalg"]["python_source"] == linalg["python_source"]
    assert cpu["linalg"]["stablehlo_ir"] != linalg["stablehlo_ir"] and cpu["linalg"]["lowering"] == "jit"


def test_validate_reproduces_platform_rows_and_runs_none(tpu_rows):
    report = validate_rows({"train": tpu_rows}, trust_code=True, sample=None)
    assert report.ok, report.format()
    assert report.checks["reproduce"].passed == len(tpu_rows)
    assert report.checks["execute"].ran == 0 and report.checks["execute"].skipped == len(tpu_rows)
    assert "lowered for tpu: runs only on tpu" in str(report.to_json())


def test_lowering_column_round_trips_and_bad_values_are_named():
    for platform in ("cpu", "cuda", "rocm", "tpu"):
        for devices in (1, 8):
            assert parse_lowering(lowering_method(devices, platform)) == (platform, devices, ())
    for bad in ("jit:platform=cpu", "jit:host_devices=8,platform=tpu", "jit:platform=xpu", "pmap"):
        with pytest.raises(ValueError, match="unknown lowering"):
            parse_lowering(bad)
    with pytest.raises(ValueError, match="unknown platform 'xpu'; valid platforms: cpu, cuda, rocm, tpu"):
        plan_shards(train_size=1, validation_size=0, seed=0, platform="xpu")
    with pytest.raises(ValueError, match="with_optimized_hlo needs the platform's compiler"):
        plan_shards(train_size=1, validation_size=0, seed=0, platform="tpu", with_optimized_hlo=True)


def test_extract_ir_lowers_for_a_platform():
    import jax
    import jax.numpy as jnp

    spec = jax.ShapeDtypeStruct((8, 8), jnp.float32)
    cpu, cuda = (extract_ir(jnp.linalg.inv, spec, platform=p) for p in ("cpu", "cuda"))
    assert "lapack" in cpu.stablehlo_ir and "cusolver" in cuda.stablehlo_ir
    assert cpu.stablehlo_ir == extract_ir(jnp.linalg.inv, spec).stablehlo_ir
    with pytest.raises(ValueError, match="optimize needs the platform's compiler"):
        extract_ir(jnp.linalg.inv, spec, platform="cuda", optimize=True)


def test_views_and_evaluate_follow_the_platform(tpu_rows, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from generator.core.schema import FEATURES
    from generator.core.views import view_row
    from generator.tools.evaluate import evaluate

    prompts = [view_row(r, "forward", template=0)["prompt"] for r in tpu_rows]
    assert all(", for TPU" in p.split("\n\n", 1)[0] for p in prompts)
    assert "with 8 host CPU devices" in prompts[2].split("\n\n", 1)[0]
    folder = tmp_path / "staged" / "tpu"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist([FEATURES.encode_example(r) for r in tpu_rows], schema=FEATURES.arrow_schema)
    pq.write_table(table, folder / "test-00000-of-00001.parquet")
    answers = [{"id": r["id"], "prediction": r["python_source"]} for r in tpu_rows]
    report = evaluate("reverse", answers, tmp_path / "staged", "tpu", "test", execute_predictions=True, progress=False)
    assert report["layers"]["exact"]["rate"] == 1.0  # answers lowered for the row's platform, as it was
    assert report["agrees_cap"]["by_reason"] == {"lowered for tpu (its IR runs only there)": len(tpu_rows)}
