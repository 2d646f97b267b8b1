"""Sampling typed programs: ops from the table, operands by type, one seeded random source.

The sampler builds a ``Program`` (values with shapes and dtypes) and never text. All
randomness comes from the ``random.Random`` passed in, so a program is a pure function of
its seed, category and policy.
"""

from __future__ import annotations

import hashlib
import itertools
import keyword
import math
import random
from collections.abc import Callable, Sequence

from ..errors import OtherShard, Reject
from .naming import RESERVED, argument_name, function_name
from .ops import CATEGORIES, CATEGORY_MERGES, GENERIC_MERGES, SYMBOLIC_DIMS, LiteralNeed, Merge, Op, ops_for
from .policy import DEFAULT_POLICY, Policy
from .program import Literal, Operand, Program, Statement, Value
from .types import FLOATS, TensorType


def literal_operand(rng: random.Random, need: LiteralNeed, like: TensorType) -> Literal:
    return Literal(rng.choice(need.choices), like.with_shape(()))


# Ops any category may mix in between its own, as real code does.
GLUE_OPS: tuple[Op, ...] = tuple(dict.fromkeys(ops_for("arithmetic") + ops_for("elementwise")))


# How a program ends: every value it computed flows into what it returns. Left-over results
# are folded into others (``ProgramBuilder.consume``) the way the category's own code combines
# values (``ops.merges``: a residual add, a masked mean, a weighted sum...). Real functions
# return one to three values.
OUTPUT_COUNT_WEIGHTS = ((1, 0.55), (2, 0.3), (3, 0.15))
UNUSED_RESULT_WEIGHT = 40.0
# Shares of functions written with a docstring and with type hints (real library code: about
# half and two thirds; short synthetic helpers a little less).
DOCSTRING_SHARE = 0.4
TYPE_HINTS_SHARE = 0.5
# Of a statement's tries, this share must take an unread result as its first operand (when
# there is one): the program grows as a dataflow, not as independent expressions.
CHAIN_TRIES_SHARE = 0.6


def _weighted(rng: random.Random, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


class ProgramBuilder:
    """Mutable state while one program is sampled."""

    def __init__(self, rng: random.Random, policy: Policy):
        self.rng = rng
        self.policy = policy
        self.inputs: list[Value] = []
        self.statements: list[Statement] = []
        self.values: list[Value] = []
        self.uses: dict[str, int] = {}
        self.hint_counts: dict[str, int] = {}
        floats = [(d, w) for d, w in policy.dtype_weights if d in FLOATS]
        self.float_dtype = _weighted(rng, [d for d, _ in floats], [w for _, w in floats]) if floats else "float32"
        self.max_elements = policy.max_elements_for(self.float_dtype)

    # -- values --------------------------------------------------------------------
    def new_input(self, t: TensorType) -> Value:
        if len(self.inputs) >= self.policy.max_inputs:
            raise Reject("input budget spent")
        taken = [v.name for v in self.values] + list(self.hint_counts)
        v = Value(argument_name(t, taken, self.rng), t)
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
        if dtype in FLOATS and self.float_dtype in op.dtypes:
            dtype = self.float_dtype  # one float precision per program, as real code has
        rank = _weighted(self.rng, [r for r, _ in ranks], [w for _, w in ranks])
        return TensorType(self._shape(rank), dtype)

    def _shape(self, rank: int) -> tuple[int, ...]:
        """``rank`` sizes from the policy's weights, each redrawn among the sizes that keep the
        array under the element cap (the last dimensions are the large ones, as in real code)."""
        sizes = [d for d, _ in self.policy.dim_weights]
        weights = [w for _, w in self.policy.dim_weights]
        shape: list[int] = []
        for _ in range(rank):
            room = self.max_elements // max(1, math.prod(shape))
            fits = [(d, w) for d, w in zip(sizes, weights) if d <= room] or [(1, 1.0)]
            shape.append(_weighted(self.rng, [d for d, _ in fits], [w for _, w in fits]))
        return tuple(sorted(shape)) if self.rng.random() < 0.5 else tuple(shape)

    def pick(self, accept: Callable[[TensorType], bool], exclude: tuple[Operand, ...] = ()) -> Value | None:
        n = len(self.values)
        candidates, weights = [], []
        for i, v in enumerate(self.values):
            if not accept(v.type) or v in exclude:
                continue
            # Results nothing reads yet first, by far, so that values flow into later statements
            # (real code reads what it computes); then unused inputs; then recent values.
            unused = not self.uses.get(v.name)
            w = (UNUSED_RESULT_WEIGHT if v not in self.inputs else 3.0) if unused else 1.0
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
        if keyword.iskeyword(name) or name in RESERVED:
            name = f"{name}_"
        while name in {v.name for v in self.inputs}:  # an argument already has this name
            n += 1
            self.hint_counts[hint] = n
            name = f"{hint}{n}"
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
        if out.size > self.max_elements:
            raise Reject(f"{op.name} result of {out.size} elements")
        for o in operands:
            if isinstance(o, Value):
                self.uses[o.name] = self.uses.get(o.name, 0) + 1
        result = Value(self.result_name(op.hint), out)
        stmt = Statement(op, tuple(operands), tuple(sorted(binding.params.items())), result)
        self.statements.append(stmt)
        self.values.append(result)
        return stmt

    def mark(self) -> tuple:
        """The builder's state, to return to with ``undo``."""
        return len(self.inputs), len(self.values), len(self.statements), dict(self.uses), dict(self.hint_counts)

    def undo(self, mark: tuple) -> None:
        n_in, n_val, n_stmt, uses, hints = mark
        del self.inputs[n_in:]
        del self.values[n_val:]
        del self.statements[n_stmt:]
        self.uses, self.hint_counts = uses, hints

    def try_apply(self, op: Op) -> Statement:
        """Apply ``op``, undoing any inputs it created if it is rejected."""
        mark = self.mark()
        try:
            return self.apply(op)
        except Reject:
            self.undo(mark)
            raise

    def draw_statement(self, own: tuple[Op, ...], category: str, index: int, max_tries: int) -> Statement:
        """Statement ``index``: an op of the category (or, after the first, sometimes glue),
        reading a result nothing reads yet when one fits."""
        chained = int(max_tries * CHAIN_TRIES_SHARE)
        for attempt in range(max_tries):
            pool = GLUE_OPS if (index > 0 and self.rng.random() < self.policy.glue_probability) else own
            op = _weighted(self.rng, pool, [o.weight for o in pool])
            if attempt < chained:
                sinks = self.sinks()
                if sinks and not any(op.accepts(v.type) for v in sinks):
                    continue
            try:
                return self.try_apply(op)
            except Reject:
                continue
        raise Reject(f"no op of {category!r} fits after {max_tries} tries")

    def sinks(self) -> list[Value]:
        """Results no statement reads yet, oldest first."""
        return [s.result for s in self.statements if not self.uses.get(s.result.name)]

    def merge(self, kept: Value, folded: Value, merge: Merge) -> Statement:
        """A statement folding ``folded`` into ``kept`` with ``merge``."""
        op = merge.op(kept.type, folded.type)
        params = merge.params(self.rng)
        for v in (kept, folded):
            self.uses[v.name] = self.uses.get(v.name, 0) + 1
        result = Value(self.result_name(op.hint), op.infer((kept.type, folded.type), params))
        stmt = Statement(op, (kept, folded), tuple(sorted(params.items())), result)
        self.statements.append(stmt)
        self.values.append(result)
        return stmt

    def closing_merge(self, sinks: list[Value], merges: tuple[Merge, ...]) -> tuple[Value, Value, Merge] | None:
        """The first pair of ``sinks`` (oldest first) that one of ``merges`` folds (either value
        kept), with a merge drawn among those that fit it; ``None`` if none fits any pair."""
        for i, j in itertools.combinations(range(len(sinks)), 2):
            options = [
                (kept, folded, m)
                for kept, folded in ((sinks[i], sinks[j]), (sinks[j], sinks[i]))
                for m in merges
                if m.fits(kept.type, folded.type) and m.infer((kept.type, folded.type), {}).size <= self.max_elements
            ]
            if options:
                return _weighted(self.rng, options, [m.weight for _, _, m in options])
        return None

    def consume(self, category: str) -> tuple[Value, ...]:
        """The outputs: one to ``max_outputs`` values, every other result folded into them.

        The number of outputs is drawn as real functions return (mostly one); left-over results
        are merged, as ``category``'s code would combine them (generic merges when none of its
        own fits), until that many remain, so no statement computes a value the function
        drops. A value nothing folds (a PRNG key outside ``random``) is returned, as real code
        returns its new key.
        """
        counts = [(n, w) for n, w in OUTPUT_COUNT_WEIGHTS if n <= self.policy.max_outputs]
        wanted = _weighted(self.rng, [n for n, _ in counts], [w for _, w in counts])
        sinks = self.sinks()
        while len(sinks) > wanted:
            found = self.closing_merge(sinks, CATEGORY_MERGES[category]) or self.closing_merge(sinks, GENERIC_MERGES)
            if found is None:
                break
            self.merge(*found)
            sinks = self.sinks()
        if len(sinks) > self.policy.max_outputs:
            raise Reject(f"{len(sinks)} results that no merge folds")
        return tuple(sinks)


class Partition:
    """A shard's part of program space: the programs whose first statements hash to ``bucket``.

    Shards never coordinate, yet no program may appear in two of them, so a program's owner is
    a function of its content: its first three statements (with their operand types). The
    owner is found in two levels, so that a shard reaches its own part with few draws:

    - coarse: a hash of the first two statements, modulo ``coarse`` (about the square root
      of ``num_buckets``);
    - fine: a hash of the first three statements, modulo ``fine`` (``num_buckets / coarse``
      rounded up).

    Bucket ``coarse_part * fine + fine_part`` owns the program (parts past ``num_buckets - 1``
    belong to no shard and are never sampled). The sampler checks the coarse part right after
    the second statement and redraws that statement until it fits, then the same for the
    third; a shard thus spends about ``coarse + fine`` statement draws on its partition per
    row instead of ``num_buckets`` whole programs. The first statement is never constrained,
    so every shard sees every first statement. Identical programs share their first three
    statements, hence their bucket: rows are unique across shards and splits by construction.
    A program with fewer statements is keyed by all of them.
    """

    COARSE_DEPTH, FINE_DEPTH = 2, 3

    def __init__(self, bucket: int, num_buckets: int):
        if not 0 <= bucket < num_buckets:
            raise ValueError(f"bucket must be in 0..{num_buckets - 1}, got {bucket}")
        self.bucket, self.num_buckets = bucket, num_buckets
        self.coarse = math.isqrt(num_buckets - 1) + 1 if num_buckets > 1 else 1
        self.fine = -(-num_buckets // self.coarse)
        self.coarse_part, self.fine_part = divmod(bucket, self.fine)

    def _part(self, statements: Sequence[Statement], depth: int, modulus: int) -> int:
        key = f"{depth}|" + "|".join(statement_key(s) for s in statements[:depth])
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % modulus

    def bucket_of(self, statements: Sequence[Statement]) -> int | None:
        """The bucket that owns a program with these statements (None: no shard owns it)."""
        b = self._part(statements, self.COARSE_DEPTH, self.coarse) * self.fine
        b += self._part(statements, self.FINE_DEPTH, self.fine)
        return b if b < self.num_buckets else None

    def checks_after(self, index: int, n_statements: int) -> tuple[tuple[int, int, int], ...]:
        """``(depth, modulus, part)`` checks due once statement ``index`` of ``n_statements`` is drawn."""
        last = index == n_statements - 1
        return tuple(
            (depth, modulus, part)
            for depth, modulus, part in (
                (self.COARSE_DEPTH, self.coarse, self.coarse_part),
                (self.FINE_DEPTH, self.fine, self.fine_part),
            )
            if index == depth - 1 or (last and index < depth - 1)
        )

    def accepts(self, statements: Sequence[Statement], checks) -> bool:
        return all(self._part(statements, depth, modulus) == part for depth, modulus, part in checks)

    @staticmethod
    def redraws(checks) -> int:
        """How often a statement is redrawn to pass ``checks`` before the program is dropped."""
        return 8 * math.prod(modulus for _, modulus, _ in checks)


def statement_key(stmt: Statement) -> str:
    """A text that identifies a statement with its operand types (used to partition programs)."""
    operands = ",".join(o.text if isinstance(o, Literal) else f"{o.name}:{o.type.spec()}" for o in stmt.operands)
    return f"{stmt.op.name}({operands};{stmt.params!r})"


def sample_program(
    rng: random.Random,
    category: str,
    policy: Policy = DEFAULT_POLICY,
    *,
    partition: Partition | None = None,
    max_tries_per_statement: int = 30,
) -> Program:
    """Sample one typed program of ``category``.

    Args:
      rng: the only source of randomness.
      category: one of ``CATEGORIES``.
      policy: weights and limits.
      partition: if given, only programs of this part of program space are drawn (the
        pipeline gives each shard its own part; see ``Partition``).

    Raises:
      ValueError: unknown category.
      OtherShard: the program belongs to another shard (``partition``); the caller resamples.
      Reject: the draw did not produce a program; the caller resamples with a new seed.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}")
    own = ops_for(category)
    b = ProgramBuilder(rng, policy)
    n_statements = policy.statement_count(rng)
    for i in range(n_statements):
        checks = partition.checks_after(i, n_statements) if partition is not None else ()
        if not checks:
            b.draw_statement(own, category, i, max_tries_per_statement)
            continue
        for _ in range(partition.redraws(checks)):
            mark = b.mark()
            b.draw_statement(own, category, i, max_tries_per_statement)
            if partition.accepts(b.statements, checks):
                break
            b.undo(mark)
        else:
            raise OtherShard("program prefix belongs to another shard")
    outputs = b.consume(category)
    # named for the last value the category's own ops compute (not glue, not the closing merges)
    own_results = [st for st in b.statements if category in st.op.categories]
    last_hint = own_results[-1].op.hint if own_results else None
    name = function_name(category, last_hint, b.inputs[0].name if b.inputs else None, rng)
    return Program(
        category=category,
        function_name=name,
        inputs=tuple(b.inputs),
        statements=tuple(b.statements),
        outputs=outputs,
        symbolic_dims=SYMBOLIC_DIMS.get(category, ()),
        docstring=rng.random() < DOCSTRING_SHARE,
        type_hints=rng.random() < TYPE_HINTS_SHARE,
    )
