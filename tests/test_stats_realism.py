"""How the programs read (generator/tools/realism.py): dead statements, op-table names, sizes,
docstrings and hints, on hand-written sources, synthetic rows, sampled programs and real rows."""

from __future__ import annotations

import ast
import json
import math
import random
import subprocess
import sys
import textwrap

import pytest

from generator.core.naming import name_ops, name_parses
from generator.tools.realism import (
    dead_named_ops,
    dead_statements,
    find_function,
    liveness,
    realism_summary,
    statement_is_op,
    statement_ops,
)


def dead(source: str, name: str = "f") -> tuple[int, int]:
    return dead_statements(textwrap.dedent(source), name)


def verdicts(source: str, name: str = "f") -> list[bool]:
    return [live for _, live in liveness(find_function(ast.parse(textwrap.dedent(source)), name))]


# --- dead statements ---------------------------------------------------------------------------


def test_a_dead_assignment():
    src = """
    def f(x):
        a = x + 1
        b = x * 2
        return a
    """
    assert dead(src) == (1, 3)
    assert verdicts(src) == [True, False, True]


def test_a_value_that_feeds_only_a_dead_statement_is_dead():
    src = """
    def f(x):
        a = jnp.sin(x)
        b = a * 2
        c = x + 1
        return c
    """
    assert verdicts(src) == [False, False, True, True]
    assert dead(src) == (2, 4)


def test_values_used_by_the_return_are_live_transitively():
    src = """
    def f(x, y):
        a = x @ y
        b = jnp.tanh(a)
        c = b + a
        return c, b
    """
    assert dead(src) == (0, 4)


def test_tuple_unpacking_lives_if_any_target_is_read():
    src = """
    def f(x):
        a, b = jnp.split(x, 2)
        c, d = x, x
        (e, g), h = (x, x), x
        return a + g
    """
    assert verdicts(src) == [True, False, True, True]


def test_a_later_rebinding_hides_the_earlier_value():
    src = """
    def f(x):
        a = x * 2
        a = x + 1
        return a
    """
    assert verdicts(src) == [False, True, True]


def test_arguments_make_nothing_live():
    src = """
    def f(x, y):
        y = y * 2
        x = x + 1
        return x
    """
    assert verdicts(src) == [False, True, True]


def test_augmented_assignment_reads_and_writes():
    src = """
    def f(x):
        y = x * 2
        y += 1
        z = x
        z -= 1
        return y
    """
    assert verdicts(src) == [True, True, False, False, True]


def test_a_for_loop_is_one_statement_with_its_whole_subtree():
    src = """
    def f(x):
        acc = x
        unused = x * 3
        for i in range(3):
            acc = acc + i
        total = 0
        for i in range(2):
            total += i
        return acc
    """
    assert verdicts(src) == [True, False, True, False, False, True]
    assert dead(src) == (3, 6)


def test_blocks_that_may_not_run_do_not_hide_earlier_values():
    src = """
    def f(x, flag):
        y = x * 2
        if flag:
            y = x + 1
        with jax.named_scope("s"):
            z = y * 3
        return z
    """
    assert verdicts(src) == [True, True, True, True]


def test_a_block_that_returns_is_live():
    src = """
    def f(x, flag):
        y = x * 2
        if flag:
            return y
        return x
    """
    assert verdicts(src) == [True, True, True]


def test_nested_defs_live_through_their_name_and_read_only_free_names():
    src = """
    def f(x):
        scale = 2.0
        def body(i, c):
            return c * scale
        def helper(v):
            return v + 1
        c = x * 5
        y = lax.fori_loop(0, 3, body, x)
        return y
    """
    # helper is never called; ``c`` is body's parameter, not the outer ``c``
    assert verdicts(src) == [True, True, False, False, True, True]
    assert dead(src) == (2, 6)


def test_lambda_and_comprehension_variables_are_their_own():
    src = """
    def f(x):
        v = x * 2
        k = x + 1
        y = jax.vmap(lambda v: v + 1)(x)
        z = [k for k in range(3)]
        return y, z
    """
    assert verdicts(src) == [False, False, True, True, True]


def test_effects_docstrings_and_unreachable_statements():
    src = '''
    def f(x):
        """A docstring is not a statement of the computation."""
        y = x * 2
        print(y)
        assert x.ndim == 1
        z = x + 1
        return x
        w = z + 1
    '''
    # print and assert are kept for their effect (and keep y); w is after the return
    assert verdicts(src) == [True, True, True, False, True, False]
    assert dead(src) == (2, 6)


CUSTOM_VJP = """
def f(x):
    @jax.custom_vjp
    def clipped(a):
        return jnp.tanh(a)
    def fwd(a):
        return jnp.tanh(a), a
    def bwd(res, g):
        return (g,)
    clipped.defvjp(fwd, bwd)
    g = jax.grad(lambda a: jnp.sum(clipped(a) * a))(x)
    return x
"""

CUSTOM_JVP = """
def f(x):
    @jax.custom_jvp
    def sp(a):
        return jnp.logaddexp(a, 0.0)
    @sp.defjvp
    def sp_jvp(primals, tangents):
        (a,), (t,) = primals, tangents
        return sp(a), jax.nn.sigmoid(a) * t
    g = jax.grad(lambda a: jnp.sum(sp(a)))(x)
    return x
"""


def test_a_rule_registered_on_a_helper_lives_and_dies_with_the_helper():
    # the registration changes ``clipped``/``sp``: dead when the result that calls them is
    assert verdicts(CUSTOM_VJP) == [False, False, False, False, False, True]
    assert verdicts(CUSTOM_VJP.replace("return x", "return g")) == [True] * 6
    assert verdicts(CUSTOM_JVP) == [False, False, False, True]
    assert verdicts(CUSTOM_JVP.replace("return x", "return g")) == [True] * 4
    # a method call on an argument or a module is an effect of its own
    assert verdicts("def f(x, log):\n    log.append(x)\n    jax.debug.print('{}', x)\n    return x\n") == [True] * 3


def test_a_missing_function_is_an_error():
    with pytest.raises(ValueError, match="no top-level function 'g'"):
        dead("def f(x):\n    return x\n", "g")


# --- names made of op names --------------------------------------------------------------------


def test_names_made_of_op_names():
    assert name_ops("sum_multiply_polynomial") == ["sum", "multiply", "polynomial"]
    assert name_ops("abs_fn") == ["abs"]
    assert name_ops("log_softmax_fn") == ["log_softmax"]  # the fewest parts, not log + softmax
    assert name_ops("log_softmax_sin") == ["log_softmax", "sin"]
    assert name_ops("moving_average") is None
    assert name_ops("sum_of_squares") is None
    assert name_ops("fn") is None
    assert name_ops("a_b_c", op_names=["a", "b_c"]) == ["a", "b_c"]
    assert name_parses("floor_divide") == [["floor_divide"], ["floor", "divide"]]


def test_statements_are_matched_to_the_op_they_render():
    src = textwrap.dedent(
        """
        def f(x, y):
            total = x + y
            prod = x * 2.0
            acc = x * 0.5 + y
            ratio = x / (jnp.abs(y) + 1.0)
            normed = (x - jnp.mean(x, axis=-1, keepdims=True)) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5)
            return total
        """
    )
    body = find_function(ast.parse(src), "f").body
    assert [statement_is_op(src, s, "add") for s in body] == [True, False, False, False, False, False]
    assert [statement_is_op(src, s, "multiply") for s in body] == [False, True, False, False, False, False]
    assert statement_is_op(src, body[2], "axpy") and not statement_is_op(src, body[2], "add")
    assert statement_is_op(src, body[3], "divide")
    assert statement_is_op(src, body[4], "layer_norm")
    # the most specific template wins: ``x * 0.5 + y`` also matches compare's ``{0} {cmp} {1}``
    assert statement_ops(src, body[0]) == ["add"] and statement_ops(src, body[2]) == ["axpy"]
    assert statement_is_op(src, body[0], "compare")
    mean = textwrap.dedent("def f(x):\n    avg = jnp.mean(x, axis=0)\n    return avg\n")
    stmt = ast.parse(mean).body[0].body[0]
    assert statement_ops(mean, stmt, "reduction") == ["mean"]
    # layer_norm's template reads its operand three times: the same operand each time
    assert not statement_is_op(src.replace("jnp.var(x,", "jnp.var(y,"), body[4], "layer_norm")


def test_a_name_that_names_a_dead_op():
    src = textwrap.dedent(
        """
        def add_multiply(x, y):
            total = x + y
            prod = x * 2.0
            return total
        """
    )
    assert dead_named_ops(src, "add_multiply") == ["multiply"]
    assert dead_named_ops(src.replace("return total", "return total, prod"), "add_multiply") == []
    assert dead_named_ops(src.replace("def add_multiply", "def combine"), "combine") == []


def test_an_ambiguous_name_is_read_by_the_ops_the_function_has():
    src = textwrap.dedent(
        """
        def floor_divide(x, y):
            fl = jnp.floor(x)
            ratio = x / (jnp.abs(y) + 1.0)
            return ratio
        """
    )
    assert dead_named_ops(src, "floor_divide") == ["floor"]
    assert dead_named_ops(src.replace("x / (jnp.abs(y) + 1.0)", "x // (jnp.abs(y) + 1)"), "floor_divide") == []


# --- the summary on rows with known answers -----------------------------------------------------


def _row(category, name, source, inputs, n_outputs):
    return {
        "category": category,
        "function_name": name,
        "python_source": textwrap.dedent(source),
        "input_signature": [{"shape": s, "dtype": d} for s, d in inputs],
        "output_signature": [{"shape": [], "dtype": "float32"}] * n_outputs,
    }


ROWS = [
    _row(
        "arithmetic",
        "add_multiply",
        """
        def add_multiply(x, y):
            total = x + y
            prod = x * 2.0
            return total
        """,
        [([4, 128], "float32"), ([-1, 8], "int32")],
        1,
    ),
    _row(
        "reduction",
        "moving_average",
        '''
        def moving_average(x: jax.Array, k: int = 3) -> jax.Array:
            """Mean of each window of k values."""
            c = jnp.cumsum(x)
            return (c[k:] - c[:-k]) / k, c
        ''',
        [([], "float32")],
        2,
    ),
    _row(
        "arithmetic",
        "abs_fn",
        """
        def abs_fn(x):
            mag = jnp.abs(x)
            return mag
        """,
        [([16], "float32")],
        1,
    ),
    _row("arithmetic", "missing", "def other(x):\n    return x\n", [([8], "int32")], 1),
]


def test_summary_of_rows_with_known_answers():
    s = realism_summary(ROWS)
    assert (s["rows"], s["unparsed"]) == (4, 1)
    assert s["dead"] == {
        "statements": 7,
        "dead": 1,
        "share": 1 / 7,
        "rows": 3,
        "rows_with_dead": 1,
        "rows_share": 1 / 3,
    }
    assert s["dead_by_category"]["arithmetic"]["share"] == 1 / 5
    assert s["dead_by_category"]["reduction"]["share"] == 0
    assert s["op_named"] == {"rows": 2, "share": 2 / 3}
    assert s["dead_named_op"] == {"rows": 1, "share": 1 / 3}
    assert s["docstring"] == {"rows": 1, "share": 1 / 3}
    assert s["type_hints"] == {"rows": 1, "share": 1 / 3}
    # largest static dimension per row: 128, 1 (a scalar), 16, 8; -1 (symbolic) is left out
    assert s["largest_input_dim"] == {"median": 12, "p95": 128, "max": 128, "large_rows": 1, "large_share": 0.25}
    assert s["input_dtypes"] == {"float32": 0.6, "int32": 0.4}
    assert s["outputs"] == {"median": 1, "p95": 2, "counts": {1: 3, 2: 1}}


def test_summary_of_no_rows_is_empty_not_an_error():
    s = realism_summary([])
    assert s["rows"] == 0 and math.isnan(s["dead"]["share"]) and s["input_dtypes"] == {}


def test_realism_imports_no_jax():
    code = "import sys, json, generator.tools.realism; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# --- against the sampler's own programs -----------------------------------------------------------


def _true_liveness(program) -> dict[str, bool]:
    """Result name -> whether it reaches an output, from the typed program itself."""
    from generator.core.program import Value

    live = {v.name for v in program.outputs}
    out = {}
    for stmt in reversed(program.statements):
        out[stmt.result.name] = stmt.result.name in live
        if out[stmt.result.name]:
            live |= {o.name for o in stmt.operands if isinstance(o, Value)}
    return out


def test_liveness_and_op_matching_agree_with_sampled_programs():
    from generator.core.ops import CATEGORIES, MERGES
    from generator.core.render import render_source
    from generator.core.sampler import sample_program
    from generator.errors import Reject

    merge_names = {m.name for m in MERGES}
    rng = random.Random(13)
    checked = 0
    for category in CATEGORIES:
        for _ in range(15):
            try:
                program = sample_program(rng, category)
            except Reject:
                continue
            source = render_source(program)
            truth = _true_liveness(program)
            found = {
                stmt.targets[0].id: (stmt, live)
                for stmt, live in liveness(find_function(ast.parse(source), program.function_name))
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
            }
            for s in program.statements:
                stmt, live = found[s.result.name]
                assert live == truth[s.result.name], (category, s.op.name, source)
                if s.op.name not in merge_names:  # the sampler's closing merges are not op-table entries
                    assert statement_is_op(source, stmt, s.op.name), (s.op.name, ast.unparse(stmt))
            # the function is named for what it does, never by op names: no name names a dead op
            assert name_parses(program.function_name) == []
            assert dead_named_ops(source, program.function_name, category) == []
            checked += 1
    assert checked > 100


# --- real rows ---------------------------------------------------------------------------------------


def test_summary_of_real_rows():
    from generator.tools.stats import format_summary, summarize
    from tests.rowkit import make_rows

    rows = make_rows(train=20, validation=0)
    s = realism_summary(rows["train"])
    assert s["rows"] == 20 and s["unparsed"] == 0
    shares = [
        s["dead"]["share"],
        s["dead"]["rows_share"],
        s["op_named"]["share"],
        s["dead_named_op"]["share"],
        s["docstring"]["share"],
        s["type_hints"]["share"],
        s["largest_input_dim"]["large_share"],
        *s["input_dtypes"].values(),
        *(d["share"] for d in s["dead_by_category"].values()),
    ]
    assert all(0 <= x <= 1 for x in shares), shares
    assert math.isclose(sum(s["input_dtypes"].values()), 1.0)
    assert s["outputs"]["median"] >= 1 and s["largest_input_dim"]["median"] >= 1
    summary = summarize(rows)
    assert summary["realism"] == s
    assert "dead statements" in format_summary(summary)
