"""Running rows' code in a child process, one row at a time, under a time limit.

A row's ``python_source`` is code: re-lowering it, running it with XLA, and running its
``stablehlo_ir`` with IREE all execute it or what it produced. ``RowRunner`` does that in a
separate interpreter (``python -m generator.tools.validate.execute``), so a row that crashes, hangs or
explodes costs its own result and a restart of the child, never the validation run. The
child is not a sandbox: it runs with the caller's user, files and network, which is why
``validate`` asks for ``--trust-code`` before it runs code it did not generate itself.

Protocol over the pipes: the child prints ``{"ready": ...}`` once it has imported JAX, then
answers each request line (a JSON job) with one result line.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from typing import Any

from ...runtime.child import Child, child_env, serve

STARTUP_TIMEOUT_S = 120.0
SYMBOLIC_DIM_SIZE = 4  # the concrete size every symbolic dimension takes for execution


def host_devices(lowering: str) -> int:
    """Host CPU devices a row's ``lowering`` needs: ``jit`` 1, ``jit:host_devices=N`` N."""
    if lowering == "jit":
        return 1
    prefix = "jit:host_devices="
    if isinstance(lowering, str) and lowering.startswith(prefix) and lowering[len(prefix) :].isdigit():
        return int(lowering[len(prefix) :])
    raise ValueError(f"unknown lowering {lowering!r}; valid: 'jit', 'jit:host_devices=N'")


def _concrete_dim(d, env: dict[str, int]) -> int:
    try:
        return int(d)
    except Exception:  # a symbolic dimension (jax.export): every symbol takes SYMBOLIC_DIM_SIZE
        import re as _re

        text = str(d)
        for name in _re.findall(r"[A-Za-z_]\w*", text):
            env.setdefault(name, SYMBOLIC_DIM_SIZE)
        return int(eval(text, {"__builtins__": {}}, env))


# |got - want| <= atol * max(1, max|want|) + rtol * |want|, per dtype of the output.
# float16/bfloat16 carry 11/8 significant bits, and two compilers may order a reduction
# differently, so their tolerances are a few units in the last place of a chained program.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),
    "float16": (2e-2, 1e-2),
    "bfloat16": (6e-2, 4e-2),
    "float64": (1e-9, 1e-12),
    "complex64": (1e-4, 1e-5),
    "complex128": (1e-9, 1e-12),
}


# --- inputs --------------------------------------------------------------------------


def example_inputs(source: str, specs) -> list:
    """Concrete arrays for ``specs`` (``jax.ShapeDtypeStruct``s), a pure function of ``source``.

    Floats are uniform in [-1, 1), integers in [-4, 4] ([0, 4] unsigned), booleans fair coins: every op in the
    generator guards its own domain (``log(|x| + 1e-3)``...), and small magnitudes keep
    chained programs inside float16's range.
    """
    import numpy as np

    out = []
    env: dict[str, int] = {}
    for i, spec in enumerate(specs):
        seed = int.from_bytes(hashlib.sha256(f"{i}:{source}".encode()).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        dtype = np.dtype(spec.dtype)
        shape = tuple(_concrete_dim(d, env) for d in spec.shape)
        if dtype == np.bool_:
            x = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.unsignedinteger):
            x = rng.integers(0, 5, size=shape)
        elif np.issubdtype(dtype, np.integer):
            x = rng.integers(-4, 5, size=shape)
        elif np.issubdtype(dtype, np.complexfloating):
            x = rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)
        else:
            x = rng.uniform(-1, 1, size=shape)
        out.append(np.asarray(x).astype(dtype))
    return out


_IR_FLOAT = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
_IR_FLOAT_RE = re.compile(r"tensor<(?:[0-9?]+x)*(bf16|f16|f32)>")


def tolerance_dtype(out_dtype: str, ir: str) -> str:
    """The dtype whose tolerance applies to an output: its own, or the loosest float the IR
    computes in, since a float32 result of bfloat16 intermediates carries bfloat16 error."""
    if out_dtype not in TOLERANCES:
        return out_dtype
    used = {_IR_FLOAT[m] for m in _IR_FLOAT_RE.findall(ir)} | {out_dtype}
    return max(used, key=lambda d: TOLERANCES[d][0])


def compare(got, want, dtype: str) -> str | None:
    """``None`` if ``got`` matches ``want`` within the tolerance of ``dtype``, else why not."""
    import numpy as np

    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != {list(want.shape)}"
    if dtype not in TOLERANCES:
        if np.array_equal(got, want):
            return None
        return f"{int(np.sum(got != want))} of {want.size} elements differ ({dtype}, compared exactly)"
    rtol, atol = TOLERANCES[dtype]
    wide = np.complex128 if np.iscomplexobj(want) else np.float64
    g = got.astype(wide)
    w = want.astype(wide)
    same_nonfinite = (np.isnan(g) & np.isnan(w)) | (g == w)
    scale = max(1.0, float(np.max(np.abs(w[np.isfinite(w)]), initial=0.0)))
    err = np.abs(g - w)
    bad = ~same_nonfinite & ~(err <= atol * scale + rtol * np.abs(w))
    if not bad.any():
        return None
    return f"{int(bad.sum())} of {want.size} elements outside tolerance ({dtype}: rtol {rtol}, atol {atol}); max abs error {float(np.nanmax(err[bad])):.3g}"


# --- what IREE 3.13 cannot take --------------------------------------------------------

IREE_VERSION_CHECKED = "3.13"

# Constructs that IREE 3.13 (iree-base-compiler/runtime 3.13.0, llvm-cpu) cannot compile, or
# computes against the StableHLO spec, each found by a failing row and pinned down by a
# minimal program. The iree check skips rows holding one ("not portable to IREE 3.13") and
# counts them by name; any other compile error is still a failure.
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


# --- the child -------------------------------------------------------------------------


def _signature_dim(d) -> int:
    try:
        return int(d)
    except Exception:
        return -1


def _check_reproduce(job, fn_args, state) -> dict[str, Any]:
    """The row's own recipe, ``jax.jit(fn).lower(*example_args()).as_text()``, gives its IR."""
    import jax

    from ...core.irtext import stablehlo_ops
    from ...core.lowering import JAX_VERSION

    fn, args = fn_args
    signature = [{"shape": [_signature_dim(d) for d in a.shape], "dtype": str(a.dtype)} for a in args]
    if job.get("input_signature") is not None and signature != job["input_signature"]:
        return {
            "status": "fail",
            "detail": f"example_args() gives {signature}, input_signature says {job['input_signature']}",
        }
    lowered = jax.jit(fn).lower(*args)
    state["lowered"] = lowered
    ir = lowered.as_text()
    if job.get("jax_version") == JAX_VERSION:
        if ir == job["stablehlo_ir"]:
            return {"status": "pass"}
        return {"status": "fail", "detail": "re-lowered IR differs from stablehlo_ir (same jax version)"}
    if stablehlo_ops(ir) == stablehlo_ops(job["stablehlo_ir"]):
        return {"status": "pass", "note": "op histogram"}
    return {
        "status": "fail",
        "detail": f"op histogram differs (row lowered by jax {job.get('jax_version')}, here {JAX_VERSION})",
    }


def _check_execute(job, fn_args, state) -> dict[str, Any]:
    import jax
    import numpy as np

    fn, args = fn_args
    inputs = example_inputs(job["python_source"], args)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.jit(fn)(*inputs))]
    state["fn"], state["inputs"], state["outputs"] = fn, inputs, leaves
    state["kept"] = _kept_arguments(state.get("lowered") or jax.jit(fn).lower(*args))
    want = [(list(s["shape"]), s["dtype"]) for s in job.get("output_signature") or []]
    got = [(list(x.shape), str(x.dtype)) for x in leaves]
    # a symbolic (-1) dimension matches any size
    got = [
        ([-1 if w == -1 else g for g, w in zip(gs, ws)] if len(gs) == len(ws) else gs, gd)
        for (gs, gd), (ws, _) in zip(got, want)
    ] + got[len(want) :]
    if want and got != want:
        return {"status": "fail", "detail": f"outputs {got} do not match output_signature {want}"}
    for k, x in enumerate(leaves):
        if np.issubdtype(x.dtype, np.inexact) or x.dtype.name == "bfloat16":
            if not np.all(np.isfinite(x.astype(np.float64))):
                return {
                    "status": "fail",
                    "detail": f"output {k} ({x.dtype}) has non-finite values on the example inputs",
                }
    return {"status": "pass"}


def _kept_arguments(lowered) -> list[int] | None:
    """Indices of the arguments the lowered ``main`` takes: jit drops unused ones from the IR."""
    try:
        return sorted(lowered._lowering.compile_args["kept_var_idx"])
    except (AttributeError, KeyError, TypeError):  # a private field; without it, assume all are kept
        return None


_CUSTOM_CALL_RE = re.compile(r'(?:stablehlo\.custom_call @|call_target_name = ")([\w.$-]+)')


def _first_diagnostic(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if "error:" in line]
    return (lines[0] if lines else str(e).strip().splitlines()[0])[:300]


def _check_iree(job, state) -> dict[str, Any]:
    import iree.compiler
    import iree.runtime
    import numpy as np

    # XLA's CPU custom calls (LAPACK for linalg, ...) exist only inside XLA: such IR is not
    # portable by construction, which is a property of the row, not a wrong pair.
    targets = sorted(set(_CUSTOM_CALL_RE.findall(job["stablehlo_ir"])))
    if targets:
        # one note per kind (the report counts rows per note); the row's detail names every target
        kind = "LAPACK" if all(t.startswith("lapack_") for t in targets) else ", ".join(targets)
        return {"status": "skip", "note": f"XLA-only custom_call ({kind})", "detail": ", ".join(targets)}
    if "sdy.mesh" in job["stablehlo_ir"]:
        return {"status": "skip", "note": "Shardy (sdy) multi-device IR, which IREE 3.13 does not parse"}
    construct = iree_unportable(job["stablehlo_ir"])
    if construct is not None:
        return {"status": "skip", "note": f"not portable to IREE {IREE_VERSION_CHECKED} ({construct})"}
    try:
        vmfb = _iree_compile(job["stablehlo_ir"])
    except iree.compiler.CompilerToolError as e:
        return iree_compile_failure(job["stablehlo_ir"], e)
    module = iree.runtime.load_vm_flatbuffer(vmfb, backend="llvm-cpu")
    inputs = state["inputs"] if state["kept"] is None else [state["inputs"][i] for i in state["kept"]]
    # Symbolic shapes: main first takes each dimension variable as an integer scalar, and
    # every symbol is SYMBOLIC_DIM_SIZE in the example inputs.
    main = re.search(r"func\.func public @main\((.*?)\)\s*->", job["stablehlo_ir"], re.S)
    arg_types = re.findall(r"%arg\d+: tensor<([^>]*)>", main.group(1)) if main else []
    extra = len(arg_types) - len(inputs)
    if extra > 0 and all(t in ("i64", "i32") for t in arg_types[:extra]):
        inputs = [
            np.array(SYMBOLIC_DIM_SIZE, dtype=np.int64 if t == "i64" else np.int32) for t in arg_types[:extra]
        ] + list(inputs)
    result = module.main(*inputs)
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    results = [np.asarray(r.to_host() if hasattr(r, "to_host") else r) for r in results]
    if len(results) != len(state["outputs"]):
        return {"status": "fail", "detail": f"IREE returned {len(results)} outputs, JAX {len(state['outputs'])}"}
    noisy = []
    for k, (got, want) in enumerate(zip(results, state["outputs"])):
        dtype = tolerance_dtype(str(want.dtype), job["stablehlo_ir"])
        why = compare(got, want, dtype)
        if why:
            within = (
                within_rounding_noise(got, want, _wider_reference(state, k), dtype) if dtype in LOW_PRECISION else None
            )
            if within is None:
                return {"status": "fail", "detail": f"output {k}: IREE vs JAX: {why}"}
            noisy.append(f"output {k}: {within}")
    if noisy:
        return {
            "status": "skip",
            "note": "ill-conditioned at its precision: IREE and XLA differ by no more than XLA differs from float32",
            "detail": "; ".join(noisy),
        }
    return {"status": "pass"}


# --- telling IREE's limits from wrong rows ------------------------------------------------

LOW_PRECISION = ("float16", "bfloat16")


def _iree_compile(ir: str, *extra: str) -> bytes:
    import iree.compiler

    return iree.compiler.compile_str(
        ir,
        target_backends=["llvm-cpu"],
        input_type="stablehlo",
        extra_args=["--iree-llvmcpu-target-cpu=generic", *extra],
    )


def _crash(error: Exception) -> dict[str, Any] | None:
    """The skip of a row whose compile made IREE abort (killed by a signal), else ``None``."""
    text = str(error)
    code = re.search(r"Error code: (-?\d+)", text)
    if not code or int(code.group(1)) >= 0:
        return None
    fatal = re.search(r"LLVM ERROR: ([^\n]+)", text)
    detail = fatal.group(1).strip() if fatal else f"signal {-int(code.group(1))}"
    return {"status": "skip", "note": f"IREE {IREE_VERSION_CHECKED} compiler crashed", "detail": detail}


def iree_compile_failure(ir: str, error: Exception) -> dict[str, Any]:
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
        _iree_compile(ir, "--compile-to=input")
    except iree.compiler.CompilerToolError as frontend:
        return _crash(frontend) or {"status": "fail", "detail": f"IREE rejects the IR: {_first_diagnostic(frontend)}"}
    return {
        "status": "skip",
        "note": f"IREE {IREE_VERSION_CHECKED} failed after importing the IR (backend)",
        "detail": _first_diagnostic(error),
    }


def _wider_reference(state, k: int):
    """Output ``k`` of the function run by XLA on its inputs widened to float32, or ``None``.

    float16/bfloat16 inputs become float32, so every op the program does not pin to a dtype
    computes in float32: an evaluation more precise than the row's own.
    """
    import jax
    import numpy as np

    cache = state.setdefault("wider", {})
    if "outputs" not in cache:
        try:
            widened = [
                np.asarray(x, np.float32) if str(np.asarray(x).dtype) in LOW_PRECISION else x for x in state["inputs"]
            ]
            cache["outputs"] = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.jit(state["fn"])(*widened))]
        except Exception:  # a program whose ops need the narrow dtype (bitcasts...) has no wider twin
            cache["outputs"] = None
    outputs = cache["outputs"]
    if outputs is None or k >= len(outputs) or outputs[k].shape != np.asarray(state["outputs"][k]).shape:
        return None
    return outputs[k]


def within_rounding_noise(got, want, reference, dtype: str) -> str | None:
    """Why IREE's ``got`` is as good as XLA's ``want`` for an ill-conditioned output, or ``None``.

    Both are low-precision evaluations of one function; ``reference`` is a more precise one.
    When XLA's own result is outside ``dtype``'s tolerance of the reference, the output is
    ill-conditioned at that precision (rounding noise decides it), and IREE is as good as
    XLA if its distance to the reference is at most twice XLA's. Otherwise ``None``: the
    mismatch stands.
    """
    import numpy as np

    if reference is None:
        return None
    g, w, r = (np.asarray(a).astype(np.float64) for a in (got, want, reference))
    finite = np.isfinite(g) & np.isfinite(w) & np.isfinite(r)
    if not finite.any() or (np.isfinite(g) != np.isfinite(w)).any():
        return None
    rtol, atol = TOLERANCES[dtype]
    scale = max(1.0, float(np.max(np.abs(r[finite]))))
    xla_error = float(np.max(np.abs(w - r)[finite]))
    iree_error = float(np.max(np.abs(g - r)[finite]))
    if xla_error <= atol * scale or iree_error > 2 * xla_error:
        return None
    return f"max error against float32: XLA {xla_error:.3g}, IREE {iree_error:.3g} ({dtype})"


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    from ...core.lowering import load_source

    result: dict[str, Any] = {}
    try:
        fn_args = load_source(job["python_source"], job["function_name"])
    except Exception as e:
        why = {"status": "fail", "detail": f"source does not run: {type(e).__name__}: {str(e)[:300]}"}
        return {check: why for check in job["checks"]}
    state: dict[str, Any] = {}
    for check in job["checks"]:
        try:
            if check == "reproduce":
                result[check] = _check_reproduce(job, fn_args, state)
            elif check == "execute":
                result[check] = _check_execute(job, fn_args, state)
            elif check == "iree":
                if "outputs" not in state:
                    result[check] = {"status": "skip", "detail": "needs a successful execute check"}
                else:
                    result[check] = _check_iree(job, state)
                    dropped = state["kept"] is not None and len(state["kept"]) < len(state["inputs"])
                    if dropped and "note" not in result[check]:  # a skip keeps its reason
                        result[check]["note"] = "unused arguments dropped from main"
        except Exception as e:
            result[check] = {"status": "fail", "detail": f"{type(e).__name__}: {str(e)[:300]}"}
    return result


def _setup() -> None:
    import jax  # noqa: F401  (import before "ready", so the time limit covers rows only)

    from ...core import lowering  # noqa: F401


# --- the parent ------------------------------------------------------------------------


class RowRunner:
    """Runs jobs in a child interpreter, restarting it after a crash or a time-out.

    Example:
      >>> with RowRunner(time_limit=60) as runner:
      ...     runner.run(row, ["reproduce", "execute"])
      {'reproduce': {'status': 'pass'}, 'execute': {'status': 'pass'}}
    """

    def __init__(self, *, time_limit: float = 60.0, host_devices: int = 1):
        if not time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {time_limit!r}")
        self.time_limit = time_limit
        self.host_devices = host_devices
        self._child: Child | None = None
        self._stderr = None

    def __enter__(self) -> RowRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _start(self) -> None:
        env = child_env(host_devices=self.host_devices)
        env.setdefault("JAX_PLATFORMS", "cpu")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._child = Child("generator.tools.validate.execute", env, stderr=self._stderr)
        if not isinstance(self._read(STARTUP_TIMEOUT_S), dict):
            raise RuntimeError(f"the row runner did not start: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-3:])

    def _read(self, timeout: float) -> dict[str, Any] | str:
        """The child's next message, or ``"timeout"`` after ``timeout`` seconds, or ``"died"``."""
        try:
            answer = self._child.receive(timeout)
        except TimeoutError:
            return "timeout"
        return "died" if answer is None else answer

    def run(self, row: dict[str, Any], checks: list[str]) -> dict[str, dict[str, Any]]:
        """Results of ``checks`` (``reproduce``, ``execute``, ``iree``) on one row."""
        if self._child is None or not self._child.alive:
            self.close()
            self._start()
        keys = ("python_source", "function_name", "stablehlo_ir", "jax_version", "input_signature", "output_signature")
        job = {k: row.get(k) for k in keys} | {"checks": checks}
        start = time.monotonic()
        self._child.send(job)
        answer = self._read(self.time_limit)
        if isinstance(answer, dict):
            return answer
        why = (
            f"cut off after the {self.time_limit:g} s time limit"
            if answer == "timeout"
            else f"the runner died (exit {self._child.returncode}) after {time.monotonic() - start:.1f} s: {self._stderr_tail()}"
        )
        self.close()
        return {check: {"status": "fail", "detail": why} for check in checks}


if __name__ == "__main__":
    serve(lambda job: [_run_job(job)], setup=_setup, ready=True)
