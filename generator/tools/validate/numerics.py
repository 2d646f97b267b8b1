"""Example inputs for a row, and judging one compiler's outputs against another's.

numpy and JAX are imported inside the functions that need them: ``validate --structure-only``
imports this package without either.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: numpy is imported where it is used
    import numpy as np
    from numpy.typing import ArrayLike

SYMBOLIC_DIM_SIZE = 4  # the concrete size every symbolic dimension takes for execution

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

# Dtypes evaluated again in float32 for ``within_rounding_noise``.
LOW_PRECISION = ("float16", "bfloat16")
# Dtypes whose mismatches may be rounding noise of an ill-conditioned output (``within_rounding_noise``):
# float32 ones are judged against a float64 evaluation (a sum of 10^5 terms with cancellation
# differs between two float32 compilers by more than float32's tolerance).
NOISY = LOW_PRECISION + ("float32",)


# --- inputs --------------------------------------------------------------------------


def concrete_dim(d: Any, env: dict[str, int]) -> int:
    """A dimension's size for execution: its own, or (symbolic, ``jax.export``) an expression
    whose every symbol is ``SYMBOLIC_DIM_SIZE`` (recorded in ``env``)."""
    try:
        return int(d)
    except Exception:
        text = str(d)
        for name in re.findall(r"[A-Za-z_]\w*", text):
            env.setdefault(name, SYMBOLIC_DIM_SIZE)
        return int(eval(text, {"__builtins__": {}}, env))


def example_inputs(
    source: str, specs: Sequence[Any], *, nonnegative: bool = False, fan_in_scaled: bool = False
) -> list[np.ndarray]:
    """Concrete arrays for ``specs`` (``jax.ShapeDtypeStruct``s), a pure function of ``source``.

    Floats are uniform in [-1, 1) (with ``fan_in_scaled``, an array of rank 2 or more is
    divided by the square root of its fan-in, the product of all but its last dimension, as
    initialized weights are: a model's activations then stay in range over its layers),
    integers in [-4, 4] ([0, 4] unsigned, or all with ``nonnegative``), booleans fair coins:
    every op in the
    generator guards its own domain (``log(|x| + 1e-3)``...), and small magnitudes keep
    chained programs inside float16's range.
    """
    import numpy as np

    out = []
    env: dict[str, int] = {}
    for i, spec in enumerate(specs):
        seed = int.from_bytes(hashlib.sha256(f"{i}:{source}".encode()).digest()[:8], "big")
        shape = tuple(concrete_dim(d, env) for d in spec.shape)
        if is_key_dtype(spec.dtype):  # a typed PRNG key (jax.random.key): keys from the seed
            out.append(typed_keys(seed, shape, spec.dtype))
            continue
        rng = np.random.default_rng(seed)
        dtype = np.dtype(spec.dtype)
        if dtype == np.bool_:
            x = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.unsignedinteger) or (nonnegative and np.issubdtype(dtype, np.integer)):
            x = rng.integers(0, 5, size=shape)
        elif np.issubdtype(dtype, np.integer):
            x = rng.integers(-4, 5, size=shape)
        elif np.issubdtype(dtype, np.complexfloating):
            x = rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)
        else:
            x = rng.uniform(-1, 1, size=shape)
            if fan_in_scaled and len(shape) >= 2:
                x = x / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        out.append(np.asarray(x).astype(dtype))
    return out


def is_key_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a typed PRNG key's (``jax.random.key``), which NumPy cannot hold."""
    import jax

    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def typed_keys(seed: int, shape: tuple[int, ...], dtype: Any = None) -> Any:
    """Concrete typed PRNG keys of ``shape`` and key ``dtype`` (``key<fry>``, ``key<rbg>``...;
    ``None``: JAX's default implementation), a pure function of ``seed``."""
    import math

    import jax

    keys = jax.random.split(jax.random.key(seed % (1 << 32), dtype=dtype), max(1, math.prod(shape)))
    return keys[0] if shape == () else keys.reshape(shape)


def signature_dtype(name: str) -> Any:
    """A signature's dtype name as a dtype: a typed PRNG key's (``key<fry>``) as its key dtype
    (``jax.random.key_dtype("threefry2x32")``), any other as NumPy's (``float32``)."""
    from ...core.types import KEY_IMPLS

    if name in KEY_IMPLS:
        import jax

        return jax.random.key_dtype(KEY_IMPLS[name])
    import numpy as np

    return np.dtype(name)


def lowered_signature(shape: tuple[int, ...], dtype: str) -> tuple[tuple[int, ...], str]:
    """What a lowered ``main`` takes for a signature entry: the entry itself, or for typed PRNG
    keys their key data (``key<fry>`` of shape ``(8,)``: ``uint32`` of shape ``(8, 2)``)."""
    from ...core.types import KEY_IMPLS

    if dtype not in KEY_IMPLS:
        return shape, dtype
    import jax

    data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, signature_dtype(dtype)))
    return tuple(data.shape), str(data.dtype)


def host_array(x: Any) -> np.ndarray:
    """``x`` as a NumPy array; a typed PRNG key array as its key data (``jax.random.key_data``:
    uint32 with the implementation's trailing dimension), which is what a lowered ``main`` takes
    and returns for it and what IREE runs on."""
    import numpy as np

    dtype = getattr(x, "dtype", None)
    if dtype is not None and is_key_dtype(dtype):
        import jax

        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


# --- what XLA computed -----------------------------------------------------------------


@dataclass
class XlaRun:
    """The execute check's run of a row, which the iree check compares against.

    Attributes:
      fn: the row's function.
      inputs: its example inputs (``example_inputs``), one per argument (typed PRNG keys as
        JAX key arrays).
      outputs: XLA's outputs on them, as numpy arrays (the result's leaves; keys as their key
        data, ``host_array``).
      kept: indices of the arguments the lowered ``main`` takes (jit drops unused ones from
        the IR); ``None`` if unknown, then all are assumed kept.
    """

    fn: Callable[..., Any]
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    kept: list[int] | None = None

    @property
    def kept_inputs(self) -> list[np.ndarray]:
        """The inputs ``main`` takes, as it takes them (keys as their key data)."""
        kept = self.inputs if self.kept is None else [self.inputs[i] for i in self.kept]
        return [host_array(x) for x in kept]

    @property
    def dropped_arguments(self) -> bool:
        return self.kept is not None and len(self.kept) < len(self.inputs)

    @cached_property
    def wider_outputs(self) -> list[np.ndarray] | None:
        """The function's outputs from XLA on its inputs widened to float32, or ``None``.

        float16/bfloat16 inputs become float32, so every op the program does not pin to a dtype
        computes in float32: an evaluation more precise than the row's own.
        """
        import jax
        import numpy as np

        try:
            widened = [np.asarray(x, np.float32) if str(x.dtype) in LOW_PRECISION else x for x in self.inputs]
            return [host_array(x) for x in jax.tree_util.tree_leaves(jax.jit(self.fn)(*widened))]
        except Exception:  # a program whose ops need the narrow dtype (bitcasts...) has no wider twin
            return None

    @cached_property
    def float64_outputs(self) -> list[np.ndarray] | None:
        """The function's outputs from XLA with 64-bit floats enabled and float32 inputs widened
        to float64: every op the program does not pin to float32 computes in float64. ``None``
        if the program has no such twin."""
        import jax
        import numpy as np

        try:
            widened = [np.asarray(x, np.float64) if x.dtype == np.float32 else x for x in self.inputs]
            with jax.enable_x64(True):
                return [host_array(x) for x in jax.tree_util.tree_leaves(jax.jit(self.fn)(*widened))]
        except Exception:
            return None

    def wider_reference(self, k: int, dtype: str = "float16") -> np.ndarray | None:
        """Output ``k`` evaluated more precisely than ``dtype`` (float16/bfloat16: ``wider_outputs``;
        float32: ``float64_outputs``), or ``None`` if there is none of output ``k``'s shape."""
        import numpy as np

        outputs = self.float64_outputs if dtype == "float32" else self.wider_outputs
        if outputs is None or k >= len(outputs) or outputs[k].shape != np.asarray(self.outputs[k]).shape:
            return None
        return outputs[k]


# --- comparing -------------------------------------------------------------------------

_IR_FLOAT = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
_IR_FLOAT_RE = re.compile(r"tensor<(?:[0-9?]+x)*(bf16|f16|f32)>")


def tolerance_dtype(out_dtype: str, ir: str) -> str:
    """The dtype whose tolerance applies to an output: its own, or the loosest float the IR
    computes in, since a float32 result of bfloat16 intermediates carries bfloat16 error."""
    if out_dtype not in TOLERANCES:
        return out_dtype
    used = {_IR_FLOAT[m] for m in _IR_FLOAT_RE.findall(ir)} | {out_dtype}
    return max(used, key=lambda d: TOLERANCES[d][0])


def compare(got: ArrayLike, want: ArrayLike, dtype: str) -> str | None:
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


def within_rounding_noise(got: ArrayLike, want: ArrayLike, reference: ArrayLike | None, dtype: str) -> str | None:
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
    wider = "float64" if dtype == "float32" else "float32"
    return f"max error against {wider}: XLA {xla_error:.3g}, IREE {iree_error:.3g} ({dtype})"


# A float32 sum of n terms added one after another (as IREE's CPU code does) is off by up to
# about n * 2^-24 of the terms' magnitude: at 10^5 terms, about 1% where XLA's tree-shaped sums
# are far closer. The share of an output's scale such an order may cost.
SUMMATION_SHARE = 1e-2


def within_summation_error(got: ArrayLike, reference: ArrayLike | None, ir: str) -> str | None:
    """Why IREE's float32 ``got`` is a correct result of a program with large reductions, or ``None``.

    ``reference`` is a float64 evaluation of the program. If the IR reduces (``stablehlo.reduce``)
    and IREE is within ``SUMMATION_SHARE`` of the output's scale from the reference, IREE's
    result differs only by the order its reductions add in; otherwise ``None``.
    """
    import numpy as np

    if reference is None or "stablehlo.reduce" not in ir:
        return None
    g, r = np.asarray(got).astype(np.float64), np.asarray(reference).astype(np.float64)
    if g.shape != r.shape or (np.isfinite(g) != np.isfinite(r)).any():
        return None
    finite = np.isfinite(r)
    if not finite.any():
        return None
    scale = max(1.0, float(np.max(np.abs(r[finite]))))
    error = float(np.max(np.abs(g - r)[finite]))
    if error > SUMMATION_SHARE * scale:
        return None
    return f"max error against float64: IREE {error:.3g} of scale {scale:.3g} (float32 reductions)"
