"""validate: structure, reproduction, XLA and IREE execution, the trust gate, time limits."""

from __future__ import annotations

import importlib.util
import json

import pytest

from generator.core.lowering import lower_source
from generator.tools import cli
from generator.tools.io import read_configs
from generator.tools.validate import CheckOutcome, Report, RowResult, Status, validate_dataset, validate_rows
from tests import rowkit

# find_spec of a submodule imports its parent, which raises when IREE is not installed at all.
HAS_IREE = importlib.util.find_spec("iree") is not None and all(
    importlib.util.find_spec(m) is not None for m in ("iree.compiler", "iree.runtime")
)

AFFINE = """import jax
import jax.numpy as jnp


def affine(x):
    return x * 2.0 + 1.0


def example_args():
    return (jax.ShapeDtypeStruct((4,), jnp.float32),)
"""

SPIN = """import jax
import jax.numpy as jnp


def spin(x):
    while True:
        pass


def example_args():
    return (jax.ShapeDtypeStruct((2,), jnp.float32),)
"""

CRASH = """import os

import jax
import jax.numpy as jnp


def crash(x):
    os.kill(os.getpid(), 9)


def example_args():
    return (jax.ShapeDtypeStruct((3,), jnp.float32),)
"""


@pytest.fixture(scope="module")
def rows():
    return rowkit.make_rows(train=3, validation=1, seed=12)


def _foreign(template: dict, source: str, name: str, ir: str) -> dict:
    return rowkit.rederive(template, python_source=source, function_name=name, stablehlo_ir=ir)


def test_structure_only_passes_on_a_real_build(rows, tmp_path):
    rowkit.write_jsonl(rows, tmp_path / "d")
    report = validate_rows(read_configs(tmp_path / "d")[""], structure_only=True)
    assert report.ok, report.format()
    assert report.rows == 4 and report.split_rows == {"train": 3, "validation": 1}


def test_untrusted_folder_is_refused_and_nothing_runs(rows, tmp_path, capsys, monkeypatch):
    import generator.tools.validate.runner

    monkeypatch.setattr(
        generator.tools.validate.runner.RowRunner, "_start", lambda self: pytest.fail("code ran without --trust-code")
    )
    rowkit.write_jsonl(rows, tmp_path / "d")
    assert cli.main(["validate", str(tmp_path / "d")]) == 3
    out = capsys.readouterr().out
    assert "REFUSED" in out and "--trust-code" in out and "not a sandbox" in out
    assert cli.main(["validate", str(tmp_path / "d"), "--structure-only"]) == 0


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (lambda rs: rs["train"].append(dict(rs["train"][0])), "repeated ids"),
        (
            lambda rs: rs["validation"].append(
                rowkit.rederive(rs["train"][0], python_source=rs["train"][0]["python_source"] + "\n")
            ),
            "more than one split",
        ),
        (lambda rs: rs["train"].__setitem__(0, {**rs["train"][0], "id": "0" * 16}), "id is not sha256"),
        (lambda rs: rs["train"].__setitem__(0, {**rs["train"][0], "flops": "many"}), "flops is not a number"),
        (
            lambda rs: rs["train"].__setitem__(0, {**rs["train"][0], "stablehlo_ops": []}),
            "stablehlo_ops/num_stablehlo_ops",
        ),
        (
            lambda rs: rs["train"].__setitem__(
                0, {**rs["train"][0], "input_signature": [{"shape": [-2], "dtype": "f"}]}
            ),
            "input_signature is not",
        ),
        (lambda rs: [rs.__setitem__(s, []) for s in list(rs)], "no rows"),
        # a train program moved to validation (its structure is train's); a train row with a validation structure
        (lambda rs: rs["validation"].append(rs["train"].pop()), "a split their structure key does not belong to"),
        (
            lambda rs: rs["train"].__setitem__(0, {**rs["train"][0], "structure": rs["validation"][0]["structure"]}),
            "structure keys appear in more than one split",
        ),
    ],
)
def test_structure_failures(rows, break_it, expected):
    broken = {s: [dict(r) for r in rs] for s, rs in rows.items()}
    break_it(broken)
    report = validate_rows(broken, structure_only=True)
    assert not report.ok
    assert expected in report.format()


def test_missing_and_extra_columns_fail(rows):
    broken = {"train": [{k: v for k, v in r.items() if k != "stablehlo_ir"} | {"extra": 1} for r in rows["train"]]}
    report = validate_rows(broken, structure_only=True)
    assert not report.ok and report.missing_columns == ["stablehlo_ir"] and report.extra_columns == ["extra"]


@pytest.mark.skipif(not HAS_IREE, reason="IREE not installed (pip install .[iree])")
def test_trusted_run_catches_wrong_ir_hangs_and_crashes(rows, tmp_path):
    template = rows["train"][0]
    ir = lower_source(AFFINE, "affine").stablehlo_ir
    tampered = _foreign(template, AFFINE.replace("x * 2.0", "x * 3.0"), "affine", ir)  # IR no longer means the source
    tampered.update(
        input_signature=[{"shape": [4], "dtype": "float32"}], output_signature=[{"shape": [4], "dtype": "float32"}]
    )
    old_jax = {**rows["train"][1], "jax_version": "0.4.30"}
    spin = _foreign(template, SPIN, "spin", "module @jit_spin {\n}\n")
    crash = _foreign(template, CRASH, "crash", "module @jit_crash {\n  // never lowered\n}\n")
    data = {"train": [rows["train"][2], spin, tampered, crash, old_jax], "validation": rows["validation"]}

    report = validate_rows(data, trust_code=True, sample=None, iree=True, time_limit=8)

    failures = "\n".join(report.failures)
    assert not report.ok
    assert f"{spin['id']}: reproduce: cut off after the 8 s time limit" in failures
    assert f"{crash['id']}: reproduce: the runner died" in failures
    assert f"{tampered['id']}: reproduce: re-lowered IR differs" in failures
    assert f"{tampered['id']}: iree: output 0: IREE vs JAX" in failures  # IREE runs the IR, JAX the source
    # the three generated rows pass every check, including those after the hang and the crash;
    # the tampered row's source runs fine with XLA (execute), only its IR is wrong
    assert report.checks["reproduce"].passed == 3 and report.checks["reproduce"].notes["op histogram"] == 1
    assert report.checks["execute"].passed == 4 and report.checks["iree"].passed == 3
    assert "lowered by another jax (0.4.30" in report.format()


def _noisy(row: dict) -> dict:
    """``row`` whose source writes to file descriptor 1 directly (as C code would) and prints, at
    import and while its function is traced; its IR, and so every check's verdict, stays the same."""
    name = row["function_name"]
    head, _, tail = row["python_source"].partition(f"def {name}(")
    signature, _, body = tail.partition(":\n")
    source = (
        f"{head}def {name}({signature}:\n"
        '    os.write(1, b"fd 1 while tracing\\n")\n'
        '    print("print while tracing")\n'
        f"{body}\n"
        "import os\n\n"
        'os.write(1, b"fd 1 at import\\n")\n'
        'print("print at import")\n'
    )
    return rowkit.rederive(row, python_source=source)


def test_row_output_on_stdout_does_not_reach_the_protocol(rows):
    """The child points its file descriptor 1 at stderr before running rows: a row's writes to it
    and its prints end up in the runner's stderr, and the answers on the pipe still parse."""
    from generator.tools.validate.runner import RowRunner

    clean = rows["train"][0]
    noisy = _noisy(clean)
    assert noisy["id"] != clean["id"] and noisy["stablehlo_ir"] == clean["stablehlo_ir"]
    passed = {"reproduce": CheckOutcome.passed(), "execute": CheckOutcome.passed()}
    with RowRunner(time_limit=60) as runner:
        assert runner.run(noisy, ["reproduce", "execute"]) == passed
        # the same child answers the next row with that row's own outcome: nothing was left on the pipe
        assert runner.run(clean, ["reproduce", "execute"]) == passed
        runner._stderr.seek(0)
        stderr = runner._stderr.read()
    for noise in ("fd 1 at import", "print at import", "fd 1 while tracing", "print while tracing"):
        assert noise in stderr


def test_report_json_writes_row_results_as_plain_data():
    checks = {"reproduce": CheckOutcome.passed(note="op histogram"), "execute": CheckOutcome.failed("why")}
    report = Report(row_results=[RowResult(id="0123", category="unary", split="train", checks=checks)])
    assert json.dumps(report.to_json()["row_results"]) == (
        '[{"id": "0123", "category": "unary", "split": "train", "checks": '
        '{"reproduce": {"status": "pass", "note": "op histogram"}, "execute": {"status": "fail", "detail": "why"}}}]'
    )


def test_trusted_cli_run_on_staged_hub_folder(rows, tmp_path, capsys):
    staged = tmp_path / "staged"
    for config, seed_rows in (("balanced", rows), ("matrix", rows)):
        for split, rs in seed_rows.items():
            rowkit.write_parquet(rs, staged / config / f"{split}-00000-of-00001.parquet")
    (staged / "README.md").write_text("---\nconfigs: []\n---\n")
    args = ["validate", str(staged), "--trust-code", "--sample", "1"] + (["--iree"] if HAS_IREE else [])
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "config 'balanced': 4 rows (train 3, validation 1)" in out and "config 'matrix'" in out
    assert "reproduce  4/4 pass" in out and "execute    1/1 pass" in out


def test_validate_dataset_object(rows):
    import datasets

    from generator.core.schema import FEATURES

    ds = datasets.DatasetDict({s: datasets.Dataset.from_list(rs, features=FEATURES) for s, rs in rows.items()})
    assert validate_dataset(ds, structure_only=True).ok
    assert validate_dataset(ds).refused  # a datasets object is foreign too, unless the caller trusts it
    rows_back = json.loads(json.dumps(ds["train"].to_list()))
    assert rows_back == rows["train"]


def test_example_inputs_are_deterministic_and_in_range():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from generator.tools.validate.numerics import example_inputs

    specs = [jax.ShapeDtypeStruct((64,), d) for d in (jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_)]
    a, b = example_inputs("src", specs), example_inputs("src", specs)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(example_inputs("other", specs)[0], a[0])
    assert [str(x.dtype) for x in a] == ["float32", "bfloat16", "int32", "uint8", "bool"]
    assert (
        np.all(np.abs(a[0]) <= 1) and np.all(np.abs(a[2]) <= 4) and np.all(a[3] <= 4) and a[4].any() and not a[4].all()
    )


def test_compare_is_dtype_aware():
    import numpy as np

    from generator.tools.validate.numerics import compare

    want = np.array([1.0, -2.0, 0.5], np.float16)
    assert compare(want + np.float16(0.004), want, "float16") is None
    assert "outside tolerance" in compare(want + np.float16(0.1), want, "float16")
    assert compare(want.astype(np.float32) + 1e-3, want.astype(np.float32), "float32") is not None
    assert compare(np.array([1, 2]), np.array([1, 3]), "int32") == "1 of 2 elements differ (int32, compared exactly)"
    assert compare(np.array([np.nan]), np.array([np.nan]), "float32") is None
    z = np.array([1 + 1j, -0.5j], np.complex64)
    assert compare(z + np.complex64(1e-7j), z, "complex64") is None and compare(z + 0.1j, z, "complex64") is not None
    assert compare(np.zeros((2, 1)), np.zeros((2,)), "float32") == "shape [2, 1] != [2]"


def test_tolerance_follows_the_loosest_float_the_ir_computes_in():
    from generator.tools.validate.numerics import tolerance_dtype

    ir = "%0 = stablehlo.convert %arg0 : (tensor<5xbf16>) -> tensor<5xf32>\n%1 = stablehlo.tanh %2 : tensor<f16>"
    assert tolerance_dtype("float32", ir) == "bfloat16"
    assert tolerance_dtype("float32", "%0 = stablehlo.add %a, %b : tensor<2x3xf32>") == "float32"
    assert tolerance_dtype("int32", ir) == "int32"  # integers and bools are always exact


def test_iree_skips_xla_only_custom_calls_by_name():
    from generator.tools.validate.iree import iree_static_skip

    ir = "module @jit_f {\n  %0:3 = stablehlo.custom_call @lapack_sgetrf_ffi(%arg0) : (tensor<2x2xf32>) -> tensor<2x2xf32>\n}\n"
    assert iree_static_skip(ir) == CheckOutcome.skipped("XLA-only custom_call (LAPACK)", detail="lapack_sgetrf_ffi")
    other = ir.replace("@lapack_sgetrf_ffi", "@stablehlo.dynamic_reduce_window")
    assert iree_static_skip(other).note == "XLA-only custom_call (stablehlo.dynamic_reduce_window)"
    assert iree_static_skip("module @jit_f {\n}\n") is None


def test_check_outcome_round_trips_through_its_json_form():
    outcomes = [
        CheckOutcome.passed(),
        CheckOutcome.passed(note="op histogram"),
        CheckOutcome.failed("re-lowered IR differs"),
        CheckOutcome.skipped("XLA-only custom_call (LAPACK)", detail="lapack_sgetrf_ffi"),
        CheckOutcome.skipped(detail="needs a successful execute check"),
    ]
    for outcome in outcomes:
        assert CheckOutcome.from_dict(json.loads(json.dumps(outcome.to_dict()))) == outcome
    # the report's JSON form: unset fields are left out
    assert CheckOutcome.passed().to_dict() == {"status": "pass"}
    assert CheckOutcome.failed("why").to_dict() == {"status": "fail", "detail": "why"}
    assert CheckOutcome.failed("why").with_note("n") == CheckOutcome("fail", detail="why", note="n")
    # a plain status string becomes the enum member; the JSON form holds plain strings
    assert CheckOutcome("skip").status is Status.SKIP and CheckOutcome("skip") == CheckOutcome.skipped()
    assert type(CheckOutcome.passed().to_dict()["status"]) is str


def test_check_outcome_rejects_an_unknown_status():
    with pytest.raises(ValueError, match=r"'passed'.*'pass', 'fail', 'skip'"):
        CheckOutcome("passed")
    with pytest.raises(ValueError, match="'ok'"):
        CheckOutcome.from_dict({"status": "ok"})
    with pytest.raises(ValueError, match="not a check outcome"):
        CheckOutcome.from_dict({"status": "pass", "reason": "x"})


def test_float32_reduction_order_is_told_from_a_wrong_result():
    import numpy as np

    from generator.tools.validate.numerics import within_summation_error

    reference = np.array([1.6e7, -3.0, 2.0])
    reduces = "%0 = stablehlo.reduce(%arg0 init: %cst) applies stablehlo.add across dimensions = [0]"
    close = reference + np.array([2.9e4, 0.0, 0.0])  # 0.2% of the output's scale
    assert "float32 reductions" in within_summation_error(close, reference, reduces)
    assert within_summation_error(close, reference, "stablehlo.add") is None  # no reduction: no excuse
    assert within_summation_error(reference * 1.1, reference, reduces) is None  # 10% off is wrong
    assert within_summation_error(np.array([np.nan, -3.0, 2.0]), reference, reduces) is None


@pytest.mark.skipif(not HAS_IREE, reason="IREE not installed (pip install .[iree])")
def test_an_iree_module_that_answers_differently_each_run_is_a_skip_and_a_steady_wrong_one_fails(monkeypatch):
    """IREE 3.13's runtime sometimes races (loops carrying a buffer): a module is a pure function,
    so outputs that change between runs on the same inputs judge nothing; steady wrong ones fail."""
    import iree.runtime
    import jax
    import numpy as np

    from generator.tools.validate import iree as iree_check
    from generator.tools.validate.numerics import XlaRun

    fn = lambda x: x * 2.0  # noqa: E731
    x = np.arange(4, dtype=np.float32)
    ir = jax.jit(fn).lower(x).as_text()
    run = XlaRun(fn=fn, inputs=[x], outputs=[np.asarray(fn(x))])

    class Module:
        def __init__(self, answers):
            self.answers = iter(answers)

        def main(self, *args):
            return next(self.answers)

    wrong = np.zeros(4, np.float32)
    racing = Module([wrong, wrong + 1, wrong])
    monkeypatch.setattr(iree.runtime, "load_vm_flatbuffer", lambda *a, **k: racing)
    outcome = iree_check.check_iree(ir, run)
    assert outcome.status == Status.SKIP and "nondeterministic" in outcome.note
    steady = Module([wrong] * (1 + iree_check.RERUNS))
    monkeypatch.setattr(iree.runtime, "load_vm_flatbuffer", lambda *a, **k: steady)
    assert iree_check.check_iree(ir, run).status == Status.FAIL
