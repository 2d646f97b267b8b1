"""The iree check's static list of constructs IREE 3.13 cannot take, and the generator's
guards against programs whose results two correct compilers need not agree on."""

from __future__ import annotations

import json
import random
import re

import pytest

from generator.core.render import render_source, render_statement
from generator.core.sampler import sample_program
from generator.errors import Reject
from generator.tools import cli
from generator.tools.validate import IREE_UNPORTABLE, CheckOutcome
from generator.tools.validate.iree import check_iree, iree_unportable
from generator.tools.validate.numerics import XlaRun
from tests import rowkit


def _main(body: str, args: str = "%arg0: tensor<4xf32>") -> str:
    return f"module @jit_f {{\n  func.func public @main({args}) -> tensor<4xf32> {{\n{body}\n  }}\n}}\n"


WHILE_COUNTER_TO = """    %c = stablehlo.constant dense<0> : tensor<i32>
    %0:2 = stablehlo.while(%iterArg = %c, %iterArg_0 = %arg0) : tensor<i32>, tensor<4x{t}>
    cond {{
      %c_1 = stablehlo.constant dense<3> : tensor<i32>
      %1 = stablehlo.compare LT, %iterArg, %c_1, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %1 : tensor<i1>
    }} do {{
      %c_1 = stablehlo.constant dense<1> : tensor<i32>
      %1 = stablehlo.add %iterArg, %c_1 : tensor<i32>
      %2 = stablehlo.convert %1 : (tensor<i32>) -> tensor<{t}>
      stablehlo.return %1, %iterArg_0 : tensor<i32>, tensor<4x{t}>
    }}
    %3 = stablehlo.convert %arg1 : (tensor<i32>) -> tensor<f16>
    return %0#1 : tensor<4x{t}>"""

CASES = [
    # (expected key or None, IR)
    (
        "dynamic_reshape",
        _main("    %0 = stablehlo.dynamic_reshape %arg0, %s : (tensor<?x4xf32>, tensor<1xi32>) -> tensor<?xf32>"),
    ),
    (
        "dynamic_broadcast_in_dim",
        _main(
            "    %0 = stablehlo.dynamic_broadcast_in_dim %arg0, %s, dims = [0] : (tensor<?xf32>, tensor<2xi32>) -> tensor<?x1xf32>"
        ),
    ),
    # a static operand broadcast to a dynamic shape compiles
    (
        None,
        _main(
            "    %0 = stablehlo.dynamic_broadcast_in_dim %arg0, %s, dims = [0, 1] : (tensor<1x4xf32>, tensor<2xi32>) -> tensor<?x4xf32>"
        ),
    ),
    (
        "fft",
        _main("    %0 = stablehlo.fft %arg0, type = RFFT, length = [5] : (tensor<5xf32>) -> tensor<3xcomplex<f32>>"),
    ),
    (
        None,
        _main("    %0 = stablehlo.fft %arg0, type = RFFT, length = [16] : (tensor<16xf32>) -> tensor<9xcomplex<f32>>"),
    ),
    ("while_int_to_f16", _main(WHILE_COUNTER_TO.format(t="f16"), "%arg0: tensor<4xf16>, %arg1: tensor<i32>")),
    ("while_int_to_f16", _main(WHILE_COUNTER_TO.format(t="bf16"), "%arg0: tensor<4xbf16>, %arg1: tensor<i32>")),
    # the same conversion to f32 inside the loop, and to f16 outside it, compile
    (None, _main(WHILE_COUNTER_TO.format(t="f32"), "%arg0: tensor<4xf32>, %arg1: tensor<i32>")),
    (
        "top_k_of_top_k",
        _main(
            "    %values, %indices = chlo.top_k(%arg0, k = 5) : tensor<4x8xf32> -> (tensor<4x5xf32>, tensor<4x5xi32>)\n"
            "    %values_0, %indices_1 = chlo.top_k(%values, k = 2) : tensor<4x5xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)"
        ),
    ),
    (
        None,
        _main(
            "    %values, %indices = chlo.top_k(%arg0, k = 5) : tensor<4x8xf32> -> (tensor<4x5xf32>, tensor<4x5xi32>)\n"
            "    %0 = stablehlo.negate %values : tensor<4x5xf32>\n"
            "    %values_0, %indices_1 = chlo.top_k(%0, k = 2) : tensor<4x5xf32> -> (tensor<4x2xf32>, tensor<4x2xi32>)"
        ),
    ),
    (
        "gather_of_strided_slice",
        _main(
            "    %0 = stablehlo.slice %arg0 [0:8:2, 0:1] : (tensor<8x2xf32>) -> tensor<4x1xf32>\n"
            '    %1 = "stablehlo.gather"(%0, %arg1) <{slice_sizes = array<i64: 1, 1>}> : (tensor<4x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>'
        ),
    ),
    (
        None,  # a unit-stride slice before a gather compiles
        _main(
            "    %0 = stablehlo.slice %arg0 [0:8, 0:1] : (tensor<8x2xf32>) -> tensor<8x1xf32>\n"
            '    %1 = "stablehlo.gather"(%0, %arg1) <{slice_sizes = array<i64: 1, 1>}> : (tensor<8x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>'
        ),
    ),
    (
        "gather_of_strided_slice",
        _main(
            "    %0 = stablehlo.dynamic_slice %arg0, %arg2, %c, sizes = [3, 1] : (tensor<8x2xf32>, tensor<i32>, tensor<i32>) -> tensor<3x1xf32>\n"
            '    %1 = "stablehlo.gather"(%0, %arg1) <{slice_sizes = array<i64: 1, 1>}> : (tensor<3x1xf32>, tensor<4x1xi32>) -> tensor<4x1xf32>'
        ),
    ),
    (
        "select_and_scatter",
        _main(
            '    %0 = "stablehlo.select_and_scatter"(%arg0, %arg1, %cst) <{window_dimensions = array<i64: 2, 2>}> ({'
        ),
    ),
    ("f16_subnormal", _main("    %cst = stablehlo.constant dense<1.013280e-06> : tensor<f16>")),
    (None, _main("    %cst = stablehlo.constant dense<1.013280e-06> : tensor<f32>")),
    (None, _main("    %cst = stablehlo.constant dense<1.000000e-04> : tensor<f16>")),
    (None, _main("    %0 = stablehlo.add %arg0, %arg0 : tensor<4xf32>")),
]


@pytest.mark.parametrize("expected, ir", CASES)
def test_classifier_names_exactly_the_constructs_iree_cannot_take(expected, ir):
    assert iree_unportable(ir) == expected


def test_every_listed_construct_is_documented_and_reported_as_a_skip():
    assert {key for key, _ in CASES if key} == set(IREE_UNPORTABLE)
    ir = dict((k, ir) for k, ir in CASES if k)["fft"]
    pytest.importorskip("iree.compiler")
    no_run = XlaRun(fn=lambda x: x, inputs=[], outputs=[])  # the static rules skip before anything runs
    assert check_iree(ir, no_run) == CheckOutcome.skipped("not portable to IREE 3.13 (fft)")


def _programs(category: str, n: int):
    rng = random.Random(6)
    out = []
    while len(out) < n:
        try:
            out.append(sample_program(rng, category))
        except Reject:
            continue
    return out


def test_generator_reads_the_bits_of_rounded_floats_only():
    """A float's bits after erf/tan/sums differ in the last place between correct compilers;
    the generator rounds a float to an integer (of 256ths) before it bitcasts it."""
    float_bitcasts = 0
    for program in _programs("bitwise", 400):
        for stmt in program.statements:
            if stmt.op.name == "bitcast" and stmt.operands[0].type.is_float:
                float_bitcasts += 1
                text = render_source(program)
                assert re.search(rf"lax\.bitcast_convert_type\(jnp\.round\({stmt.operands[0].name} \* 256\.0\)", text)
    assert float_bitcasts > 10  # the float -> int bitcast is still emitted


def test_generator_keeps_digamma_and_polygamma_away_from_their_pole():
    seen = 0
    for program in _programs("elementwise", 600):
        for stmt in program.statements:
            if stmt.op.name in ("digamma", "polygamma"):
                seen += 1
                (line,) = render_statement(stmt)
                assert f"(jnp.abs({stmt.operands[0].name}) + 1.0))" in line, line
    assert seen > 5


def test_report_json_holds_every_row_result(tmp_path, capsys):
    """Whatever the rows' outcomes (a sampled row may fail execution), the report holds each."""
    rows = rowkit.make_rows(train=2, validation=1, seed=3)
    folder = rowkit.write_jsonl(rows, tmp_path / "d")
    out = tmp_path / "report.json"
    status = cli.main(["validate", str(folder), "--trust-code", "--all", "--report-json", str(out)])
    (report,) = json.loads(out.read_text())
    assert status == (0 if report["ok"] else 1)
    assert sorted(r["id"] for r in report["row_results"]) == sorted(r["id"] for s in rows.values() for r in s)
    executed = [r["checks"]["execute"]["status"] for r in report["row_results"]]
    assert set(executed) <= {"pass", "fail"} and report["checks"]["execute"]["passed"] == executed.count("pass")
    assert {r["split"] for r in report["row_results"]} == {"train", "validation"}


def test_report_json_to_an_unwritable_place_fails_before_any_work(tmp_path, capsys):
    rows = rowkit.make_rows(train=1, validation=0, seed=3)
    folder = rowkit.write_jsonl(rows, tmp_path / "d")
    (tmp_path / "file").write_text("")
    assert (
        cli.main(["validate", str(folder), "--structure-only", "--report-json", str(tmp_path / "file" / "r.json")]) == 2
    )
    err = capsys.readouterr().err
    assert "cannot be created" in err or "is not a writable directory" in err


# --- compile failures: the row's fault only if IREE's frontend rejects the IR ------------

CRASHING_IR = """module @jit_f attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {
  func.func public @main(%arg0: tensor<i32> {jax.global_constant = "b"}, %arg1: tensor<?xf32>) -> (tensor<?xf32>) {
    %0 = stablehlo.reduce_precision %arg1, format = e5m10 : tensor<?xf32>
    %1 = stablehlo.round_nearest_afz %0 : tensor<?xf32>
    %2 = stablehlo.cbrt %1 : tensor<?xf32>
    return %2 : tensor<?xf32>
  }
}
"""


def _classify(ir: str):
    import iree.compiler

    from generator.tools.validate.iree import iree_compile, iree_compile_failure

    try:
        iree_compile(ir)
    except iree.compiler.CompilerToolError as e:
        return iree_compile_failure(ir, e)
    return None  # it compiles


def test_ir_that_iree_frontend_rejects_fails_the_row():
    pytest.importorskip("iree.compiler")
    bad = "module {\n  func.func @main(%a: tensor<2xf32>) -> tensor<2xf32> {\n    %0 = stablehlo.add %a, %b : tensor<2xf32>\n    return %0 : tensor<2xf32>\n  }\n}\n"
    result = _classify(bad)
    assert result.status == "fail" and "IREE rejects the IR" in result.detail
    assert "undeclared SSA value" in result.detail


def test_iree_backend_error_after_import_is_a_skip_naming_the_phase():
    """IREE 3.13's stream partitioning fails on a loop over a value also used after it."""
    pytest.importorskip("iree.compiler")
    import jax
    import jax.numpy as jnp
    from jax import lax

    def f(x):
        g = jnp.sin(x)
        return g * lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, g))[1]

    ir = jax.jit(f).lower(jax.ShapeDtypeStruct((4,), jnp.float32)).as_text()
    result = _classify(ir)
    assert result is not None and result.status == "skip", result
    assert result.note == "IREE 3.13 failed after importing the IR (backend)"
    assert "circular dependency" in result.detail


def test_iree_compiler_crash_is_a_skip_with_its_fatal_message():
    pytest.importorskip("iree.compiler")
    result = _classify(CRASHING_IR)
    assert result == CheckOutcome.skipped("IREE 3.13 compiler crashed", detail="could not reify")


# --- low-precision mismatches: judged against a float32 evaluation ------------------------


def test_ill_conditioned_low_precision_output_is_judged_against_float32():
    import numpy as np

    from generator.tools.validate.numerics import within_rounding_noise

    reference = np.array([0.0, 1.0, -1.0, 0.5])
    xla = reference + np.array([0.3, 0.0, 0.0, 0.0])  # XLA's own bf16 result is 0.3 off
    near = reference + np.array([-0.25, 0.0, 0.1, 0.0])  # IREE as far off as XLA: noise
    far = reference + np.array([0.0, 0.0, 0.0, 0.9])  # IREE three times worse: a real mismatch
    assert "XLA 0.3, IREE 0.25" in within_rounding_noise(near, xla, reference, "bfloat16")
    assert within_rounding_noise(far, xla, reference, "bfloat16") is None
    # XLA within tolerance of float32: the output is well conditioned, so any mismatch stands
    assert within_rounding_noise(near, reference + 0.01, reference, "bfloat16") is None
    assert within_rounding_noise(near, xla, None, "bfloat16") is None
    # a non-finite value where the other is finite is never noise
    assert within_rounding_noise(np.array([np.nan, 1.0, -1.0, 0.5]), xla, reference, "bfloat16") is None


def test_reshape_over_a_symbolic_batch_is_a_dynamic_reshape_the_list_names():
    """``x.reshape(b, -1)`` over a symbolic leading dimension lowers (jax 0.12) to a
    ``stablehlo.dynamic_reshape`` of ``tensor<?x4x8xf32>``; IREE 3.13's frontend rejects it
    ("failed to legalize operation 'stablehlo.dynamic_reshape'"), so the static list must name it."""
    pytest.importorskip("iree.compiler")
    import jax
    import jax.numpy as jnp

    (b,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, 4, 8), jnp.float32)
    ir = jax.jit(lambda x: x.reshape(x.shape[0], -1)).lower(spec).as_text()
    assert "stablehlo.dynamic_reshape" in ir and "(tensor<?x4x8xf32>, tensor<2xi32>) -> tensor<?x32xf32>" in ir
    assert iree_unportable(ir) == "dynamic_reshape"
    no_run = XlaRun(fn=lambda x: x, inputs=[], outputs=[])
    assert check_iree(ir, no_run) == CheckOutcome.skipped("not portable to IREE 3.13 (dynamic_reshape)")
    result = _classify(ir)  # the rule is still needed: compiled, the row would fail, not skip
    assert result.status == "fail" and "stablehlo.dynamic_reshape" in result.detail, result


def test_generator_never_samples_a_bfloat16_triu():
    """jaxlib 0.12.0.1's CPU compiler aborts on ``jnp.triu`` of a non-square bfloat16 matrix
    ("LLVM ERROR: Do not know how to soft promote this operator's operand!"), which would kill
    the execute check; the matrix table leaves bfloat16 out of triu (tril compiles)."""
    from generator.core.ops import OPS_BY_NAME

    assert "bfloat16" not in OPS_BY_NAME["triu"].dtypes and "bfloat16" in OPS_BY_NAME["tril"].dtypes
    seen = 0
    for program in _programs("matrix", 600):
        for stmt in program.statements:
            if stmt.op.name == "triu":
                seen += 1
                assert stmt.operands[0].type.dtype != "bfloat16"
    assert seen > 5
