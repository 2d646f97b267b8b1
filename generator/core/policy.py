"""The sampler's policy: every weight and limit as data, and the presets configs choose from."""

from __future__ import annotations

import random
from dataclasses import dataclass

INPUT_NAMES = ("x", "y", "z", "w", "u", "v")


@dataclass(frozen=True)
class Policy:
    """Every weight and limit the sampler uses, as data.

    Attributes:
      min_statements, max_statements: statements per program (uniform)...
      tail_probability, tail_max_statements: ...except with this probability, when it is
        uniform in ``max_statements..tail_max_statements`` (real code has a long tail).
      max_inputs: function arguments at most (``len(INPUT_NAMES)`` at most).
      dtype_weights: dtype of a new input -> relative weight.
      rank_weights: rank of a new input -> relative weight.
      dims: dimension sizes a new input draws from.
      max_elements: largest array any value may hold.
      glue_probability: chance a statement draws from the glue ops instead of the category's.
      max_outputs: returned values at most.
    """

    min_statements: int = 3
    max_statements: int = 10
    tail_probability: float = 0.25
    tail_max_statements: int = 40
    max_inputs: int = 4
    dtype_weights: tuple[tuple[str, float], ...] = (
        ("float32", 0.6),
        ("int32", 0.2),
        ("bfloat16", 0.1),
        ("float16", 0.1),
    )
    rank_weights: tuple[tuple[int, float], ...] = ((0, 0.1), (1, 0.3), (2, 0.4), (3, 0.2))
    dims: tuple[int, ...] = (1, 2, 3, 4, 5, 8, 16, 32)
    max_elements: int = 1 << 16
    glue_probability: float = 0.25
    max_outputs: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_statements <= self.max_statements:
            raise ValueError(
                f"need 1 <= min_statements <= max_statements, got {self.min_statements}, {self.max_statements}"
            )
        if self.tail_max_statements < self.max_statements or not 0 <= self.tail_probability <= 1:
            raise ValueError(
                f"need tail_max_statements >= max_statements and 0 <= tail_probability <= 1, got {self.tail_max_statements}, {self.tail_probability}"
            )
        if not 1 <= self.max_inputs <= len(INPUT_NAMES):
            raise ValueError(f"max_inputs must be in 1..{len(INPUT_NAMES)}, got {self.max_inputs}")

    def statement_count(self, rng: random.Random) -> int:
        if rng.random() < self.tail_probability:
            return rng.randint(self.max_statements, self.tail_max_statements)
        return rng.randint(self.min_statements, self.max_statements)


# Program size presets, selected by the builder config's ``program_size``.
POLICIES: dict[str, Policy] = {
    "small": Policy(min_statements=2, max_statements=5, tail_probability=0.0, tail_max_statements=5),
    "medium": Policy(),
    "large": Policy(min_statements=8, max_statements=24, tail_probability=0.3, tail_max_statements=60, max_inputs=6),
}
DEFAULT_POLICY = POLICIES["medium"]


def policy_for(program_size: str) -> Policy:
    """The preset policy called ``program_size`` (``ValueError`` naming the valid ones)."""
    if program_size not in POLICIES:
        raise ValueError(f"unknown program_size {program_size!r}; valid sizes: {', '.join(POLICIES)}")
    return POLICIES[program_size]
