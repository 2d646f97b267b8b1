"""A sampled program as data: typed inputs, statements and outputs, no text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from .types import TensorType

if TYPE_CHECKING:
    from .ops import Op


@dataclass(frozen=True)
class Value:
    """A named array value: a function input or a statement's result."""

    name: str
    type: TensorType


@dataclass(frozen=True)
class Literal:
    """A Python scalar written inline (weakly typed: it takes the other operand's dtype)."""

    text: str
    type: TensorType


Operand = Union[Value, Literal]


@dataclass(frozen=True)
class Statement:
    """``result = op(operands, **params)``."""

    op: Op
    operands: tuple[Operand, ...]
    params: tuple[tuple[str, Any], ...]
    result: Value

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Program:
    """A typed program: everything the renderer needs, nothing random left to draw.

    ``symbolic_dims`` maps an example size to the symbol that stands for it: a leading
    input dimension of that size is written symbolically in ``example_args()``.
    ``docstring`` and ``type_hints`` say whether the rendered function has them (drawn by the
    sampler, written by the renderer).
    """

    category: str
    function_name: str
    inputs: tuple[Value, ...]
    statements: tuple[Statement, ...]
    outputs: tuple[Value, ...]
    symbolic_dims: tuple[tuple[int, str], ...] = ()
    docstring: bool = False
    type_hints: bool = False

    @property
    def host_devices(self) -> int:
        """Devices the program needs to lower (more than one for shard_map programs)."""
        return max((s.op.devices for s in self.statements), default=1)

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(s.op.name for s in self.statements)
