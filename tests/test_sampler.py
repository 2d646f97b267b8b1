import random

import pytest

from generator.core.ops import CATEGORIES, Op
from generator.core.policy import Policy
from generator.core.render import render_source
from generator.core.sampler import sample_program
from generator.errors import Reject


def _sample(category, seed):
    for attempt in range(50):
        try:
            return sample_program(random.Random(f"{seed}:{attempt}"), category)
        except Exception as e:  # Reject: try the next seed
            if type(e).__name__ != "Reject":
                raise
    raise AssertionError("no program")


@pytest.mark.parametrize("category", CATEGORIES)
def test_same_seed_same_program(category):
    assert render_source(_sample(category, 1)) == render_source(_sample(category, 1))
    assert render_source(_sample(category, 1)) != render_source(_sample(category, 2))


def test_rendering_draws_no_random_numbers():
    program = _sample("matrix", 3)
    state = random.getstate()
    first = render_source(program)
    random.seed(12345)
    assert render_source(program) == first
    random.setstate(state)


def test_programs_are_typed_and_multi_statement():
    program = _sample("composite", 4)
    assert len(program.statements) >= Policy().min_statements
    for value in program.inputs:
        assert value.type.dtype and isinstance(value.type.shape, tuple)
    assert "def example_args():" in render_source(program)


def test_unknown_category_names_valid_ones():
    with pytest.raises(ValueError, match="unknown category 'nope'.*arithmetic"):
        sample_program(random.Random(0), "nope")


def test_policy_checks_itself():
    with pytest.raises(ValueError, match="min_statements"):
        Policy(min_statements=5, max_statements=2)


@pytest.mark.parametrize("num_buckets", [1, 2, 7, 22, 128])
def test_partition_draws_only_programs_of_its_own_bucket(num_buckets):
    from generator.core.sampler import Partition

    drops = 0
    for bucket in sorted({0, num_buckets // 2, num_buckets - 1}):
        part = Partition(bucket, num_buckets)
        assert part.coarse * part.fine >= num_buckets
        for i, category in enumerate(CATEGORIES):
            for attempt in range(20):
                try:
                    program = sample_program(random.Random(f"{bucket}:{i}:{attempt}"), category, partition=part)
                    break
                except Reject:  # OtherShard included
                    drops += 1
            else:
                raise AssertionError(f"no program of {category} in bucket {bucket}/{num_buckets}")
            # The owner is a function of the program alone: any bucket's view agrees.
            assert part.bucket_of(program.statements) == bucket
            assert Partition(0, num_buckets).bucket_of(program.statements) == bucket
    # Statements are redrawn until they fit, so whole programs are seldom dropped.
    assert drops <= 3 * len(CATEGORIES)


def test_partition_leaves_the_first_statement_free():
    """Every shard sees every first statement: its first draw is the unpartitioned one."""
    from generator.core.render import render_statement
    from generator.core.sampler import Partition

    for seed in range(20):
        free = sample_program(random.Random(seed), "arithmetic", Policy(min_statements=3))
        bound = sample_program(random.Random(seed), "arithmetic", Policy(min_statements=3), partition=Partition(5, 9))
        first = lambda p: render_statement(p.statements[0])  # noqa: E731
        assert first(free) == first(bound)


def test_partition_checks_its_bucket():
    from generator.core.sampler import Partition

    with pytest.raises(ValueError, match="bucket must be in 0..3, got 4"):
        Partition(4, 4)


def test_a_program_of_another_shard_is_its_own_rejection():
    """``OtherShard`` (a ``Reject``) marks a program the partition gives to another shard, so the
    shard counts it apart from other rejections (``ShardStats.other_bucket``)."""
    from collections import Counter

    from generator.core.sampler import Partition
    from generator.errors import OtherShard

    kinds: Counter = Counter()
    for seed in range(300):
        try:
            sample_program(random.Random(seed), "reduction", partition=Partition(3, 128))
            kinds["sampled"] += 1
        except OtherShard:
            kinds["other shard"] += 1
        except Reject:
            kinds["rejected"] += 1
    assert kinds["sampled"] > 0 and kinds["other shard"] > 0, kinds


def test_a_shard_counts_other_shard_rejections_apart(monkeypatch):
    import generator.core.rows as rows
    from generator.core.plan import plan_shards
    from generator.core.rows import ShardStats
    from generator.errors import OtherShard

    real, raised = rows.sample_program, iter([OtherShard("not ours"), OtherShard("not ours"), Reject("no fit")])

    def some_rejected(*args, **kwargs):
        error = next(raised, None)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(rows, "sample_program", some_rejected)
    stats = ShardStats()
    (task,) = plan_shards(min_shards_per_split=1, train_size=2, validation_size=0, seed=0, categories=("reduction",))[
        "train"
    ]
    assert len(list(rows.generate_rows(task, stats))) == 2
    assert (stats.other_bucket, stats.sampling_rejects, stats.rows) == (2, 1, 2)


def _sampled_rows(per_category: int = 25, seed: int = 3):
    """Op-table programs as rows realism can measure (source, name, signatures), no lowering."""
    from generator.core.render import render_source

    rows = []
    rng = random.Random(seed)
    for category in CATEGORIES:
        made = 0
        while made < per_category:
            try:
                p = sample_program(rng, category)
            except Reject:
                continue
            made += 1
            rows.append(
                {
                    "category": category,
                    "function_name": p.function_name,
                    "python_source": render_source(p),
                    "input_signature": [{"shape": list(v.type.shape), "dtype": v.type.dtype} for v in p.inputs],
                    "output_signature": [{"shape": list(v.type.shape), "dtype": v.type.dtype} for v in p.outputs],
                }
            )
    return rows


def test_programs_read_like_code():
    """How real code reads, measured on sampled programs: every value used, one to three outputs,
    names that are not op names, real sizes, some documented and typed functions."""
    from generator.tools.realism import realism_summary

    r = realism_summary(_sampled_rows())
    assert r["dead"]["share"] <= 0.01, r["dead"]
    assert r["outputs"]["median"] == 1 and r["outputs"]["p95"] <= 4
    assert r["op_named"]["share"] == 0.0
    assert r["largest_input_dim"]["median"] >= 64
    assert r["largest_input_dim"]["large_share"] >= 0.25
    assert 0.25 <= r["docstring"]["share"] <= 0.6
    assert 0.3 <= r["type_hints"]["share"] <= 0.7


def test_a_program_computes_in_one_float_precision():
    """Real code keeps one precision: a program's float inputs share a dtype unless an op
    needs another (a float32-only op beside bfloat16 activations)."""
    from generator.core.types import FLOATS

    mixed = total = 0
    rng = random.Random(5)
    for category in ("arithmetic", "elementwise", "composite", "reduction", "matrix"):
        for _ in range(40):
            try:
                p = sample_program(rng, category)
            except Reject:
                continue
            floats = {v.type.dtype for v in p.inputs if v.type.dtype in FLOATS}
            total += 1
            mixed += len(floats) > 1
    assert mixed <= 0.1 * total, (mixed, total)


def test_argument_names_follow_their_roles():
    from generator.core.naming import KEY_ARRAY_NAMES, KEY_NAMES

    seen = set()
    rng = random.Random(8)
    for category in CATEGORIES:
        for _ in range(10):
            try:
                p = sample_program(rng, category)
            except Reject:
                continue
            for v in p.inputs:
                seen.add(v.name)
                if v.type.dtype == "bool" and v.type.rank:
                    assert v.name.rstrip("0123456789") in ("mask", "valid", "keep", "attention_mask")
                if v.type.is_key:
                    assert v.name.rstrip("0123456789") in (KEY_NAMES if v.type.rank == 0 else KEY_ARRAY_NAMES)
            assert len({v.name for v in p.inputs}) == len(p.inputs)
    assert not seen & {"x", "y", "z", "w"}


# --- no degenerate steps ------------------------------------------------------------------------

# Calls that reduce their first argument, and ones that sort, accumulate or normalize along an
# axis of it: of a scalar, each computes nothing (a reduce over no dimensions, a one-element sort).
REDUCING = {"jnp.sum", "jnp.mean", "jnp.max", "jnp.min", "jnp.prod", "jnp.var", "jnp.std", "jnp.median"}
REDUCING |= {"jnp.any", "jnp.all", "jnp.argmax", "jnp.argmin", "jax.nn.logsumexp"}
ALONG_AXIS = {"jnp.sort", "jnp.argsort", "jnp.cumsum", "jnp.cumprod", "lax.cummax", "lax.top_k", "jnp.linalg.norm"}
ALONG_AXIS |= {"jax.nn.softmax", "jax.nn.log_softmax", "jax.nn.standardize"}
ELEMENTWISE = {"jnp.square", "jnp.abs", "jnp.tanh", "jnp.exp", "jnp.sin", "jnp.cos", "jnp.sqrt", "jax.nn.sigmoid"}
DTYPES = {"bool_": "bool"}


def degenerate_steps(program) -> list[str]:
    """The calls of ``program``'s rendered source that reduce, sort, accumulate or normalize a
    scalar, or cast a value to its own dtype, as far as the program's types tell.

    A program value's type is known by its name (inputs, results, and the float32 copies the
    renderer makes of low-precision operands); so is the rank of a full reduction (0) and of
    elementwise arithmetic on known ranks.
    """
    import ast

    types = {v.name: v.type for v in program.inputs} | {s.result.name: s.result.type for s in program.statements}
    types |= {f"{name}_f32": t.with_dtype("float32") for name, t in list(types.items())}

    def rank(node) -> int | None:
        if isinstance(node, ast.Name):
            return types[node.id].rank if node.id in types else None
        if isinstance(node, ast.Constant):
            return 0
        if isinstance(node, ast.UnaryOp):
            return rank(node.operand)
        if isinstance(node, ast.BinOp):
            sides = (rank(node.left), rank(node.right))
            return None if None in sides else max(sides)
        if isinstance(node, ast.Call) and node.args:
            name = ast.unparse(node.func)
            if name in REDUCING and not any(k.arg == "axis" for k in node.keywords):
                return 0
            if name in ELEMENTWISE or (isinstance(node.func, ast.Attribute) and node.func.attr == "astype"):
                return rank(node.args[0] if name in ELEMENTWISE else node.func.value)
        return None

    def dtype(node) -> str | None:
        if isinstance(node, ast.Name):
            return types[node.id].dtype if node.id in types else None
        if isinstance(node, ast.Attribute) and node.attr == "dtype":
            return dtype(node.value)
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "jnp":
            return DTYPES.get(node.attr, node.attr)
        return None

    found = []
    for node in ast.walk(ast.parse(render_source(program))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in REDUCING | ALONG_AXIS and node.args and rank(node.args[0]) == 0:
            found.append(f"{ast.unparse(node)}: of a scalar")
        if isinstance(node.func, ast.Attribute) and node.func.attr == "astype" and node.args:
            src, dst = dtype(node.func.value), dtype(node.args[0])
            if src is not None and src == dst:
                found.append(f"{ast.unparse(node)}: a cast to its own dtype")
    return found


def test_the_degenerate_step_check_finds_them():
    """The check below reads what it should: a sum of a sum, a softmax of a scalar, a self-cast."""
    from generator.core.program import Program, Statement, Value
    from generator.core.types import TensorType

    def program(*exprs: str):
        ops = [Op(f"op{i}", e, (), ("float32",)) for i, e in enumerate(exprs)]
        x = Value("x", TensorType((3, 4), "float32"))
        s = Value("s", TensorType((), "float32"))
        statements = tuple(Statement(op, (x, s), (), Value(f"r{i}", x.type)) for i, op in enumerate(ops))
        return Program("test", "f", (x, s), statements, (statements[-1].result,))

    assert degenerate_steps(program("jnp.sum({0}, axis=0) + jnp.max({1})")) == ["jnp.max(s): of a scalar"]
    assert degenerate_steps(program("jnp.mean(jnp.sum({0}))")) == ["jnp.mean(jnp.sum(x)): of a scalar"]
    assert degenerate_steps(program("jax.nn.softmax({1} * 2.0, axis=-1)")) == [
        "jax.nn.softmax(s * 2.0, axis=-1): of a scalar"
    ]
    assert degenerate_steps(program("{0} + {1}.astype({0}.dtype)")) == ["s.astype(x.dtype): a cast to its own dtype"]
    assert degenerate_steps(program("jnp.sum({0}) + {1} * jnp.max({0}, axis=-1)")) == []


@pytest.mark.parametrize("category", CATEGORIES)
def test_no_program_reduces_a_scalar_or_casts_to_its_own_dtype(category):
    """No reduction, sort, cumulative op, softmax or norm of a scalar, no cast of a value to its
    own dtype: not in the op table's statements, not in the glue, not in the closing merges."""
    rng = random.Random(f"degenerate:{category}")
    programs = 0
    while programs < 60:
        try:
            program = sample_program(rng, category)
        except Reject:
            continue
        programs += 1
        assert degenerate_steps(program) == [], render_source(program)


def test_an_axis_to_reduce_or_sort_along_is_longer_than_one():
    from generator.core.ops.base import random_axis
    from generator.core.types import TensorType

    rng = random.Random(0)
    t = TensorType((1, 5, 1, 3), "float32")
    assert {random_axis(rng, t) % t.rank for _ in range(200)} == {1, 3}
    for shape in ((), (1,), (1, 1)):
        with pytest.raises(Reject, match="longer than one"):
            random_axis(rng, TensorType(shape, "float32"))
