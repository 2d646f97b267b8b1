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
      dtype_weights: dtype of a new input -> relative weight. A program draws its float
        dtype once from the float entries (real code computes in one precision), so a new
        float input takes the program's float dtype when its op accepts it.
      rank_weights: rank of a new input -> relative weight.
      dim_weights: dimension size of a new input -> relative weight: the sizes real code
        uses (64 to 1024 beside small and odd ones).
      max_elements: largest array any value may hold (float16 programs: a sixteenth, so
        their sums stay inside float16's range).
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
        ("bfloat16", 0.15),
        ("float16", 0.05),
    )
    rank_weights: tuple[tuple[int, float], ...] = ((0, 0.1), (1, 0.3), (2, 0.4), (3, 0.2))
    dim_weights: tuple[tuple[int, float], ...] = (
        (1, 0.04),
        (2, 0.06),
        (3, 0.05),
        (4, 0.07),
        (5, 0.03),
        (7, 0.02),
        (8, 0.07),
        (10, 0.03),
        (16, 0.07),
        (32, 0.08),
        (64, 0.11),
        (100, 0.02),
        (128, 0.11),
        (256, 0.09),
        (384, 0.02),
        (512, 0.07),
        (768, 0.01),
        (1024, 0.05),
    )
    max_elements: int = 1 << 18
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

    def max_elements_for(self, float_dtype: str) -> int:
        """The element cap of a program computing in ``float_dtype``."""
        return self.max_elements // 16 if float_dtype == "float16" else self.max_elements

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
