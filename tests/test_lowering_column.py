"""The ``lowering`` column names a row's static arguments, and everything that lowers a row again
(``reproduce_ir``, the validator, ``evaluate``'s reverse answers) and the views' instructions use
what it says, not a rule about which arguments look static."""

from __future__ import annotations

import hashlib
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.core.lowering import JAX_VERSION, extract_ir, lower_source, lowering_method, parse_lowering
from generator.core.plan import PLATFORMS, Lowering

# ``n`` is an int: extract_ir's rule makes it static; a row may as well say it was traced.
SCALE = (
    "import jax\nimport jax.numpy as jnp\n\n\ndef scale(x, n):\n    return jnp.tanh(x) * n\n\n\n"
    "def example_args():\n    return (jax.ShapeDtypeStruct((4,), jnp.float32), 3)\n"
)


def test_the_column_round_trips_every_combination():
    for platform, devices, static in itertools.product(PLATFORMS, (1, 8), ((), (2,), (0, 2), (0, 1, 5))):
        text = lowering_method(devices, platform, static)
        assert parse_lowering(text) == Lowering(platform, devices, static)
    assert lowering_method(1, "cpu", (2,)) == "jit:static_argnums=2"
    assert lowering_method(8, "tpu", (0, 2)) == "jit:platform=tpu,static_argnums=(0,2),host_devices=8"
    assert lowering_method(1) == "jit" and parse_lowering("jit") == Lowering("cpu", 1, ())


@pytest.mark.parametrize(
    "bad",
    [
        "jit:static_argnums=(2,)",  # one index is written 2
        "jit:static_argnums=(2,0)",  # increasing
        "jit:static_argnums=(0,0)",
        "jit:static_argnums=()",
        "jit:static_argnums=02",
        "jit:static_argnums=-1",
        "jit:static_argnums=x",
        "jit:host_devices=8,static_argnums=2",  # platform, static_argnums, host_devices: in this order
        "jit:static_argnums=2,platform=tpu",
        "jit:static_argnums=2,static_argnums=3",
        "jit:static_argnums=2,",
        "jit:",
        "jit:platform=cpu",
        "jit:host_devices=1",
        "pmap",
    ],
)
def test_other_texts_are_refused_with_the_valid_forms(bad):
    with pytest.raises(ValueError, match=r"unknown lowering .*; valid: 'jit', or 'jit:' followed by"):
        parse_lowering(bad)


def test_the_writer_refuses_indices_it_could_not_read_back():
    for bad in ((2, 0), (1, 1), (-1,), (True,)):
        with pytest.raises(ValueError, match="static_argnums must be distinct non-negative indices"):
            lowering_method(1, "cpu", bad)


def test_extract_ir_records_its_static_arguments_and_takes_them_given():
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((4,), jnp.float32)
    ruled = extract_ir(lambda x, n: x * n, x, 3)
    assert ruled.static_argnums == (1,)
    traced = extract_ir(lambda x, n: x * n, x, 3, static_argnums=())
    assert traced.static_argnums == () and traced.stablehlo_ir != ruled.stablehlo_ir
    assert "%arg1: tensor<i32>" in traced.stablehlo_ir and "%arg1" not in ruled.stablehlo_ir
    with pytest.raises(ValueError, match=r"static_argnums \(2,\) must be distinct indices of the 2 arguments"):
        extract_ir(lambda x, n: x * n, x, 3, static_argnums=(2,))


def _row(static: tuple[int, ...]) -> dict:
    pair = lower_source(SCALE, "scale", static_argnums=static)
    return {
        "id": hashlib.sha256(f"{SCALE}{static}".encode()).hexdigest()[:16],
        "category": "elementwise",
        "function_name": "scale",
        "python_source": SCALE,
        "stablehlo_ir": pair.stablehlo_ir,
        "input_signature": [{"shape": list(s), "dtype": d} for s, d in pair.input_signature],
        "output_signature": [{"shape": list(s), "dtype": d} for s, d in pair.output_signature],
        "jax_version": JAX_VERSION,
        "jaxlib_version": JAX_VERSION,
        "flops": None,
        "transcendentals": None,
        "bytes_accessed": None,
        "optimized_hlo": None,
        "lowering": lowering_method(1, "cpu", pair.static_argnums),
    }


@pytest.fixture(scope="module")
def rows():
    """One program as two rows: ``n`` static (the rule's choice), and ``n`` traced."""
    static, traced = _row((1,)), _row(())
    assert (static["lowering"], traced["lowering"]) == ("jit:static_argnums=1", "jit")
    assert static["stablehlo_ir"] != traced["stablehlo_ir"]
    return static, traced


def test_reproduce_ir_lowers_as_the_column_says(rows):
    from generator import reproduce_ir

    for row in rows:
        assert reproduce_ir(row) == row["stablehlo_ir"]
    static, traced = rows
    assert reproduce_ir({**traced, "lowering": "jit:static_argnums=1"}) == static["stablehlo_ir"]


def test_the_validator_reproduces_by_the_column(rows):
    from generator.tools.validate.runner import run_job

    def job(row, **changes):
        return {**row, **changes, "checks": ["reproduce", "execute"]}

    for row in rows:
        assert {c: o.status.value for c, o in run_job(job(row)).items()} == {"reproduce": "pass", "execute": "pass"}
    static, traced = rows
    wrong = run_job(job(traced, lowering="jit:static_argnums=1"))["reproduce"]
    assert wrong.status.value == "fail" and "re-lowered IR differs" in wrong.detail
    bad = run_job(job(static, lowering="jit:static_argnums=5"))
    assert (
        bad["reproduce"].status.value == "fail"
        and "must be distinct indices of the 2 arguments" in bad["reproduce"].detail
    )


def test_views_say_which_arguments_are_static(rows):
    from generator.core.views import VIEWS, instruction, lowering_text

    static, traced = rows
    assert lowering_text(static) == ", with static_argnums=1" and lowering_text(traced) == ""
    assert lowering_text({"lowering": "jit:platform=tpu,static_argnums=(0,2),host_devices=8"}) == (
        ", for TPU, with static_argnums=(0,2), with 8 host CPU devices"
    )
    head = instruction(VIEWS["forward"], 1, static)
    assert "under `jax.jit`, with static_argnums=1?" in head
    assert "static" not in instruction(VIEWS["forward"], 1, traced)


def test_evaluate_lowers_reverse_answers_with_the_rows_static_arguments(rows, tmp_path):
    from generator.tools.evaluate import evaluate

    folder = tmp_path / "staged" / "tiny"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), folder / "test-00000-of-00001.parquet")
    answers = [{"id": r["id"], "prediction": SCALE} for r in rows]
    report = evaluate("reverse", answers, tmp_path / "staged", "tiny", "test", execute_predictions=True, progress=False)
    assert report["layers"]["exact"]["rate"] == 1.0  # the same source, lowered as each row says


def test_the_device_server_lowers_with_and_reports_the_static_arguments():
    import jax

    from generator.runtime.device_server import lower_on_host_devices

    if jax.device_count() > 1:
        pytest.skip("this process has host devices: the server is not used")
    served = lower_on_host_devices(SCALE, "scale")
    assert served.static_argnums == (1,) and served.stablehlo_ir == lower_source(SCALE, "scale").stablehlo_ir
    traced = lower_on_host_devices(SCALE, "scale", static_argnums=())
    assert (
        traced.static_argnums == ()
        and traced.stablehlo_ir == lower_source(SCALE, "scale", static_argnums=()).stablehlo_ir
    )
