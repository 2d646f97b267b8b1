"""IR text helpers: op names, normalized and skeleton IR. Plain regular expressions, no JAX.

Text-only paths (``validate --structure-only``, ``stats PATH``) use these without importing JAX.
"""

from __future__ import annotations

import re
from collections import Counter

_OP_RE = re.compile(r"(?<![\w#!.{])((?:stablehlo|chlo)\.[a-z_0-9]+)")
_MODULE_RE = re.compile(r"^module @[\w.$-]+", re.MULTILINE)
# XLA prints the Python call stack of every op (file paths of this machine included) as
# tables after the module header and as stack_frame_id references: not part of the program.
_HLO_STACK_TABLES_RE = re.compile(r"\n\nFileNames\n.*?\n\nStackFrames\n(?:\d+ \{[^\n]*\}\n)*", re.DOTALL)
_HLO_FRAME_REF_RE = re.compile(r" stack_frame_id=\d+")


def stablehlo_ops(ir: str) -> Counter:
    """How often each ``stablehlo.*`` / ``chlo.*`` op name occurs in ``ir``."""
    return Counter(_OP_RE.findall(ir))


_SSA_RE = re.compile(r"%[\w.#-]+")
_DENSE_RE = re.compile(r"dense<[^>]*>")
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.x])")


def skeleton_ir(ir: str) -> str:
    """IR with SSA names and constants erased: equal skeletons mark near-duplicate programs.

    Shapes stay (``tensor<3x4xf32>`` keeps its digits), so the same computation on other
    shapes is not a near-duplicate; only names and constant values are ignored.
    """
    ir = _DENSE_RE.sub("dense<_>", _SSA_RE.sub("%_", normalize_ir(ir)))
    return _NUMBER_RE.sub("_", ir)


def normalize_ir(ir: str) -> str:
    """IR with the module name (taken from the Python function name) replaced."""
    return _MODULE_RE.sub("module @jit_fn", ir, count=1)


def strip_hlo_debug_info(hlo: str) -> str:
    """Optimized HLO without the Python stack tables and frame references XLA adds."""
    return _HLO_FRAME_REF_RE.sub("", _HLO_STACK_TABLES_RE.sub("\n", hlo, count=1))


def largest_constant(ir: str) -> int:
    """Characters of the longest ``dense<...>`` literal in ``ir`` (a 2,048x64 float32 table
    closed over as a NumPy array is a 1 MB literal; a splat ``dense<0.0>`` is a few)."""
    return max((len(m) for m in _DENSE_RE.findall(ir)), default=0)


_EMPTY_REDUCE_RE = re.compile(r"\bacross dimensions = \[\]")


def reductions_over_no_dimensions(ir: str) -> int:
    """How many ``stablehlo.reduce`` ops in ``ir`` reduce over no dimension at all: the
    reduction of a scalar (``jnp.sum`` of a loss), which computes nothing."""
    return len(_EMPTY_REDUCE_RE.findall(ir))
