import random

import pytest

from generator.core.ops import CATEGORIES
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
