"""The iree check: IREE compiles a row's ``stablehlo_ir`` on its own and runs it, and its outputs
must match XLA's; plus the rules that tell IREE's limits from wrong rows.

A row is skipped, not failed, when its IR is not portable to IREE by construction (XLA-only
custom calls, Shardy), holds a construct listed in ``IREE_UNPORTABLE``, or makes IREE fail
after its StableHLO frontend accepted the IR. IREE is imported inside the functions that
need it; the static rules (``iree_static_skip``) need neither IREE nor JAX.
"""

from __future__ import annotations

import re

from .numerics import (
    NOISY,
    SYMBOLIC_DIM_SIZE,
    XlaRun,
    compare,
    tolerance_dtype,
    within_rounding_noise,
    within_summation_error,
)
from .outcome import CheckOutcome, Status

IREE_VERSION_CHECKED = "3.13"
# Dialects a row's IR is written in: a frontend diagnostic on one of their ops is about the row's
# IR; one on another dialect's op (linalg, iree_linalg_ext, tensor...) is about IREE's conversion.
INPUT_DIALECTS = frozenset({"stablehlo", "chlo", "func", "builtin", "sdy", "mhlo", "shape"})

# --- what IREE 3.13 cannot take --------------------------------------------------------

# Constructs that IREE 3.13 (iree-base-compiler/runtime 3.13.0, llvm-cpu) cannot compile, or
# computes against the StableHLO spec, each found by a failing row and pinned down by a
# minimal program (tests/test_iree_portability.py). The iree check skips rows holding one
# ("not portable to IREE 3.13") and counts them by name; any other compile error is judged
# by ``iree_compile_failure``. A new entry needs its rule in ``iree_unportable`` below.
IREE_UNPORTABLE: dict[str, str] = {
    "dynamic_reshape": "stablehlo.dynamic_reshape (IREE 3.13 cannot legalize it)",
    "dynamic_broadcast_in_dim": "stablehlo.dynamic_broadcast_in_dim of an operand with a dynamic dimension (IREE 3.13 cannot legalize it)",
    "fft": "stablehlo.fft of a length that is not a power of two (IREE 3.13 cannot legalize it)",
    "while_int_to_f16": "a loop counter converted to f16/bf16 inside stablehlo.while (IREE 3.13 cannot legalize arith.sitofp to a 16-bit float there)",
    "top_k_of_top_k": "chlo.top_k of another top_k's values, rank >= 2 (IREE 3.13: 'write affecting operations on global resources')",
    "gather_of_strided_slice": "stablehlo.gather from a strided slice or from a dynamic_slice that narrows a non-leading dimension (IREE 3.13: unrealized_conversion_cast)",
    "select_and_scatter": "stablehlo.select_and_scatter (IREE 3.13 resolves ties to the last equal element; the spec's in-order schedule gives the first)",
    "f16_subnormal": "an f16 constant below f16's smallest normal number (IREE 3.13 flushes f16 subnormals to zero, XLA keeps them)",
}

_DEF_RE = re.compile(r'^\s*((?:%[\w#]+(?::\d+)?(?:, )?)+) = "?([\w.]+)')
_SHAPE_RE = re.compile(r"tensor<((?:[0-9?]+x)*)[a-z]")
_F16_SMALLEST_NORMAL = 2.0**-14


def _dims(type_text: str) -> list[str]:
    m = _SHAPE_RE.search(type_text)
    return m.group(1).split("x")[:-1] if m else []


def _operand_types(line: str) -> list[str]:
    """The operand types of an op line: ``(t1, t2) -> r`` or a single ``: t``."""
    sig = line.rsplit(" : ", 1)[-1]
    if sig.startswith("("):
        return re.findall(r"tensor<[^>]*>", sig.split("->")[0])
    return re.findall(r"tensor<[^>]*>", sig)[:1]


def iree_unportable(ir: str) -> str | None:
    """The ``IREE_UNPORTABLE`` key of the first construct in ``ir`` that IREE 3.13 cannot take, or ``None``.

    A static reading of the IR text (as ``jax`` prints it), made before compiling.
    """
    if "stablehlo.dynamic_reshape" in ir:
        return "dynamic_reshape"
    if "stablehlo.select_and_scatter" in ir:
        return "select_and_scatter"
    for v in re.findall(r"dense<([-+0-9.eE]+)> : tensor<(?:[0-9]+x)*f16>", ir):
        if 0.0 < abs(float(v)) < _F16_SMALLEST_NORMAL:
            return "f16_subnormal"
    producer: dict[str, tuple[str, str]] = {}  # SSA name -> (op, its line), per function
    depth, while_depths = 0, []
    for line in ir.splitlines():
        if "func.func" in line:
            producer = {}
        in_while = any(d < depth for d in while_depths)
        m = _DEF_RE.match(line)
        op = m.group(2) if m else ""
        if op == "stablehlo.dynamic_broadcast_in_dim" and "?" in _dims(_operand_types(line)[0]):
            return "dynamic_broadcast_in_dim"
        if op == "stablehlo.fft":
            lengths = re.search(r"length = \[([0-9, ]*)\]", line)
            if lengths and any(int(k) & (int(k) - 1) for k in lengths.group(1).split(",") if k.strip()):
                return "fft"
        if (
            op == "stablehlo.convert"
            and in_while
            and re.search(r"\(tensor<(?:i|ui)\d+>\) -> tensor<(?:f16|bf16)>", line)
        ):
            return "while_int_to_f16"
        if op == "chlo.top_k":
            arg = re.search(r"top_k\((%[\w#]+)", line)
            src = producer.get(arg.group(1).split("#")[0]) if arg else None
            if src and src[0] == "chlo.top_k" and len(_dims(_operand_types(line)[0])) >= 2:
                return "top_k_of_top_k"
        if op == "stablehlo.gather":
            arg = re.search(r'gather"\((%[\w#]+)', line)
            src = producer.get(arg.group(1)) if arg else None
            if src and _strided_view(*src):
                return "gather_of_strided_slice"
        if m:
            for name in m.group(1).split(", "):
                producer[name.split(":")[0]] = (op, line)
        if "stablehlo.while" in line:
            while_depths.append(depth)
        depth += line.count("{") - line.count("}")
        while while_depths and depth <= while_depths[-1] and "}" in line and not line.rstrip().endswith("{"):
            while_depths.pop()
    return None


def _strided_view(op: str, line: str) -> bool:
    """A ``slice`` with a stride > 1 that also narrows an inner dimension, or a ``dynamic_slice``
    that narrows a non-leading dimension: views IREE 3.13 fuses into a gather it cannot lower."""
    types = re.findall(r"tensor<[^>]*>", line.rsplit(" : ", 1)[-1])
    if len(types) < 2:
        return False
    src, out = _dims(types[0]), _dims(types[-1])
    narrowed_inner = any(a != b for a, b in zip(src[1:], out[1:]))
    if op == "stablehlo.slice":
        return bool(re.search(r"\d+:\d+:(?:[2-9]|\d\d)", line)) and narrowed_inner
    return op == "stablehlo.dynamic_slice" and narrowed_inner


_CUSTOM_CALL_RE = re.compile(r'(?:stablehlo\.custom_call @|call_target_name = ")([\w.$-]+)')


def iree_static_skip(ir: str) -> CheckOutcome | None:
    """The skip of IR that IREE cannot take, read from its text before compiling, or ``None``."""
    # XLA's CPU custom calls (LAPACK for linalg, ...) exist only inside XLA: such IR is not
    # portable by construction, which is a property of the row, not a wrong pair.
    targets = sorted(set(_CUSTOM_CALL_RE.findall(ir)))
    if targets:
        # one note per kind (the report counts rows per note); the row's detail names every target
        kind = "LAPACK" if all(t.startswith("lapack_") for t in targets) else ", ".join(targets)
        return CheckOutcome.skipped(f"XLA-only custom_call ({kind})", detail=", ".join(targets))
    if "sdy.mesh" in ir:
        return CheckOutcome.skipped(f"Shardy (sdy) multi-device IR, which IREE {IREE_VERSION_CHECKED} does not parse")
    construct = iree_unportable(ir)
    if construct is not None:
        return CheckOutcome.skipped(f"not portable to IREE {IREE_VERSION_CHECKED} ({construct})")
    return None


# --- typed keys: JAX's single-device sharding constraints --------------------------------

EMPTY_MESH_NOTE = "typed PRNG keys: empty-mesh sharding constraints removed"


def without_empty_mesh(ir: str) -> str | None:
    """``ir`` without JAX's single-device Shardy ops, or ``None`` if it has none (or a real mesh).

    JAX 0.12 lowers every typed PRNG key (``jax.random.key``) that ``main`` takes or returns
    through an ``sdy.sharding_constraint`` over ``sdy.mesh @empty_mesh = <[]>`` (it replicates
    the key data's trailing dimension), which on one device is the identity. IREE 3.13 has no
    ``sdy`` dialect. With each such constraint replaced by its operand and the empty meshes
    dropped, the module computes the same and IREE takes it; IR with any other ``sdy`` construct
    (a mesh with axes, sharded arguments) is left alone (``None``), and skipped as before.
    Needs jaxlib's MLIR bindings (the row runner's child has them).
    """
    if "sdy." not in ir:
        return None
    from jax._src.interpreters.mlir import make_ir_context
    from jax._src.lib.mlir import ir as mlir

    with make_ir_context():
        module = mlir.Module.parse(ir)
        ops: list = []
        module.operation.walk(lambda op: (ops.append(op.operation), mlir.WalkResult.ADVANCE)[1])
        sdy = [op for op in ops if op.name.startswith("sdy.")]
        empty = {
            str(op.attributes["sym_name"]).strip('"')
            for op in sdy
            if op.name == "sdy.mesh" and str(op.attributes["mesh"]) == "#sdy.mesh<[]>"
        }
        constraints = [
            op
            for op in sdy
            if op.name == "sdy.sharding_constraint"
            and any(str(op.attributes["sharding"]).startswith(f"#sdy.sharding<@{m},") for m in empty)
        ]
        meshes = [op for op in sdy if op.name == "sdy.mesh" and str(op.attributes["sym_name"]).strip('"') in empty]
        if not constraints or len(constraints) + len(meshes) != len(sdy):
            return None
        for op in constraints:
            op.results[0].replace_all_uses_with(op.operands[0])
            op.erase()
        for op in meshes:
            op.erase()
        text = str(module)
    return None if "sdy." in text else text


# --- compiling, and telling IREE's failures from wrong rows ------------------------------


def iree_compile(ir: str, *extra: str) -> bytes:
    """``ir`` compiled by IREE for llvm-cpu (a generic CPU); ``extra``: more compiler flags."""
    import iree.compiler

    return iree.compiler.compile_str(
        ir,
        target_backends=["llvm-cpu"],
        input_type="stablehlo",
        extra_args=["--iree-llvmcpu-target-cpu=generic", *extra],
    )


def _first_diagnostic(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if "error:" in line]
    return (lines[0] if lines else str(e).strip().splitlines()[0])[:300]


def _crash(error: Exception) -> CheckOutcome | None:
    """The skip of a row whose compile made IREE abort (killed by a signal), else ``None``."""
    text = str(error)
    code = re.search(r"Error code: (-?\d+)", text)
    if not code or int(code.group(1)) >= 0:
        return None
    fatal = re.search(r"LLVM ERROR: ([^\n]+)", text)
    detail = fatal.group(1).strip() if fatal else f"signal {-int(code.group(1))}"
    return CheckOutcome.skipped(f"IREE {IREE_VERSION_CHECKED} compiler crashed", detail=detail)


def iree_compile_failure(ir: str, error: Exception) -> CheckOutcome:
    """Whether a failed IREE compile speaks against the row (``fail``) or only against IREE (``skip``).

    The row's IR fails when IREE's StableHLO frontend rejects it with a diagnostic: compiling
    only up to IREE's input phase (``--compile-to=input``: parse, verify, convert StableHLO
    to IREE's input dialects) fails. It is skipped when the frontend accepted it and a later
    phase (stream partitioning, code generation, LLVM) failed, or when the compiler aborted
    instead of diagnosing: both are defects of the compiler, which must diagnose any input it
    cannot take. The skip note names the phase; the row's detail keeps IREE's message.
    """
    import iree.compiler

    crashed = _crash(error)
    if crashed is not None:
        return crashed
    try:
        iree_compile(ir, "--compile-to=input")
    except iree.compiler.CompilerToolError as frontend:
        diagnostic = _first_diagnostic(frontend)
        made = re.search(r"'(\w+)\.\w+' op", diagnostic)
        if made and made.group(1) not in INPUT_DIALECTS:
            # an op of IREE's own dialects, made by its conversion, fails its verifier: the input was valid
            return CheckOutcome.skipped(
                f"IREE {IREE_VERSION_CHECKED} input conversion made an invalid op ({made.group(1)})", detail=diagnostic
            )
        return _crash(frontend) or CheckOutcome.failed(f"IREE rejects the IR: {diagnostic}")
    return CheckOutcome.skipped(
        f"IREE {IREE_VERSION_CHECKED} failed after importing the IR (backend)", detail=_first_diagnostic(error)
    )


# --- the check -------------------------------------------------------------------------


def check_iree(ir: str, run: XlaRun) -> CheckOutcome:
    """IREE compiles ``ir`` and runs it on ``run``'s inputs; its outputs must match ``run``'s (XLA's)."""
    import iree.compiler
    import iree.runtime
    import numpy as np

    single_device = without_empty_mesh(ir)
    if single_device is not None:  # a skip or failure keeps its own reason
        outcome = check_iree(single_device, run)
        return outcome.with_note(EMPTY_MESH_NOTE) if outcome.status == Status.PASS and not outcome.note else outcome
    skip = iree_static_skip(ir)
    if skip is not None:
        return skip
    try:
        vmfb = iree_compile(ir)
    except iree.compiler.CompilerToolError as e:
        return iree_compile_failure(ir, e)
    module = iree.runtime.load_vm_flatbuffer(vmfb, backend="llvm-cpu")
    inputs = run.kept_inputs
    # Symbolic shapes: main first takes each dimension variable as an integer scalar, and
    # every symbol is SYMBOLIC_DIM_SIZE in the example inputs.
    main = re.search(r"func\.func public @main\((.*?)\)\s*->", ir, re.S)
    arg_types = re.findall(r"%arg\d+: tensor<([^>]*)>", main.group(1)) if main else []
    extra = len(arg_types) - len(inputs)
    if extra > 0 and all(t in ("i64", "i32") for t in arg_types[:extra]):
        inputs = [
            np.array(SYMBOLIC_DIM_SIZE, dtype=np.int64 if t == "i64" else np.int32) for t in arg_types[:extra]
        ] + list(inputs)

    def call() -> list[np.ndarray]:
        result = module.main(*inputs)
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        return [np.asarray(r.to_host() if hasattr(r, "to_host") else r) for r in results]

    try:
        results = call()
    except Exception as e:
        if "Error invoking function" not in str(e):
            raise
        # IREE's runtime refused a module its own compiler built: IREE's defect, not the row's
        return CheckOutcome.skipped(f"IREE {IREE_VERSION_CHECKED} runtime error", detail=_first_diagnostic(e))
    if len(results) != len(run.outputs):
        return CheckOutcome.failed(f"IREE returned {len(results)} outputs, JAX {len(run.outputs)}")
    outcome = _compare_outputs(ir, run, results)
    if outcome.status == Status.FAIL:
        # A compiled module is a pure function: if running it again gives other outputs, IREE's
        # runtime raced (seen in 3.13 on loops that carry a buffer), and its outputs judge nothing.
        for _ in range(RERUNS):
            again = call()
            if any(not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc") for a, b in zip(again, results)):
                return CheckOutcome.skipped(
                    f"IREE {IREE_VERSION_CHECKED} nondeterministic: one module gave different outputs on the same inputs",
                    detail=outcome.detail,
                )
    return outcome


# Runs of a module whose outputs missed XLA's, to tell IREE's runtime races from wrong rows.
RERUNS = 4


def _compare_outputs(ir: str, run: XlaRun, results: list) -> CheckOutcome:
    """IREE's ``results`` against XLA's outputs in ``run`` (see ``check_iree``)."""
    noisy, reordered = [], []
    for k, (got, want) in enumerate(zip(results, run.outputs)):
        dtype = tolerance_dtype(str(want.dtype), ir)
        why = compare(got, want, dtype)
        if why:
            within = within_rounding_noise(got, want, run.wider_reference(k, dtype), dtype) if dtype in NOISY else None
            if within is None and dtype == "float32":
                summed = within_summation_error(got, run.wider_reference(k, dtype), ir)
                if summed is not None:
                    reordered.append(f"output {k}: {summed}")
                    continue
            if within is None:
                return CheckOutcome.failed(f"output {k}: IREE vs JAX: {why}")
            noisy.append(f"output {k}: {within}")
    if reordered and not noisy:
        return CheckOutcome.skipped(
            "float32 reduction order: IREE within 1% of a float64 evaluation, XLA closer", detail="; ".join(reordered)
        )
    if noisy:
        return CheckOutcome.skipped(
            "ill-conditioned at its precision: IREE and XLA differ by no more than XLA differs from a wider evaluation",
            detail="; ".join(noisy + reordered),
        )
    return CheckOutcome.passed()
