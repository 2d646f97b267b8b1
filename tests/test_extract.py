import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generator import SynthesisPipeline, extract_ir, extract_with_grad
from generator.core.irtext import stablehlo_ops
from generator.core.ops import CATEGORIES
from generator.tools.io import read_rows


def test_extract_ir_on_library_functions():
    pair = extract_ir(jax.nn.softmax, jax.ShapeDtypeStruct((4, 8), jnp.float32))
    assert "def softmax" in pair.python_source
    assert pair.stablehlo_ir == jax.jit(jax.nn.softmax).lower(jax.ShapeDtypeStruct((4, 8), jnp.float32)).as_text()
    assert {"stablehlo.exponential", "stablehlo.reduce"} <= set(stablehlo_ops(pair.stablehlo_ir))
    assert pair.cost_analysis["flops"] > 0 and pair.cost_analysis["transcendentals"] >= 32

    solve = extract_ir(jnp.linalg.solve, np.eye(3, dtype=np.float32), np.ones((3,), np.float32))
    assert solve.output_signature == (((3,), "float32"),)
    assert "stablehlo.custom_call" in solve.stablehlo_ir or "stablehlo.while" in solve.stablehlo_ir


def test_non_array_arguments_are_static():
    def scale(x, factor, mode):
        return x * factor if mode == "mul" else x + factor

    pair = extract_ir(scale, jax.ShapeDtypeStruct((3,), jnp.float32), 2.5, "mul")
    assert pair.input_signature == (((3,), "float32"),)
    assert "stablehlo.multiply" in pair.stablehlo_ir and "2.500000e+00" in pair.stablehlo_ir


def test_extract_with_grad_returns_forward_and_backward():
    def f(x, y):
        return jnp.sum(jnp.tanh(x) * y)

    pairs = extract_with_grad(f, jnp.ones((3,)), jnp.ones((3,)))
    assert pairs.forward.output_signature == (((), "float32"),)
    assert pairs.backward.output_signature == (((3,), "float32"), ((3,), "float32"))
    assert "grad_f" in pairs.backward.python_source
    fwd_pair, bwd_pair = pairs  # the original design's usage
    assert (fwd_pair, bwd_pair) == (pairs.forward, pairs.backward) and len(list(pairs)) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        pairs.forward = bwd_pair
    with pytest.raises(ValueError, match="floating-point"):
        extract_with_grad(lambda i: i * 2, jnp.arange(3))


def test_synthesis_pipeline(tmp_path):
    pipe = SynthesisPipeline(output_dir=tmp_path / "out", seed=5)
    assert pipe.get_statistics()["total_pairs"] == 0
    row = pipe.generate_single("matrix", save=True)
    assert row["category"] == "matrix"
    rows = pipe.generate_batch(len(CATEGORIES), save=True)
    assert sorted(r["category"] for r in rows) == sorted(CATEGORIES)
    assert row["id"] not in {r["id"] for r in rows}
    stats = pipe.get_statistics()
    assert stats["rows"] == 1 + len(CATEGORIES) and stats["by_category"]["matrix"] == 2
    assert stats["total_pairs"] == 1 + len(CATEGORIES)  # the original design's name, beside today's keys
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batch-00001.jsonl", "single-00000.jsonl"]
    assert sum(len(v) for v in read_rows(tmp_path / "out").values()) == 1 + len(CATEGORIES)
    again = SynthesisPipeline(None, seed=5)
    again.generate_single("matrix")
    assert [r["id"] for r in again.generate_batch(len(CATEGORIES))] == [r["id"] for r in rows]
    again.generate_batch(3, balanced=False)
    assert again.get_statistics()["total_pairs"] == 1 + len(CATEGORIES) + 3


def test_typed_keys_are_traced_arguments():
    """jax.random.key is what JAX recommends: extract_ir and extract_with_grad take typed keys, and the
    validator's inputs for them are concrete keys made from the source."""
    from generator.tools.validate.numerics import example_inputs

    key = jax.random.key(0)
    pair = extract_ir(lambda k: jax.random.normal(k, (4,)), key)
    assert pair.input_signature == (((), "key<fry>"),) and pair.output_signature == (((4,), "float32"),)
    assert pair.stablehlo_ir == jax.jit(lambda k: jax.random.normal(k, (4,))).lower(key).as_text()
    keys = jax.ShapeDtypeStruct((3,), key.dtype)
    assert extract_ir(lambda ks: jax.vmap(lambda k: jax.random.uniform(k, (2,)))(ks), keys).input_signature == (
        ((3,), "key<fry>"),
    )
    grads = extract_with_grad(lambda k, w: jnp.sum(jax.random.normal(k, (4,)) * w), key, jnp.ones(4))
    assert grads.backward.output_signature == (((4,), "float32"),)  # the key is not differentiated
    made, again = (example_inputs("source", [keys]) for _ in range(2))
    assert made[0].shape == (3,) and jax.dtypes.issubdtype(made[0].dtype, jax.dtypes.prng_key)
    assert (jax.random.key_data(made[0]) == jax.random.key_data(again[0])).all()
    assert not (jax.random.key_data(made[0]) == jax.random.key_data(example_inputs("other", [keys])[0])).all()


def test_row_sources_trace_under_one_traceback_and_lower_to_the_same_text():
    from generator.core.lowering import exec_source, lower_source, one_traceback

    source = (
        "import jax\nimport jax.numpy as jnp\n\n\n"
        "def mlp(w1, w2, x):\n    h = jax.nn.gelu(x @ w1)\n    return jnp.tanh(h @ w2).sum(axis=-1)\n\n\n"
        "def example_args():\n"
        "    return (jnp.ones((16, 32)), jnp.ones((32, 8)), jnp.ones((4, 16)))\n"
    )
    fn, example_args = exec_source(source, "mlp")
    args = example_args()

    def tracebacks(jaxpr):
        return {id(eqn.source_info.traceback) for eqn in jaxpr.eqns}

    assert len(tracebacks(jax.make_jaxpr(fn)(*args).jaxpr)) > 1  # JAX's default: one per equation
    jax.clear_caches()  # or the same jaxpr comes back from JAX's trace cache
    with one_traceback():
        assert len(tracebacks(jax.make_jaxpr(fn)(*args).jaxpr)) == 1
    # locations are not in the text, and XLA's cost analysis does not read them: the same pair
    pair, plain = lower_source(source, "mlp"), extract_ir(fn, *args)
    assert pair.stablehlo_ir == plain.stablehlo_ir and pair.cost_analysis == plain.cost_analysis
    assert pair.cost_analysis["flops"] > 0
