"""Text-level helpers of the scorer: no JAX, no parsing with MLIR, nothing executed.

What needs jaxlib's MLIR bindings or XLA (parsing, normalizing, compiling a predicted module)
runs in a limited child process (``worker``); what is here is safe on any text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# MLIR element types as numpy/ml_dtypes names (what ``input_signature`` says).
MLIR_DTYPES = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i1": "bool",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "ui8": "uint8",
    "ui16": "uint16",
    "ui32": "uint32",
    "ui64": "uint64",
    "complex<f32>": "complex64",
    "complex<f64>": "complex128",
}
_TENSOR = re.compile(r"tensor<(?:((?:[0-9?]+x)*))([a-z0-9<>]+)>")


def tensor_spec(mlir_type: str) -> tuple[tuple[int, ...], str] | None:
    """``tensor<4x?xf32>`` -> ((4, -1), "float32"); ``None`` for anything else (tokens, tuples)."""
    m = _TENSOR.fullmatch(mlir_type.strip())
    if m is None or m.group(2) not in MLIR_DTYPES:
        return None
    dims = tuple(-1 if d == "?" else int(d) for d in m.group(1).split("x") if d)
    return dims, MLIR_DTYPES[m.group(2)]


# --- optimized HLO, made compilable again ------------------------------------------------

# After XLA's pipeline, HLO holds fusions whose backend configs the CPU emitter needs, layouts
# the StableHLO round trip does not carry, and layout-changing bitcasts. Turned back into plain
# HLO (a fusion into a call XLA inlines and fuses again, layouts dropped except on custom calls,
# whose LAPACK kernels depend on them, and a bitcast into the reshape or bitcast-convert it
# stands for), the text compiles as an unoptimized module would.
_FUSION = re.compile(r"\bfusion\((.*?)\), kind=k\w+, calls=(%?[\w.\-]+)")
_LAYOUT = re.compile(r"(\[[0-9,]*\])\{[^{}]*\}")
_DEFINITION = re.compile(r"^\s*(?:ROOT\s+)?(%?[\w.\-]+)\s*=\s*([a-z0-9]+)\[")
_BITCAST = re.compile(r"=\s*([a-z0-9]+)\[([^\]]*)\][^=]*?\bbitcast\((%?[\w.\-]+)\)")


def plain_hlo(text: str) -> str:
    """Optimized HLO text as an HLO module XLA compiles again (see the comment above)."""
    text = text.replace("is_scheduled=true, ", "")
    text = _FUSION.sub(r"call(\1), to_apply=\2", text)
    element_type = {}
    for line in text.splitlines():
        m = _DEFINITION.match(line)
        if m:
            element_type[m.group(1)] = m.group(2)
    lines = []
    for line in text.splitlines():
        if "custom-call(" not in line:
            line = _LAYOUT.sub(r"\1", line)
        m = _BITCAST.search(line)
        if m:
            op = "reshape(" if element_type.get(m.group(3)) == m.group(1) else "bitcast-convert("
            line = line[: m.start()] + m.group(0).replace("bitcast(", op) + line[m.end() :]
        lines.append(line)
    return "\n".join(lines)


# --- cost figures ---------------------------------------------------------------------------

COST_FIGURES = ("flops", "transcendentals", "bytes_accessed")
_COST_LINE = re.compile(
    r"^\s*(flops|transcendentals|bytes[ _]accessed)\s*[:=]\s*([-+0-9.eE]+|nan|inf)\s*$", re.IGNORECASE
)


def parse_cost_text(text: str) -> dict[str, float] | None:
    """The figures of a predicted cost text (``flops: 1024`` per line, as the cost view's
    completion), or ``None`` unless all three are there once, as finite numbers."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _COST_LINE.match(line)
        if not m:
            continue
        key = m.group(1).lower().replace(" ", "_")
        try:
            value = float(m.group(2))
        except ValueError:
            return None
        if key in found or not math.isfinite(value):
            return None
        found[key] = value
    return found if set(found) == set(COST_FIGURES) else None


def relative_error(predicted: float, reference: float) -> float:
    """``|p - r| / max(|r|, 1)``: relative, and defined for a reference of 0 (transcendentals)."""
    return abs(predicted - reference) / max(abs(reference), 1.0)


def reference_cost(row: Mapping[str, Any]) -> dict[str, float] | None:
    """A row's cost figures, or ``None`` if it has none (symbolic shapes)."""
    values = {k: row.get(k) for k in COST_FIGURES}
    return None if any(v is None for v in values.values()) else {k: float(v) for k, v in values.items()}
