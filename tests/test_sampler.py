import random

import pytest

from generator.ops import CATEGORIES
from generator.render import render_source
from generator.sampler import Policy, sample_program


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
