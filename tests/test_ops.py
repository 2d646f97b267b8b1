"""Every op in the table renders, lowers, and has the result type its ``infer`` claims; so does
every closing merge. None lowers to a reduction over no dimensions."""

import dataclasses
import random

import pytest

from generator.core.irtext import reductions_over_no_dimensions
from generator.core.lowering import lower_source
from generator.core.ops import CATEGORIES, GENERIC_MERGES, MERGES, OPS, SYMBOLIC_DIMS, ops_for
from generator.core.policy import DEFAULT_POLICY
from generator.core.program import Program, Statement, Value
from generator.core.render import render_source
from generator.core.sampler import ProgramBuilder
from generator.core.types import TensorType
from generator.errors import Reject
from generator.runtime.device_server import lower_on_host_devices


def _single_op_program(op, seed, *, lowest_rank=False):
    """A program whose only statement is ``op`` (rejections resampled with the next seed);
    ``lowest_rank``: of the first 200 draws, one whose first operand has the lowest rank."""
    found = None
    for attempt in range(200):
        b = ProgramBuilder(random.Random(f"{op.name}:{seed}:{attempt}"), DEFAULT_POLICY)
        try:
            stmt = b.try_apply(op)
        except Reject:
            continue
        if found is None or stmt.operands[0].type.rank < found[1].operands[0].type.rank:
            symbolic = SYMBOLIC_DIMS.get(op.categories[0], ())
            found = Program("test", f"{op.name}_fn", tuple(b.inputs), (stmt,), (stmt.result,), symbolic), stmt
        if not lowest_rank or stmt.operands[0].type.rank == op.min_rank:
            break
    if found is None:
        raise AssertionError(f"{op.name} never bound to a sampled operand")
    return found


def _lower(program):
    lower = lower_on_host_devices if program.host_devices > 1 else lower_source
    return lower(render_source(program), program.function_name)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_op_lowers_with_inferred_type(op):
    """At the lowest rank the op binds to (a scalar, where it takes one) and at another draw:
    its inferred type, and no reduction over no dimensions (of a scalar)."""
    for seed in range(2):
        program, stmt = _single_op_program(op, seed, lowest_rank=seed == 0)
        pair = _lower(program)
        ((shape, dtype),) = pair.output_signature
        expected = stmt.result.type.shape
        if program.symbolic_dims and expected and expected[0] in dict(program.symbolic_dims):
            expected = (-1,) + expected[1:]  # lowered with a symbolic leading dimension
        assert (shape, dtype) == (expected, stmt.result.type.dtype), render_source(program)
        assert reductions_over_no_dimensions(pair.stablehlo_ir) == 0, render_source(program)


# --- closing merges ------------------------------------------------------------------------------

# Values a program may have left over: scalars and arrays of every kind, shapes that broadcast
# into others and shapes that do not, a PRNG key.
_LEFT_OVER = tuple(
    TensorType(shape, dtype)
    for shape, dtype in (
        ((), "float32"),
        ((4,), "float32"),
        ((3, 4), "float32"),
        ((2, 3, 4), "float32"),
        ((5, 2), "float32"),
        ((3, 4), "bfloat16"),
        ((), "bfloat16"),
        ((4,), "float16"),
        ((), "int32"),
        ((3, 4), "int32"),
        ((4,), "int8"),
        ((3, 1), "uint32"),
        ((), "bool"),
        ((3, 4), "bool"),
        ((5,), "bool"),
        ((4,), "complex64"),
        ((), "key<fry>"),  # a PRNG key
        ((4,), "key<fry>"),  # a key array: no merge folds it
    )
)


def _merge_program(merge):
    """One statement of ``merge`` for every pair of ``_LEFT_OVER`` types it fits, all returned."""
    inputs = tuple(Value(f"v{i}", t) for i, t in enumerate(_LEFT_OVER))
    rng = random.Random(merge.name)
    statements = []
    for kept in inputs:
        for folded in inputs:
            if kept is not folded and merge.fits(kept.type, folded.type):
                op, params = merge.op(kept.type, folded.type), merge.params(rng)
                result = Value(f"r{len(statements)}", op.infer((kept.type, folded.type), params))
                statements.append(Statement(op, (kept, folded), tuple(sorted(params.items())), result))
    return Program("test", f"{merge.name}_fn", inputs, tuple(statements), tuple(s.result for s in statements))


@pytest.mark.parametrize("merge", MERGES, ids=lambda m: m.name)
def test_merge_lowers_with_inferred_type(merge):
    """Each merge, on every pair of left-over types it fits: the type it infers, no reduction
    over no dimensions, and a cast only where JAX would not keep the kept value's dtype."""
    program = _merge_program(merge)
    assert program.statements, f"{merge.name} fits no pair of left-over types"
    pair = _lower(program)
    expected = [(s.result.type.shape, s.result.type.dtype) for s in program.statements]
    assert list(pair.output_signature) == expected, render_source(program)
    assert reductions_over_no_dimensions(pair.stablehlo_ir) == 0, render_source(program)
    # without its cast, each statement that casts would change the kept value's dtype
    for s in program.statements:
        if ".astype({0}.dtype)" in s.op.template:
            op = dataclasses.replace(s.op, template=s.op.template.replace(".astype({0}.dtype)", ""))
            uncast = dataclasses.replace(program, statements=(dataclasses.replace(s, op=op),), outputs=(s.result,))
            ((_, dtype),) = _lower(uncast).output_signature
            assert dtype != s.operands[0].type.dtype, render_source(uncast)


def test_generic_merges_fold_any_two_values_but_keys():
    for a in _LEFT_OVER:
        for b in _LEFT_OVER:
            if not (a.is_key or b.is_key):
                assert any(m.fits(a, b) or m.fits(b, a) for m in GENERIC_MERGES), (a, b)


def test_every_category_has_ops():
    for category in CATEGORIES:
        assert len(ops_for(category)) >= 8, category


def test_op_names_unique():
    assert len({op.name for op in OPS}) == len(OPS)


@pytest.mark.parametrize("category", CATEGORIES)
def test_sampled_programs_lower_to_no_reduction_over_no_dimensions(category):
    """A few whole programs per category, closing merges included, through the real lowering."""
    from generator.core.sampler import sample_program

    rng = random.Random(f"no-degenerate:{category}")
    lowered = 0
    while lowered < 4:
        try:
            program = sample_program(rng, category)
        except Reject:
            continue
        assert reductions_over_no_dimensions(_lower(program).stablehlo_ir) == 0, render_source(program)
        lowered += 1


def test_broadcasting_keeps_zero_length_axes_and_fold_always_finds_axes():
    from generator.core.ops.merges import extra_axes
    from generator.core.types import TensorType, broadcast_shapes

    assert broadcast_shapes((0,), ()) == (0,) and broadcast_shapes((1,), (0, 3)) == (0, 3)
    assert broadcast_shapes((2,), (0,)) is None
    assert broadcast_shapes((1, 3), (0, 1)) == (0, 3) and broadcast_shapes((2, 3), (3,)) == (2, 3)
    # a kept value with an empty axis: the folded value is reduced until it broadcasts into it
    assert extra_axes(TensorType((0,), "float32"), TensorType((4, 5), "float32")) == (0, 1)
