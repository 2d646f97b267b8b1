"""The op registry: every op the sampler can use, each declared once, one module per category.

Adding an op is adding one entry to its category's ``OPS`` table (``arithmetic.py`` and so
on); the sampler, renderer, statistics and tests pick it up from ``OPS``. ``base.py`` holds
the ``Op`` entry and the families that make most entries a single line. An op may belong to
several categories (``add`` is arithmetic and broadcasting); it lives in the module of the
first.
"""

from __future__ import annotations

from . import (
    arithmetic,
    autodiff,
    batching,
    bitwise,
    broadcasting,
    composite,
    conditional,
    control_flow,
    dynamic_shapes,
    elementwise,
    indexing,
    linalg,
    matrix,
    multi_device,
    nn,
    random,
    reduction,
)
from .base import GUARDS, Binding, LiteralNeed, Need, Op
from .dynamic_shapes import SYMBOL, SYMBOLIC_SIZE
from .merges import CATEGORY_MERGES, GENERIC_MERGES, MERGES, Merge

# The order categories are listed in (a balanced build's round-robin order).
CATEGORIES: tuple[str, ...] = (
    "arithmetic",
    "conditional",
    "reduction",
    "matrix",
    "elementwise",
    "broadcasting",
    "composite",
    "control_flow",
    "batching",
    "autodiff",
    "indexing",
    "linalg",
    "random",
    "nn",
    "bitwise",
    "dynamic_shapes",
    "multi_device",
)
# The order op tables are read in: sampling draws from a category's ops in this order.
TABLES = (
    arithmetic,
    elementwise,
    reduction,
    matrix,
    broadcasting,
    conditional,
    composite,
    control_flow,
    batching,
    autodiff,
    indexing,
    linalg,
    random,
    nn,
    bitwise,
    dynamic_shapes,
    multi_device,
)
# Categories whose inputs have a symbolic leading dimension: example size -> symbol.
SYMBOLIC_DIMS: dict[str, tuple[tuple[int, str], ...]] = {"dynamic_shapes": ((SYMBOLIC_SIZE, SYMBOL),)}

OPS: tuple[Op, ...] = tuple(op for table in TABLES for op in table.OPS)

OPS_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
if len(OPS_BY_NAME) != len(OPS):
    raise RuntimeError("op names in OPS must be unique")
if sorted(table.CATEGORY for table in TABLES) != sorted(CATEGORIES):
    raise RuntimeError("every category needs exactly one op table module")
if stray := {c for op in OPS for c in op.categories} - set(CATEGORIES):
    raise RuntimeError(f"ops name categories that CATEGORIES lacks: {sorted(stray)}")
if misplaced := [op.name for table in TABLES for op in table.OPS if op.categories[0] != table.CATEGORY]:
    raise RuntimeError(f"ops whose first category is not their module's: {misplaced}")
if sorted(CATEGORY_MERGES) != sorted(CATEGORIES):
    raise RuntimeError("every category needs its closing merges in merges.CATEGORY_MERGES")
if len({m.name for m in MERGES}) != len(MERGES) or {m.name for m in MERGES} & set(OPS_BY_NAME):
    raise RuntimeError("merge names must be unique and no op's")
if clashes := {m.hint for m in MERGES} & set(OPS_BY_NAME):
    raise RuntimeError(f"merge results would be named like ops: {sorted(clashes)}")


def ops_for(category: str) -> tuple[Op, ...]:
    """The ops a category draws from, in table order."""
    return tuple(op for op in OPS if category in op.categories)


__all__ = [
    "CATEGORIES",
    "CATEGORY_MERGES",
    "GENERIC_MERGES",
    "GUARDS",
    "MERGES",
    "OPS",
    "OPS_BY_NAME",
    "SYMBOLIC_DIMS",
    "Binding",
    "LiteralNeed",
    "Merge",
    "Need",
    "Op",
    "ops_for",
]
