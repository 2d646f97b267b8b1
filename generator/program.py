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
    """A typed program: everything the renderer needs, nothing random left to draw."""

    category: str
    function_name: str
    inputs: tuple[Value, ...]
    statements: tuple[Statement, ...]
    outputs: tuple[Value, ...]

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(s.op.name for s in self.statements)
