"""Running rows' code in a child process, one row at a time, under a time limit.

A row's ``python_source`` is code: re-lowering it, running it with XLA, and running its
``stablehlo_ir`` with IREE all execute it or what it produced. ``RowRunner`` does that in a
separate interpreter (``python -m generator.tools.validate.runner``), so a row that crashes,
hangs or explodes costs its own result and a restart of the child, never the validation run.
The child is not a sandbox: it runs with the caller's user, files and network, which is why
``validate`` asks for ``--trust-code`` before it runs code it did not generate itself.

Protocol over the pipes (``generator.runtime.child``): the child prints ``{"ready": ...}``
once it has imported JAX, then answers each request line (a JSON job) with one result line,
``{check: CheckOutcome.to_dict()}``.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from ...runtime.child import Child, child_env, serve
from .iree import EMPTY_MESH_NOTE, check_iree
from .numerics import XlaRun, example_inputs, host_array
from .outcome import CheckOutcome, Status

RUNNER_MODULE = "generator.tools.validate.runner"
# Pytree paths of state that is a variance or a second moment (optax's nu, Adafactor's v_row/v_col,
# BatchNorm's running variance): a model row's example values for them are made nonnegative.
NONNEGATIVE_STATE = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:nu|v|v_row|v_col|var|variance|running_var|batch_var)(?:[^A-Za-z0-9_]|$)"
)
STARTUP_TIMEOUT_S = 120.0


# --- the child -------------------------------------------------------------------------


def _signature_dim(d: Any) -> int:
    try:
        return int(d)
    except Exception:
        return -1


@dataclass
class _Done:
    """What one job's earlier checks left for the later ones."""

    lowered: Any = None  # the reproduce check's lowering, reused by the execute check
    run: XlaRun | None = None  # the execute check's run, as soon as XLA ran the function: the iree check's reference
    run_ir: str | None = None  # the IR the execute check ran (a model row's reduced-size IR)


@dataclass(frozen=True)
class _Loaded:
    """A row's function with its ``example_args()``, and how ``jax.jit`` takes them."""

    source: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    static: tuple[int, ...]

    @classmethod
    def of(cls, source: str, function_name: str, static: tuple[int, ...]) -> _Loaded:
        """The row's function and arguments; ``static``: the indices its ``lowering`` column records."""
        from ...core.lowering import check_static_argnums, load_source

        fn, args = load_source(source, function_name)
        return cls(source, fn, args, check_static_argnums(static, args))

    def lower(self, platform: str = "cpu") -> Any:
        """The row's recipe: ``jax.jit(fn, static_argnums=...).lower(*example_args())``, for ``platform``."""
        from ...core.lowering import lower_for

        return lower_for(self.fn, self.static, self.args, platform)

    def signature(self) -> list[dict[str, Any]]:
        from ...core.lowering import traced_leaves

        return [
            {"shape": [_signature_dim(d) for d in a.shape], "dtype": str(a.dtype)}
            for a in traced_leaves(self.args, self.static)
        ]

    def flat(self, *, model: bool) -> tuple[Callable[..., Any], list[Any]]:
        """The function over the traced arguments' array leaves, and concrete values of them
        (``model``: as a model's inputs, integers in [0, 4] and matrices scaled by fan-in).

        Static arguments are bound and pytrees rebuilt inside, so XLA and IREE (whose ``main``
        takes the leaves in this order) run on the same flat inputs.
        """
        import jax

        from ...core.lowering import is_array_like

        traced = [a for i, a in enumerate(self.args) if i not in self.static]
        with_paths, treedef = jax.tree_util.tree_flatten_with_path(traced)
        leaves = [leaf for _, leaf in with_paths]
        slots = [k for k, x in enumerate(leaves) if is_array_like(x)]
        inputs = example_inputs(self.source, [leaves[k] for k in slots], nonnegative=model, fan_in_scaled=model)
        if model:  # second moments and variances are never negative in a real optimizer or norm state
            inputs = [
                abs(x) if NONNEGATIVE_STATE.search(jax.tree_util.keystr(with_paths[k][0])) else x
                for k, x in zip(slots, inputs)
            ]

        def flat_fn(*xs):
            filled = list(leaves)
            for k, x in zip(slots, xs):
                filled[k] = x
            it = iter(jax.tree_util.tree_unflatten(treedef, filled))
            return self.fn(*(a if i in self.static else next(it) for i, a in enumerate(self.args)))

        return flat_fn, inputs


def _check_reproduce(job: Mapping[str, Any], row: _Loaded, done: _Done) -> CheckOutcome:
    """The row's own recipe, ``jax.jit(fn, static_argnums=<its lowering's>).lower(*example_args()).as_text()``,
    gives its IR."""
    from ...core.irtext import stablehlo_ops
    from ...core.lowering import JAX_VERSION

    signature = row.signature()
    if job.get("input_signature") is not None and signature != job["input_signature"]:
        return CheckOutcome.failed(f"example_args() gives {signature}, input_signature says {job['input_signature']}")
    from ...core.lowering import platform_of

    done.lowered = row.lower(platform_of(job.get("lowering") or "jit"))
    ir = done.lowered.as_text()
    if job.get("jax_version") == JAX_VERSION:
        if ir == job["stablehlo_ir"]:
            return CheckOutcome.passed()
        return CheckOutcome.failed("re-lowered IR differs from stablehlo_ir (same jax version)")
    if stablehlo_ops(ir) == stablehlo_ops(job["stablehlo_ir"]):
        return CheckOutcome.passed(note="op histogram")
    return CheckOutcome.failed(
        f"op histogram differs (row lowered by jax {job.get('jax_version')}, here {JAX_VERSION})"
    )


def _check_execute(job: Mapping[str, Any], row: _Loaded, done: _Done, *, reduced: bool = False) -> CheckOutcome:
    """XLA runs the function on example inputs; its outputs are finite (and match
    ``output_signature`` at the row's own size)."""
    import jax
    import numpy as np

    fn, inputs = row.flat(model=reduced)
    results = jax.tree_util.tree_leaves(jax.jit(fn)(*inputs))
    leaves = [host_array(x) for x in results]  # a typed key as its key data, as main returns it
    lowered = jax.jit(fn).lower(*inputs) if reduced or done.lowered is None else done.lowered
    done.run = XlaRun(fn=fn, inputs=inputs, outputs=leaves, kept=_kept_arguments(lowered))
    done.run_ir = lowered.as_text() if reduced else job["stablehlo_ir"]
    if not reduced:
        want = [(list(s["shape"]), s["dtype"]) for s in job.get("output_signature") or []]
        got = [(list(x.shape), str(x.dtype)) for x in results]
        # a symbolic (-1) dimension matches any size
        got = [
            ([-1 if w == -1 else g for g, w in zip(gs, ws)] if len(gs) == len(ws) else gs, gd)
            for (gs, gd), (ws, _) in zip(got, want)
        ] + got[len(want) :]
        if want and got != want:
            return CheckOutcome.failed(f"outputs {got} do not match output_signature {want}")
    for k, x in enumerate(leaves):
        if np.issubdtype(x.dtype, np.inexact) or x.dtype.name == "bfloat16":
            if not np.all(np.isfinite(x.astype(np.float64))):
                return CheckOutcome.failed(f"output {k} ({x.dtype}) has non-finite values on the example inputs")
    return CheckOutcome.passed(note=REDUCED_NOTE if reduced else None)


REDUCED_NOTE = "reduced size"


def _check_iree_frontend(ir: str) -> CheckOutcome | None:
    """IREE's input pipeline takes a model row's real-sized IR (``None``), or why not."""
    import iree.compiler

    from .iree import iree_compile, iree_compile_failure, iree_static_skip, without_empty_mesh

    ir = without_empty_mesh(ir) or ir  # typed keys' single-device constraints (as check_iree takes them out)
    skip = iree_static_skip(ir)  # a sharded model's Shardy IR, for one
    if skip is not None:
        return skip
    try:
        iree_compile(ir, "--compile-to=input")
    except iree.compiler.CompilerToolError as e:
        outcome = iree_compile_failure(ir, e)
        if outcome.status == Status.FAIL:
            return CheckOutcome.failed(f"IREE's frontend refused the real-sized IR: {outcome.detail or ''}")
        return outcome
    return None


def _kept_arguments(lowered: Any) -> list[int] | None:
    """Indices of the arguments the lowered ``main`` takes: jit drops unused ones from the IR."""
    try:
        return sorted(lowered._lowering.compile_args["kept_var_idx"])
    except (AttributeError, KeyError, TypeError):  # a private field; without it, assume all are kept
        return None


def run_job(job: Mapping[str, Any]) -> dict[str, CheckOutcome]:
    """The outcome of each of ``job["checks"]`` on the row in ``job`` (run in this process).

    A model row (its ``category`` one of ``MODEL_CATEGORIES``) is reproduced at its real size;
    it executes at reduced size (``reduce_source``: the same code with small config defaults),
    and IREE's frontend must take its real-sized IR before IREE runs the reduced one.
    """
    from ...core.lowering import HOST_PLATFORM, parse_lowering
    from ...core.models import MODEL_CATEGORIES, reduce_source

    model = job.get("category") in MODEL_CATEGORIES
    try:
        how = parse_lowering(job.get("lowering") or "jit")
    except ValueError as e:
        return {check: CheckOutcome.failed(str(e)) for check in job["checks"]}
    platform, static = how.platform, how.static_argnums
    try:
        row = _Loaded.of(job["python_source"], job["function_name"], static)
        small = _Loaded.of(reduce_source(job["python_source"]), job["function_name"], static) if model else row
    except Exception as e:
        why = CheckOutcome.failed(f"source does not run: {type(e).__name__}: {str(e)[:300]}")
        return {check: why for check in job["checks"]}
    result: dict[str, CheckOutcome] = {}
    done = _Done()
    for check in job["checks"]:
        try:
            if check != "reproduce" and platform != HOST_PLATFORM:
                # the IR calls the platform's own kernels (cusolver, TPU's): it runs only there
                result[check] = CheckOutcome.skipped(detail=f"lowered for {platform}: runs only on {platform}")
            elif check == "reproduce":
                result[check] = _check_reproduce(job, row, done)
            elif check == "execute":
                result[check] = _check_execute(job, small, done, reduced=model)
            elif check == "iree":
                refused = _check_iree_frontend(job["stablehlo_ir"]) if model else None
                if refused is not None:
                    result[check] = refused
                elif done.run is None:
                    result[check] = CheckOutcome.skipped(detail="needs a successful execute check")
                else:
                    outcome = check_iree(done.run_ir, done.run)
                    if done.run.dropped_arguments and outcome.note is None:  # a skip keeps its reason
                        outcome = outcome.with_note("unused arguments dropped from main")
                    if model and outcome.note in (None, EMPTY_MESH_NOTE) and outcome.status == Status.PASS:
                        outcome = outcome.with_note(REDUCED_NOTE)  # what model rows are counted by
                    result[check] = outcome
        except Exception as e:
            result[check] = CheckOutcome.failed(f"{type(e).__name__}: {str(e)[:300]}")
    return result


def _answer(job: dict[str, Any]) -> list[dict[str, dict[str, str]]]:
    return [{check: outcome.to_dict() for check, outcome in run_job(job).items()}]


def _setup() -> None:
    import jax  # noqa: F401  (import before "ready", so the time limit covers rows only)

    from ...core import lowering  # noqa: F401


# --- the parent ------------------------------------------------------------------------


class RowRunner:
    """Runs jobs in a child interpreter, restarting it after a crash or a time-out.

    Example:
      >>> with RowRunner(time_limit=60) as runner:
      ...     runner.run(row, ["reproduce", "execute"])
      {'reproduce': CheckOutcome(status=<Status.PASS: 'pass'>, ...), 'execute': CheckOutcome(...)}
    """

    def __init__(self, *, time_limit: float = 60.0, host_devices: int = 1) -> None:
        if not time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {time_limit!r}")
        self.time_limit = time_limit
        self.host_devices = host_devices
        self._child: Child | None = None
        self._stderr: IO[str] | None = None

    def __enter__(self) -> RowRunner:
        return self

    def __exit__(self, *exc: object) -> None:
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
        self._child = Child(RUNNER_MODULE, env, stderr=self._stderr)
        try:
            ready = self._child.receive(STARTUP_TIMEOUT_S)
        except TimeoutError as e:
            raise self._not_started() from e
        if not isinstance(ready, dict):  # None: the child exited before it was ready
            raise self._not_started()

    def _not_started(self) -> RuntimeError:
        return RuntimeError(f"the row runner did not start: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-3:])

    def run(self, row: Mapping[str, Any], checks: list[str]) -> dict[str, CheckOutcome]:
        """Outcomes of ``checks`` (``reproduce``, ``execute``, ``iree``) on one row."""
        if self._child is None or not self._child.alive:
            self.close()
            self._start()
        keys = (
            "category",
            "python_source",
            "function_name",
            "stablehlo_ir",
            "jax_version",
            "input_signature",
            "output_signature",
            "lowering",
        )
        job = {k: row.get(k) for k in keys} | {"checks": checks}
        start = time.monotonic()
        self._child.send(job)
        try:
            answer = self._child.receive(self.time_limit)
        except TimeoutError:
            why = f"cut off after the {self.time_limit:g} s time limit"
        else:
            if answer is not None:
                return {check: CheckOutcome.from_dict(outcome) for check, outcome in answer.items()}
            elapsed = time.monotonic() - start
            why = f"the runner died (exit {self._child.returncode}) after {elapsed:.1f} s: {self._stderr_tail()}"
        self.close()
        return {check: CheckOutcome.failed(why) for check in checks}


if __name__ == "__main__":
    serve(_answer, setup=_setup, ready=True)
