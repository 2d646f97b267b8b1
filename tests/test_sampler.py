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
    from generator.core.render import render_function
    from generator.core.sampler import Partition

    for seed in range(20):
        free = sample_program(random.Random(seed), "arithmetic", Policy(min_statements=3))
        bound = sample_program(random.Random(seed), "arithmetic", Policy(min_statements=3), partition=Partition(5, 9))
        first = lambda p: render_function(p).splitlines()[1]  # noqa: E731
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
    (task,) = plan_shards(train_size=2, validation_size=0, seed=0, categories=("reduction",))["train"]
    assert len(list(rows.generate_rows(task, stats))) == 2
    assert (stats.other_bucket, stats.sampling_rejects, stats.rows) == (2, 1, 2)
