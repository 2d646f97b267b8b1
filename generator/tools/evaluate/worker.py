"""The scorer's child process: everything that touches a prediction beyond reading its text.

``python -m generator.tools.evaluate.worker`` serves JSON-lines jobs (``generator.runtime.child``),
one answer per job. Parsing a predicted module with MLIR, compiling and running it with XLA,
and executing predicted Python all happen here, under limits the child sets on itself at
start (address space, file size) and per job (CPU time), in a temporary working folder, with
the clean environment the parent gives it. A prediction that crashes or hangs this process
costs its own answer; the parent restarts the worker.

A job streams its results: one ``{"layer": name, "ok": bool, ...}`` line per layer as it is
decided, ``{"reference": ...}`` once the reference's outputs are known (so a time-out after it
is the prediction's), and ``{"done": true}``. What the parent read before a crash stands.

This is not a security sandbox: the process runs as the caller's user, with its files and
network. The limits contain accidents (loops, huge tensors, crashes), not an attacker.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .irtools import plain_hlo, tensor_spec

WORKER_MODULE = "generator.tools.evaluate.worker"
# Environment variables the parent sets for the limits (read once, at start).
ENV_MEMORY = "JSP_EVAL_MEMORY_BYTES"
ENV_CPU = "JSP_EVAL_CPU_SECONDS"
ENV_FILE = "JSP_EVAL_FILE_BYTES"

# Failure classes (the report counts them).
MISSING = "missing_answer"
UNPARSEABLE = "unparseable"
WRONG_SIGNATURE = "wrong_signature"
WRONG_VALUES = "wrong_values"
DIFFERENT_TEXT = "different_text"
NO_DEFINITION = "missing_definition"
CRASH = "crash"
TIMEOUT = "timeout"
OUT_OF_MEMORY = "out_of_memory"
_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "bad_alloc", "Cannot allocate memory")


def failure_class(error: BaseException) -> str:
    """``out_of_memory`` for an allocation that failed under the address-space limit, else ``crash``."""
    if isinstance(error, MemoryError) or any(m in str(error) for m in _OOM_MARKERS):
        return OUT_OF_MEMORY
    return CRASH


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip()[:300]}"


# --- limits ---------------------------------------------------------------------------------


def _setup() -> None:
    """Limits, working folder, then the imports every job needs (before ``ready``)."""
    memory = int(os.environ.get(ENV_MEMORY, "0"))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    file_bytes = int(os.environ.get(ENV_FILE, "0"))
    if file_bytes > 0:  # a prediction printing without end fills a file, not the disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    os.chdir(tempfile.mkdtemp(prefix="jsp-eval-"))
    import jax  # noqa: F401
    import jax.extend  # noqa: F401
    from jax._src.lax import linalg

    # XLA calls LAPACK kernels through custom calls that JAX registers when it lowers a linalg
    # op; a module compiled from text needs them too (without: a segfault at run time).
    linalg.initialize_lapack()


def _limit_cpu() -> None:
    """Allow this job ``ENV_CPU`` seconds of CPU time beyond what the process used so far
    (SIGXCPU, which ends the process, after that)."""
    seconds = float(os.environ.get(ENV_CPU, "0"))
    if seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


# --- MLIR ------------------------------------------------------------------------------------


class Parsed:
    """A StableHLO module parsed and verified: its ``main`` types and its text as MLIR prints it."""

    def __init__(self, text: str | bytes):
        from jax._src.interpreters import mlir
        from jaxlib.mlir import ir

        with mlir.make_ir_context():
            module = ir.Module.parse(text)
            if not module.operation.verify():
                raise ValueError("the module does not verify")
            main = None
            for op in module.body.operations:
                if "sym_name" in op.attributes and ir.StringAttr(op.attributes["sym_name"]).value == "main":
                    main = op
            if main is None:
                raise ValueError("the module has no main function")
            ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
            self.inputs = [str(t) for t in ftype.inputs]
            self.results = [str(t) for t in ftype.results]
            self.partitions = 1
            if "mhlo.num_partitions" in module.operation.attributes:
                self.partitions = ir.IntegerAttr(module.operation.attributes["mhlo.num_partitions"]).value
            # Up to renaming: MLIR names values itself when it prints, and the module's name
            # (from the function's) and locations are dropped.
            if "sym_name" in module.operation.attributes:
                del module.operation.attributes["sym_name"]
            self.normalized = module.operation.get_asm(enable_debug_info=False)

    @property
    def signature(self) -> tuple[list[str], list[str]]:
        return self.inputs, self.results

    @property
    def symbolic(self) -> bool:
        return any("?" in t for t in self.inputs + self.results)


# --- XLA -------------------------------------------------------------------------------------


def run_xla(program: str | bytes, inputs: list[Any]) -> list[Any]:
    """Compile a StableHLO module (text or bytecode) with XLA for one CPU device and run it."""
    import jax
    import jax.extend
    import numpy as np
    from jax._src.lib import xla_client

    backend = jax.extend.backend.get_backend()
    devices = xla_client.DeviceList(tuple(jax.devices()[:1]))
    executable = backend.compile_and_load(program, devices, xla_client.CompileOptions())
    out = executable.execute_sharded([jax.device_put(x) for x in inputs])
    return [np.asarray(shards[0]) for shards in out.disassemble_into_single_device_arrays()]


def hlo_program(text: str) -> bytes:
    """An (optimized) HLO module's text as StableHLO bytecode XLA compiles (``plain_hlo``)."""
    from jax._src.lib import xla_client

    module = xla_client.hlo.hlo_module_from_text(plain_hlo(text))
    return xla_client._xla.mlir.hlo_to_stablehlo(module.as_serialized_hlo_module_proto())


def inputs_for(row: Mapping[str, Any], main_inputs: list[str]) -> list[Any]:
    """The validator's example inputs for ``main``'s arguments.

    ``example_inputs`` over the row's ``input_signature`` (as the validator makes them; model
    rows as a model's inputs; typed PRNG keys as their key data, which ``main`` takes); ``jit``
    drops unused arguments from ``main``, so each argument of ``main`` takes the next signature
    entry of its type.
    """
    import jax

    from ...core.models import MODEL_CATEGORIES
    from ..validate.numerics import example_inputs, host_array, lowered_signature, signature_dtype

    given = [(tuple(s["shape"]), s["dtype"]) for s in row["input_signature"]]
    specs = [jax.ShapeDtypeStruct(shape, signature_dtype(dtype)) for shape, dtype in given]
    model = row.get("category") in MODEL_CATEGORIES
    made = example_inputs(row["python_source"], specs, nonnegative=model, fan_in_scaled=model)
    values = [host_array(x) for x in made]
    signature = [lowered_signature(shape, dtype) for shape, dtype in given]
    out, k = [], 0
    for t in main_inputs:
        want = tensor_spec(t)
        while k < len(signature) and signature[k] != want:
            k += 1
        if k == len(signature):
            raise ValueError(f"main argument {t} matches no input_signature entry left")
        out.append(values[k])
        k += 1
    return out


def compare_outputs(got: list[Any], want: list[Any], reference_ir: str) -> str | None:
    """``None`` if every output matches the reference within the validator's tolerances, else why not."""
    from ..validate.numerics import compare, tolerance_dtype

    if len(got) != len(want):
        return f"{len(got)} outputs, the reference has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        if str(g.dtype) != str(w.dtype):
            return f"output {k} is {g.dtype}, the reference's {w.dtype}"
        why = compare(g, w, tolerance_dtype(str(w.dtype), reference_ir))
        if why is not None:
            return f"output {k}: {why}"
    return None


# --- the reference, cached per row ------------------------------------------------------------

_parsed_references: dict[str, Parsed] = {}


def _reference(row: Mapping[str, Any]) -> Parsed:
    key = row["id"]
    if key not in _parsed_references:
        _parsed_references.clear()  # one row's at a time: jobs come ordered by row
        _parsed_references[key] = Parsed(row["stablehlo_ir"])
    return _parsed_references[key]


def reference_run(row: Mapping[str, Any], cache: Path, optimized: bool = False) -> dict[str, Any]:
    """The reference's inputs and outputs (``optimized``: its optimized HLO's outputs).

    Outputs are read from the cache folder, or computed once and written there, so samples,
    layers and workers share them; inputs are made again (a pure function of the row, and
    cheaper to make than to store).
    """
    ref = _reference(row)
    inputs = inputs_for(row, ref.inputs)
    path = cache / f"{row['id']}{'.hlo' if optimized else ''}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return {"inputs": inputs, "outputs": pickle.load(f)}
    outputs = run_xla(hlo_program(row["optimized_hlo"]) if optimized else row["stablehlo_ir"], inputs)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(outputs, f)
    os.replace(tmp, path)
    return {"inputs": inputs, "outputs": outputs}


# --- jobs ------------------------------------------------------------------------------------


def _layer(name: str, ok: bool, failure: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return {"layer": name, "ok": ok} | ({"failure": failure, "detail": detail} if not ok else {})


def _agrees(row: Mapping[str, Any], program: str | bytes, cache: Path, *, same_as_reference: bool) -> Iterator[dict]:
    """The ``agrees`` layer: the reference's outputs first (their own line), then the prediction's."""
    yield {"reference": "start"}  # a failure from here to "ok" is the reference's, not the answer's
    ref = reference_run(row, cache)
    yield {"reference": "ok"}
    if same_as_reference:
        yield _layer("agrees", True)
        return
    try:
        got = run_xla(program, ref["inputs"])
    except Exception as e:
        yield _layer("agrees", False, failure_class(e), _describe(e))
        return
    why = compare_outputs(got, ref["outputs"], row["stablehlo_ir"])
    yield _layer("agrees", why is None, WRONG_VALUES, why)


def score_forward(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Layers ``parses``, ``signature``, ``exact``, ``normalized``, ``agrees`` of a predicted StableHLO."""
    row, text, cache = job["row"], job["prediction"], Path(job["cache"])
    ref = _reference(row)
    try:
        parsed = Parsed(text)
    except Exception as e:
        yield _layer("parses", False, UNPARSEABLE, _describe(e))
        return
    yield _layer("parses", True)
    if parsed.signature != ref.signature:
        yield _layer("signature", False, WRONG_SIGNATURE, f"main {parsed.signature}, reference {ref.signature}")
        return
    yield _layer("signature", True)
    yield _layer("exact", text.strip() == row["stablehlo_ir"].strip(), DIFFERENT_TEXT)
    yield _layer("normalized", parsed.normalized == ref.normalized, DIFFERENT_TEXT)
    if job.get("agrees"):
        yield from _agrees(row, text, cache, same_as_reference=parsed.normalized == ref.normalized)


def score_optimize(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Layers ``parses``, ``exact``, ``agrees`` of a predicted optimized HLO module."""
    from jax._src.lib import xla_client

    row, text, cache = job["row"], job["prediction"], Path(job["cache"])
    try:
        xla_client.hlo.hlo_module_from_text(text)
    except Exception as e:
        yield _layer("parses", False, UNPARSEABLE, _describe(e))
        return
    yield _layer("parses", True)
    same = text.strip() == row["optimized_hlo"].strip()
    yield _layer("exact", same, DIFFERENT_TEXT)
    if not job.get("agrees"):
        return
    if same:
        yield from _agrees(row, text, cache, same_as_reference=True)
        return
    try:
        program = hlo_program(text)
        got_signature, want_signature = Parsed(program).signature, Parsed(hlo_program(row["optimized_hlo"])).signature
    except Exception as e:
        yield _layer("agrees", False, failure_class(e), _describe(e))
        return
    if got_signature != want_signature:
        yield _layer("agrees", False, WRONG_SIGNATURE, f"entry {got_signature}, reference {want_signature}")
        return
    yield from _agrees(row, program, cache, same_as_reference=False)


def score_reverse(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Layers ``runs``, ``exact``, ``agrees`` of a predicted Python module (executed here)."""
    from ...core.lowering import check_static_argnums, exec_source, lower_for, parse_lowering

    row, source, cache = job["row"], job["prediction"], Path(job["cache"])
    try:
        fn, example_args = exec_source(source, row["function_name"])
        args = example_args()
    except KeyError as e:
        yield _layer("runs", False, NO_DEFINITION, f"the module does not define {e}")
        return
    except BaseException as e:  # SystemExit too: a prediction calling sys.exit fails alone
        yield _layer("runs", False, failure_class(e), _describe(e))
        return
    if not callable(fn):
        yield _layer("runs", False, NO_DEFINITION, f"{row['function_name']} is not a function")
        return
    yield _layer("runs", True)
    try:
        # lowered as the row was: for its platform, with the static arguments its lowering column names
        how = parse_lowering(row.get("lowering") or "jit")
        ir = lower_for(fn, check_static_argnums(how.static_argnums, args), args, how.platform).as_text()
        parsed = Parsed(ir)
    except BaseException as e:
        why = failure_class(e)
        yield _layer("exact", False, why, f"does not lower: {_describe(e)}")
        if job.get("agrees"):
            yield _layer("agrees", False, why, f"does not lower: {_describe(e)}")
        return
    ref = _reference(row)
    yield _layer("exact", parsed.normalized == ref.normalized, DIFFERENT_TEXT)
    if not job.get("agrees"):
        return
    if parsed.signature != ref.signature:
        yield _layer("agrees", False, WRONG_SIGNATURE, f"main {parsed.signature}, reference {ref.signature}")
        return
    yield from _agrees(row, ir, cache, same_as_reference=ir == row["stablehlo_ir"])


def prepare_reference(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Compute (and cache) a row's reference outputs before any answer is scored, so which rows
    enter ``agrees`` does not depend on the answers; for ``optimize``, the row's own optimized
    HLO must also come back through XLA with the same values."""
    row, cache = job["row"], Path(job["cache"])
    yield {"reference": "start"}
    ref = reference_run(row, cache)
    if job.get("optimized"):
        try:
            own = reference_run(row, cache, optimized=True)
            why = compare_outputs(own["outputs"], ref["outputs"], row["stablehlo_ir"])
        except Exception as e:
            why = _describe(e)
        if why is not None:
            yield {"reference": "unusable", "detail": f"its optimized HLO does not recompile to its values: {why}"}
            return
    yield {"reference": "ok"}


SCORERS = {
    "forward": score_forward,
    "optimize": score_optimize,
    "reverse": score_reverse,
    "reference": prepare_reference,
}


def handle(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Score one answer: its layers, one line each, then ``{"done": true}``.

    Predicted Python may change JAX's global configuration (``jax_enable_x64``...), which would
    change how every later answer lowers: then ``done`` says ``restart`` and this process ends,
    so the next answer gets a fresh one.
    """
    import jax

    _limit_cpu()
    config = dict(jax.config.values)
    try:
        yield from SCORERS[job["task"]](job)
    except BaseException as e:  # the reference itself failing is the scorer's to report, not a wrong answer
        yield {"error": failure_class(e), "detail": _describe(e)}
    if dict(jax.config.values) != config:
        yield {"done": True, "restart": True}
        os._exit(0)  # runs once the parent has the line above
    yield {"done": True}


def main() -> None:
    from ...runtime.child import serve

    sys.setrecursionlimit(10_000)
    serve(handle, setup=_setup, ready=True)


if __name__ == "__main__":
    main()
