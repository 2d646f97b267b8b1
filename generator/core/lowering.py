"""Lowering: Python source (or any callable) -> StableHLO text and cost figures.

This is the only module that lowers with JAX. It never compiles on the default path:
``jax.jit(fn).lower(*specs)`` gives the StableHLO text and ``Lowered.cost_analysis()``
the cost figures without an XLA compile.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from .irtext import stablehlo_ops, strip_hlo_debug_info
from .plan import (  # noqa: F401 (the lowering column's names, here too)
    HOST_PLATFORM,
    PLATFORMS,
    Lowering,
    lowering_method,
    parse_lowering,
)

JAX_VERSION = jax.__version__
JAXLIB_VERSION = jaxlib.__version__


@dataclass(frozen=True)
class IRPair:
    """A Python function with the StableHLO text JAX lowers it to.

    Attributes:
      function_name: the function's ``__name__`` (or a placeholder for lambdas).
      python_source: the function's source, or ``None`` if Python cannot find it.
      stablehlo_ir: ``Lowered.as_text()`` of ``jax.jit(fn).lower(*args)``.
      cost_analysis: XLA's cost figures: ``flops``, ``transcendentals``, ``bytes accessed``.
      input_signature: ``(shape, dtype)`` of each array argument.
      output_signature: ``(shape, dtype)`` of each output leaf.
      optimized_hlo: XLA's optimized HLO after compilation (only with ``optimize=True``).
      compiled_cost_analysis: cost figures of the compiled executable (only with ``optimize=True``).
      static_argnums: indices of the arguments ``jax.jit`` took as static.
    """

    function_name: str
    python_source: str | None
    stablehlo_ir: str
    cost_analysis: dict[str, float] = field(default_factory=dict)
    input_signature: tuple[tuple[tuple[int, ...], str], ...] = ()
    output_signature: tuple[tuple[tuple[int, ...], str], ...] = ()
    optimized_hlo: str | None = None
    compiled_cost_analysis: dict[str, float] | None = None
    static_argnums: tuple[int, ...] = ()

    @property
    def stablehlo_ops(self) -> Counter:
        return stablehlo_ops(self.stablehlo_ir)


@dataclass(frozen=True)
class GradPair:
    """Forward and backward (gradient) pairs of one function.

    It unpacks as the original design's ``fwd_pair, bwd_pair = extract_with_grad(fn, x)``.
    """

    forward: IRPair
    backward: IRPair

    def __iter__(self) -> Iterator[IRPair]:
        yield self.forward
        yield self.backward


def is_array_like(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, (np.generic, type))


_SCALAR_TYPES = (bool, int, float, complex, np.generic)


def static_argnums(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Which arguments ``jax.jit`` takes as static, the way real JAX code passes them.

    Traced: arrays and ``jax.ShapeDtypeStruct``s, and pytrees holding any (parameter dicts,
    optimizer states, Flax NNX ``State``, Equinox partitions), or holding nothing at all
    (``optax.EmptyState()``). Static: hashable values without arrays (ints, strings, shape
    tuples, config dataclasses, Flax ``GraphDef``s). An unhashable value without arrays is
    traced if its leaves are numbers (a dict of Python scalars), else refused.
    """
    static = []
    for i, a in enumerate(args):
        if is_array_like(a):
            continue
        leaves = jax.tree_util.tree_leaves(a)
        if not leaves or any(is_array_like(leaf) for leaf in leaves):
            continue
        try:
            hash(a)
        except TypeError:
            if all(isinstance(leaf, _SCALAR_TYPES) for leaf in leaves):
                continue
            raise ValueError(
                f"argument {i} ({type(a).__name__}) is neither traceable nor hashable: pass arrays, "
                "jax.ShapeDtypeStructs or pytrees of them (traced), or hashable values such as ints, "
                "strings and frozen dataclasses (static)"
            ) from None
        static.append(i)
    return tuple(static)


_static_rule = static_argnums  # for the functions whose ``static_argnums`` parameter shadows it


def traced_leaves(args: tuple[Any, ...], static: tuple[int, ...]) -> list[Any]:
    """The array leaves of the traced arguments, in argument order."""
    leaves = jax.tree_util.tree_leaves([a for i, a in enumerate(args) if i not in static])
    return [leaf for leaf in leaves if is_array_like(leaf)]


def _dim(d) -> int:
    """A dimension as an int; -1 for a symbolic one (``jax.export.symbolic_shape``)."""
    return -1 if jax.export.is_symbolic_dim(d) else int(d)


def dtype_name(dtype: Any) -> str:
    """A leaf's dtype as the signatures write it: NumPy's name, or JAX's for a typed PRNG key
    (``jax.random.key``: ``key<fry>``), which NumPy cannot interpret."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return str(dtype)
    return str(np.dtype(dtype))


def _signature(leaves) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(_dim(d) for d in x.shape), dtype_name(x.dtype)) for x in leaves)


def _source_of(fn: Callable) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None


def _cost(lowered) -> dict[str, float]:
    try:
        cost = lowered.cost_analysis() or {}
    except jax.errors.JaxRuntimeError:  # XLA cannot analyze dynamic-shape modules: no figures
        return {}
    if isinstance(cost, list):  # older jax returned one dict per computation
        cost = cost[0] if cost else {}
    if not cost:
        return {}
    # XLA leaves out the properties that are zero (a program of only reshapes has no "flops").
    return {k: float(cost.get(k, 0.0)) for k in ("flops", "transcendentals", "bytes accessed")}


def check_platform(platform: str) -> str:
    """``platform`` if JAX can lower for it here, else a ``ValueError`` naming the valid ones."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; valid platforms: {', '.join(PLATFORMS)}")
    return platform


def lower_for(fn: Callable, static: tuple[int, ...], args: tuple[Any, ...], platform: str = HOST_PLATFORM) -> Any:
    """``jax.jit(fn, static_argnums=static).lower(*args)``, for ``platform`` (another platform needs
    no hardware: ``.trace(*args).lower(lowering_platforms=(platform,))``)."""
    jitted = jax.jit(fn, static_argnums=static)
    if platform == HOST_PLATFORM:
        return jitted.lower(*args)
    return jitted.trace(*args).lower(lowering_platforms=(platform,))


def check_static_argnums(static_argnums: Sequence[int], args: tuple[Any, ...]) -> tuple[int, ...]:
    """``static_argnums`` as a tuple if each is the index of an argument in ``args``, else a ``ValueError``."""
    static = tuple(static_argnums)
    bad = [i for i in static if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(args)]
    if bad or len(set(static)) != len(static):
        raise ValueError(
            f"static_argnums {static!r} must be distinct indices of the {len(args)} arguments (0 to {len(args) - 1})"
        )
    return tuple(sorted(static))


def extract_ir(
    fn: Callable,
    *args: Any,
    python_source: str | None = None,
    optimize: bool = False,
    platform: str = HOST_PLATFORM,
    static_argnums: Sequence[int] | None = None,
) -> IRPair:
    """Lower ``fn`` on ``args`` and return the (source, StableHLO) pair.

    Args:
      fn: any Python callable JAX can trace, e.g. ``jax.nn.softmax``.
      *args: as real JAX code passes them: arrays, ``jax.ShapeDtypeStruct``s and pytrees of
        them (parameter dicts, optimizer states, Flax NNX ``State``, Equinox partitions) are
        traced; hashable values without arrays (ints, strings, config dataclasses) are static.
      python_source: the source text to record; by default ``inspect.getsource(fn)``.
      optimize: also compile with XLA and record the optimized HLO and its cost analysis
        (a compile costs several lowerings, so it is off by default; the host platform only).
      platform: the platform to lower for: ``"cpu"`` (this machine), or ``"cuda"``, ``"rocm"``
        or ``"tpu"``, lowered without their hardware (``lowering_platforms``); the IR then uses
        that platform's custom calls and lowering rules, and XLA's cost model still costs it.
      static_argnums: the arguments ``jax.jit`` takes as static (as a row's ``lowering`` column
        records them); by default the rule of ``*args`` above (``static_argnums(args)``).

    Returns:
      An ``IRPair``; its ``stablehlo_ir`` equals ``jax.jit(fn, static_argnums=...)
      .lower(*args).as_text()`` with the static arguments above (its ``static_argnums``), and
      its ``input_signature`` lists the traced arguments' array leaves in order.

    Raises:
      ValueError: an argument is neither traceable nor hashable (named by its index); a
        ``static_argnums`` that is not a set of argument indices; an unknown platform;
        ``optimize`` for a platform this machine cannot compile for.
    """
    check_platform(platform)
    if optimize and platform != HOST_PLATFORM:
        raise ValueError(
            f"optimize needs the platform's compiler: {platform!r} cannot be compiled here (only {HOST_PLATFORM!r})"
        )
    static = _static_rule(args) if static_argnums is None else check_static_argnums(static_argnums, args)
    lowered = lower_for(fn, static, args, platform)
    signature = _signature(traced_leaves(args, static))
    # XLA neither compiles nor meaningfully costs a module with symbolic dimensions (it counts
    # them as 1), so such programs get no cost figures and no optimized HLO.
    static_shapes = all(d >= 0 for shape, _ in signature for d in shape)
    optimized_hlo = compiled_cost = None
    if optimize and static_shapes:
        compiled = lowered.compile()
        optimized_hlo, compiled_cost = strip_hlo_debug_info(compiled.as_text()), _cost(compiled)
    return IRPair(
        function_name=getattr(fn, "__name__", "<lambda>"),
        python_source=python_source if python_source is not None else _source_of(fn),
        stablehlo_ir=lowered.as_text(),
        cost_analysis=_cost(lowered) if static_shapes else {},
        input_signature=signature,
        output_signature=_signature(jax.tree_util.tree_leaves(lowered.out_info)),
        optimized_hlo=optimized_hlo,
        compiled_cost_analysis=compiled_cost,
        static_argnums=static,
    )


def extract_with_grad(fn: Callable, *args: Any) -> GradPair:
    """Forward pair of ``fn`` and the pair of its gradient.

    The backward function is ``jax.grad`` of the sum of ``fn``'s (real part of its) outputs
    with respect to every traced argument whose array leaves are all floating-point (an array,
    or a pytree of parameters).
    """
    forward = extract_ir(fn, *args)
    static = forward.static_argnums

    def differentiable(a: Any) -> bool:
        leaves = traced_leaves((a,), ())
        return bool(leaves) and all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves)

    argnums = tuple(i for i, a in enumerate(args) if i not in static and differentiable(a))
    if not argnums:
        raise ValueError("extract_with_grad needs at least one floating-point array (or pytree of them) argument")

    def objective(*xs):
        leaves = jax.tree_util.tree_leaves(fn(*xs))
        return sum(jnp.sum(jnp.real(leaf)).astype(jnp.float32) for leaf in leaves)

    grad_fn = jax.grad(objective, argnums=argnums)
    grad_fn.__name__ = f"grad_{forward.function_name}"
    lowered = jax.jit(grad_fn, static_argnums=static).lower(*args)
    backward = IRPair(
        function_name=grad_fn.__name__,
        python_source=(
            f"{forward.python_source or ''}\n"
            f"def objective(*xs):\n"
            f"    return sum(jnp.sum(jnp.real(o)).astype(jnp.float32) for o in jax.tree_util.tree_leaves({forward.function_name}(*xs)))\n\n"
            f"{grad_fn.__name__} = jax.grad(objective, argnums={argnums!r})\n"
        ),
        stablehlo_ir=lowered.as_text(),
        cost_analysis=_cost(lowered),
        input_signature=forward.input_signature,
        output_signature=_signature(jax.tree_util.tree_leaves(lowered.out_info)),
        static_argnums=static,
    )
    return GradPair(forward, backward)


ROW_MODULE = "jax_stablehlo_pairs_row"


@contextmanager
def _as_row_module(module: types.ModuleType) -> Iterator[None]:
    """``module`` registered in ``sys.modules`` as ``ROW_MODULE`` (whatever was there is restored)."""
    previous = sys.modules.get(ROW_MODULE)
    sys.modules[ROW_MODULE] = module
    try:
        yield
    finally:
        if previous is None:
            sys.modules.pop(ROW_MODULE, None)
        else:
            sys.modules[ROW_MODULE] = previous


def exec_source(source: str, function_name: str) -> tuple[Callable, Callable[[], tuple]]:
    """Execute a row's self-contained source; return its function and its ``example_args`` (a
    callable returning the arguments as a tuple), not yet called.

    The source runs as a module of its own: under its own ``__future__`` imports (not this
    module's), and registered in ``sys.modules`` while it runs and while ``example_args`` runs,
    since ``dataclasses`` (and libraries built on it: Flax NNX, Equinox) look up a class's
    module as it is defined.

    Executing a source is Python's work (compiling it, creating its classes); calling
    ``example_args()`` is JAX's for model sources (``jax.eval_shape`` of the model's init, which
    traces it). The benchmark executes sources outside its timers and calls ``example_args``
    inside them.
    """
    module = types.ModuleType(ROW_MODULE)
    with _as_row_module(module):
        exec(compile(source, f"<{function_name}>", "exec", dont_inherit=True), module.__dict__)
    fn = module.__dict__[function_name]

    def example_args() -> tuple:
        with _as_row_module(module):
            return tuple(module.__dict__["example_args"]())

    return fn, example_args


def load_source(source: str, function_name: str) -> tuple[Callable, tuple]:
    """Execute a row's self-contained source; return its function and ``example_args()``
    (``exec_source``, then its ``example_args`` called)."""
    fn, example_args = exec_source(source, function_name)
    return fn, example_args()


@contextmanager
def one_traceback() -> Iterator[None]:
    """Trace under one Python traceback, taken here, instead of one per equation.

    JAX records the Python stack of every equation it traces (``source_info_util.current()``),
    for MLIR locations and error messages, at a cost that grows with the caller's stack depth
    (a build's workers run deep under ``datasets``). A row's IR text has no locations and XLA's
    cost analysis does not read them, so one traceback for a whole program changes no row, and
    saves about 15% of a model row's CPU in process (measured). Errors raised while tracing
    point at the caller of this block instead of the program's line; rows never record them.
    """
    from jax._src import source_info_util
    from jax._src.lib import xla_client

    with source_info_util.user_context(
        xla_client.Traceback.get_traceback(), name_stack=source_info_util.current_name_stack()
    ):
        yield


def lower_source(
    source: str,
    function_name: str,
    *,
    optimize: bool = False,
    platform: str = HOST_PLATFORM,
    static_argnums: Sequence[int] | None = None,
) -> IRPair:
    """Lower a row's source as the dataset documents: ``jax.jit(fn, static_argnums=...)
    .lower(*example_args())`` (for ``platform``: ``.trace(*example_args()).lower(lowering_platforms=(platform,))``).

    ``static_argnums``: as the row's ``lowering`` column records them; ``None`` (a new row):
    decided by ``extract_ir``'s rule. Traced under ``one_traceback``.
    """
    with one_traceback():
        fn, args = load_source(source, function_name)
        return extract_ir(
            fn, *args, python_source=source, optimize=optimize, platform=platform, static_argnums=static_argnums
        )


def host_devices(lowering: str) -> int:
    """The host CPU devices a row's lowering needs (``parse_lowering``)."""
    return parse_lowering(lowering).host_devices


def platform_of(lowering: str) -> str:
    """The platform a row was lowered for (``parse_lowering``)."""
    return parse_lowering(lowering).platform
