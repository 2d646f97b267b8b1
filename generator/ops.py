"""The op table: every op the sampler can use, each declared once.

Adding an op is adding one entry to one of the tables below (``CORE_OPS`` in
``ops_core.py`` and so on); the sampler, renderer, statistics and tests pick it up from
``OPS``. ``opbase.py`` holds the ``Op`` entry and the families that make most entries a
single line.
"""

from __future__ import annotations

import random

from .opbase import GUARDS, Binding, LiteralNeed, Need, Op  # noqa: F401  (re-exported)
from .ops_autodiff import AUTODIFF_OPS
from .ops_batching import BATCHING_OPS
from .ops_bitwise import BITWISE_OPS
from .ops_control import CONTROL_OPS
from .ops_core import CORE_OPS
from .ops_devices import DEVICE_OPS
from .ops_dynamic import DYNAMIC_OPS, SYMBOL, SYMBOLIC_SIZE
from .ops_indexing import INDEXING_OPS
from .ops_linalg import LINALG_OPS
from .ops_nn import NN_OPS
from .ops_random import RANDOM_OPS
from .program import Literal
from .types import TensorType

CATEGORIES = (
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
# Categories whose inputs have a symbolic leading dimension: example size -> symbol.
SYMBOLIC_DIMS: dict[str, tuple[tuple[int, str], ...]] = {"dynamic_shapes": ((SYMBOLIC_SIZE, SYMBOL),)}

OPS: tuple[Op, ...] = (
    CORE_OPS
    + CONTROL_OPS
    + BATCHING_OPS
    + AUTODIFF_OPS
    + INDEXING_OPS
    + LINALG_OPS
    + RANDOM_OPS
    + NN_OPS
    + BITWISE_OPS
    + DYNAMIC_OPS
    + DEVICE_OPS
)

OPS_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
if len(OPS_BY_NAME) != len(OPS):
    raise RuntimeError("op names in OPS must be unique")
if stray := {c for op in OPS for c in op.categories} - set(CATEGORIES):
    raise RuntimeError(f"ops name categories that CATEGORIES lacks: {sorted(stray)}")


def ops_for(category: str) -> tuple[Op, ...]:
    """The ops a category draws from, in table order."""
    return tuple(op for op in OPS if category in op.categories)


def literal_operand(rng: random.Random, need: LiteralNeed, like: TensorType) -> Literal:
    return Literal(rng.choice(need.choices), like.with_shape(()))
