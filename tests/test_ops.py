"""Every op in the table renders, lowers, and has the result type its ``infer`` claims."""

import random

import pytest

from generator.core.lowering import lower_source
from generator.core.ops import CATEGORIES, OPS, SYMBOLIC_DIMS, ops_for
from generator.core.policy import DEFAULT_POLICY
from generator.core.program import Program
from generator.core.render import render_source
from generator.core.sampler import ProgramBuilder
from generator.errors import Reject
from generator.runtime.device_server import lower_on_host_devices


def _single_op_program(op, seed):
    """A program whose only statement is ``op`` (rejections resampled with the next seed)."""
    for attempt in range(200):
        b = ProgramBuilder(random.Random(f"{op.name}:{seed}:{attempt}"), DEFAULT_POLICY)
        try:
            stmt = b.try_apply(op)
        except Reject:
            continue
        symbolic = SYMBOLIC_DIMS.get(op.categories[0], ())
        return Program("test", f"{op.name}_fn", tuple(b.inputs), (stmt,), (stmt.result,), symbolic), stmt
    raise AssertionError(f"{op.name} never bound to a sampled operand")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_op_lowers_with_inferred_type(op):
    for seed in range(2):
        program, stmt = _single_op_program(op, seed)
        lower = lower_on_host_devices if program.host_devices > 1 else lower_source
        pair = lower(render_source(program), program.function_name)
        ((shape, dtype),) = pair.output_signature
        expected = stmt.result.type.shape
        if program.symbolic_dims and expected and expected[0] in dict(program.symbolic_dims):
            expected = (-1,) + expected[1:]  # lowered with a symbolic leading dimension
        assert (shape, dtype) == (expected, stmt.result.type.dtype), render_source(program)


def test_every_category_has_ops():
    for category in CATEGORIES:
        assert len(ops_for(category)) >= 8, category


def test_op_names_unique():
    assert len({op.name for op in OPS}) == len(OPS)
