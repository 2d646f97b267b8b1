"""Sampling typed programs: ops from the table, operands by type, one seeded random source.

The sampler builds a ``Program`` (values with shapes and dtypes) and never text. All
randomness comes from the ``random.Random`` passed in, so a program is a pure function of
its seed, category and policy.
"""

from __future__ import annotations

import keyword
import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Reject
from .ops import CATEGORIES, SYMBOLIC_DIMS, LiteralNeed, Op, literal_operand, ops_for
from .program import Literal, Operand, Program, Statement, Value
from .types import TensorType

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


# Ops any category may mix in between its own, as real code does.
GLUE_OPS: tuple[Op, ...] = tuple(dict.fromkeys(ops_for("arithmetic") + ops_for("elementwise")))


def _weighted(rng: random.Random, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


class _ProgramBuilder:
    """Mutable state while one program is sampled."""

    def __init__(self, rng: random.Random, policy: Policy):
        self.rng = rng
        self.policy = policy
        self.inputs: list[Value] = []
        self.statements: list[Statement] = []
        self.values: list[Value] = []
        self.uses: dict[str, int] = {}
        self.hint_counts: dict[str, int] = {}

    # -- values --------------------------------------------------------------------
    def new_input(self, t: TensorType) -> Value:
        if len(self.inputs) >= self.policy.max_inputs:
            raise Reject("input budget spent")
        v = Value(INPUT_NAMES[len(self.inputs)], t)
        self.inputs.append(v)
        self.values.append(v)
        return v

    def random_type(self, op: Op) -> TensorType:
        t = op.new_input(self.rng) if op.new_input is not None else self._policy_type(op)
        if not op.accepts(t):
            raise Reject(f"{op.name} does not accept {t.spec()}")
        return t

    def _policy_type(self, op: Op) -> TensorType:
        dtypes = [(d, w) for d, w in self.policy.dtype_weights if d in op.dtypes]
        if not dtypes:  # a dtype the policy never draws for inputs, e.g. a bool mask argument
            dtypes = [(d, 1.0) for d in op.dtypes]
        ranks = [(r, w) for r, w in self.policy.rank_weights if op.min_rank <= r <= op.max_rank]
        if not ranks:
            raise Reject(f"{op.name} needs a rank the policy does not sample")
        dtype = _weighted(self.rng, [d for d, _ in dtypes], [w for _, w in dtypes])
        rank = _weighted(self.rng, [r for r, _ in ranks], [w for _, w in ranks])
        shape = tuple(self.rng.choice(self.policy.dims) for _ in range(rank))
        return TensorType(shape, dtype)

    def pick(self, accept: Callable[[TensorType], bool], exclude: tuple[Operand, ...] = ()) -> Value | None:
        n = len(self.values)
        candidates, weights = [], []
        for i, v in enumerate(self.values):
            if not accept(v.type) or v in exclude:
                continue
            # Unused results first, so that few statements are dead; then recent values,
            # because real code flows forward.
            unused = not self.uses.get(v.name)
            w = (6.0 if v not in self.inputs else 3.0) if unused else 1.0
            candidates.append(v)
            weights.append(w + 2.0 * (i + 1) / n)
        return _weighted(self.rng, candidates, weights) if candidates else None

    def operand_for(self, need: TensorType, taken: tuple[Operand, ...]) -> Value:
        """An existing value of type ``need`` (another one than ``taken`` if possible) or a new input."""
        found = self.pick(lambda t: t == need, exclude=taken)
        if found is not None:
            return found
        if len(self.inputs) < self.policy.max_inputs:
            return self.new_input(need)
        found = self.pick(lambda t: t == need)
        if found is None:
            raise Reject(f"no value of type {need.spec()}")
        return found

    def result_name(self, hint: str) -> str:
        n = self.hint_counts.get(hint, 0) + 1
        self.hint_counts[hint] = n
        name = hint if n == 1 else f"{hint}{n}"
        if keyword.iskeyword(name) or name in INPUT_NAMES:
            name = f"{name}_"
        return name

    # -- statements ----------------------------------------------------------------
    def apply(self, op: Op) -> Statement:
        first = self.pick(op.accepts)
        if first is None or (len(self.inputs) < self.policy.max_inputs and self.rng.random() < 0.1):
            first = self.new_input(self.random_type(op))
        binding = op.bind(self.rng, first.type)
        operands: list[Operand] = [first]
        for need in binding.needs:
            if isinstance(need, LiteralNeed):
                operands.append(literal_operand(self.rng, need, first.type))
            else:
                operands.append(self.operand_for(need, tuple(operands)))
        out = op.infer(tuple(o.type for o in operands), binding.params)
        if out.size > self.policy.max_elements:
            raise Reject(f"{op.name} result of {out.size} elements")
        for o in operands:
            if isinstance(o, Value):
                self.uses[o.name] = self.uses.get(o.name, 0) + 1
        result = Value(self.result_name(op.hint), out)
        stmt = Statement(op, tuple(operands), tuple(sorted(binding.params.items())), result)
        self.statements.append(stmt)
        self.values.append(result)
        return stmt

    def try_apply(self, op: Op) -> Statement:
        """Apply ``op``, undoing any inputs it created if it is rejected."""
        snapshot = (len(self.inputs), len(self.values), dict(self.uses), dict(self.hint_counts))
        try:
            return self.apply(op)
        except Reject:
            n_in, n_val, uses, hints = snapshot
            del self.inputs[n_in:]
            del self.values[n_val:]
            self.uses, self.hint_counts = uses, hints
            raise

    def outputs(self) -> tuple[Value, ...]:
        sinks = [s.result for s in self.statements if not self.uses.get(s.result.name)]
        return tuple(sinks[-self.policy.max_outputs :])


# Statements that decide which shard a program belongs to: two give even narrow categories
# (a few hundred distinct first statements) enough distinct prefixes for hundreds of shards.
PREFIX_STATEMENTS = 2


def prefix_key(statements: tuple[Statement, ...]) -> str:
    """The partition key of a program: its first ``PREFIX_STATEMENTS`` statements."""
    return "|".join(statement_key(s) for s in statements[:PREFIX_STATEMENTS])


def statement_key(stmt: Statement) -> str:
    """A text that identifies a statement with its operand types (used to partition programs)."""
    operands = ",".join(o.text if isinstance(o, Literal) else f"{o.name}:{o.type.spec()}" for o in stmt.operands)
    return f"{stmt.op.name}({operands};{stmt.params!r})"


def function_name(category: str, statements) -> str:
    names: list[str] = []
    for s in statements:
        if s.op.name not in names:
            names.append(s.op.name)
    picked = names[:3] if len(names) > 1 else names + ["fn"]
    return "_".join(picked)


def sample_program(
    rng: random.Random,
    category: str,
    policy: Policy = DEFAULT_POLICY,
    *,
    accept_prefix: Callable[[tuple[Statement, ...]], bool] | None = None,
    max_tries_per_statement: int = 30,
) -> Program:
    """Sample one typed program of ``category``.

    Args:
      rng: the only source of randomness.
      category: one of ``CATEGORIES``.
      policy: weights and limits.
      accept_prefix: if given, the program is rejected early unless its first
        ``PREFIX_STATEMENTS`` statements pass (the pipeline uses this to give each shard a
        disjoint part of program space).

    Raises:
      ValueError: unknown category.
      Reject: the draw did not produce a program; the caller resamples with a new seed.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}")
    own = ops_for(category)
    b = _ProgramBuilder(rng, policy)
    n_statements = policy.statement_count(rng)
    for i in range(n_statements):
        for _ in range(max_tries_per_statement):
            pool = GLUE_OPS if (i > 0 and rng.random() < policy.glue_probability) else own
            op = _weighted(rng, pool, [o.weight for o in pool])
            try:
                b.try_apply(op)
                break
            except Reject:
                continue
        else:
            raise Reject(f"no op of {category!r} fits after {max_tries_per_statement} tries")
        if accept_prefix is not None and i == min(PREFIX_STATEMENTS, n_statements) - 1:
            if not accept_prefix(tuple(b.statements)):
                raise Reject("program prefix belongs to another shard")
    return Program(
        category=category,
        function_name=function_name(category, b.statements),
        inputs=tuple(b.inputs),
        statements=tuple(b.statements),
        outputs=b.outputs(),
        symbolic_dims=SYMBOLIC_DIMS.get(category, ()),
    )
