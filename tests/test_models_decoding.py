"""The decoding family: single-token decode steps over a KV cache, prompt prefill, generation
loops and sampling functions, in plain JAX, Flax NNX and Equinox. Draws cover every style,
variant, sampler and loop; a handful of programs lower at real size with the ops their variant
needs and pass the validator's own checks (reproduce, reduced-size execute, IREE); the reduced
source is the real one with smaller config defaults."""

from __future__ import annotations

import ast
import random
import re
from collections import Counter

import pytest

from generator.core.lowering import load_source
from generator.core.models import decoding, reduce_source
from generator.core.models.reduce import REDUCTIONS, config_defaults
from generator.core.naming import name_ops
from tests.modelkit import draw, lower_real, validator_checks

N = 40
VARIANT_OF = {name: variant for variant, names in decoding.ENTRY_NAMES.items() for name in names}


@pytest.fixture(scope="module")
def programs():
    return draw("decoding", N)


def _spec(**want) -> decoding.Spec:
    """The first drawn spec with the given fields (fixed seeds)."""
    for i in range(5000):
        spec = decoding.sample(random.Random(f"test:{i}"))
        if all(getattr(spec, k) == v for k, v in want.items()):
            return spec
    raise AssertionError(f"no spec with {want}")


def test_draws_cover_styles_variants_samplers_and_loops(programs):
    assert Counter(p.style for p in programs).keys() == {"jax", "flax_nnx", "equinox"}
    assert set(VARIANT_OF[p.function_name] for p in programs) == set(decoding.VARIANTS)
    sources = "\n".join(p.source for p in programs)
    for needle in (
        "lax.dynamic_update_slice(k_cache",  # cache written at a scalar index
        "k_cache.at[batch_index, positions[:, 0]].set(",  # cache written at per-row positions
        "lax.scan(body, hidden",  # layers under scan over stacked params
        "lax.fori_loop(",
        "lax.while_loop(",
        "lax.scan(step_fn",
        "jnp.argmax(logits",
        "jax.random.categorical(",
        "lax.top_k(logits, config.top_k)",
        "jnp.sort(logits, axis=-1, descending=True)",  # top-p
        "config.min_p",
        "config.repetition_penalty",
        "jax.random.fold_in(key",
        "jax.random.split(key)",
        "apply_rope(q, positions",
        "nnx.merge(graphdef, state)",
        "eqx.combine(params, static)",
    ):
        assert needle in sources, needle
    assert len({p.source for p in programs}) == N


def test_sources_parse_reduce_and_are_named_for_what_they_do(programs):
    for p in programs:
        tree = ast.parse(p.source)
        assert name_ops(p.function_name) is None, p.function_name
        assert p.category == "decoding"
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {p.function_name, "example_args"} <= functions
        ast.parse(reduce_source(p.source))
        assert "import numpy" not in p.source
        # keys are raw uint32[2] arguments; no Rngs live in a module's state
        if "key" in p.source.split(f"def {p.function_name}(", 1)[1].split(")", 1)[0]:
            assert "key = jax.eval_shape(jax.random.key, 0)" in p.source
        assert "nnx.Dropout" not in p.source and "self.rngs" not in p.source
        # at most 4 layers unrolled in Python; more run under lax.scan
        if config_defaults(p.source).get("num_layers", 0) > 4:
            assert 'lax.scan(body, hidden, (params["layers"]' in p.source


def test_rendering_is_a_function_of_the_spec():
    spec = decoding.sample(random.Random(7))
    assert decoding.render(spec) == decoding.render(spec)
    assert decoding.sample(random.Random(7)) == spec


CASES = {
    # plain JAX, layers under lax.scan with stacked caches, one step at a scalar cache index
    "jax_scan_decode_step": dict(
        style="jax", variant="decode_step", layers="scan", cache_update="dynamic_update_slice"
    ),
    # Flax NNX, per-row positions written with .at[].set, top-k sampling of the next token
    "nnx_decode_step_top_k": dict(
        style="flax_nnx", variant="decode_step", cache_update="at_set", sampler="top_k", returns="tokens"
    ),
    # Equinox, prefill then a fori_loop of decode steps
    "eqx_generate_fori": dict(style="equinox", variant="generate", loop="fori_loop", prompt_mode="prefill"),
    # plain JAX, nucleus sampling with a repetition penalty
    "jax_sample_top_p": dict(style="jax", variant="sample", sampler="top_p", repetition_penalty=True),
}
EXPECTED_OPS = {
    "jax_scan_decode_step": ("stablehlo.dynamic_update_slice", "stablehlo.while"),
    "nnx_decode_step_top_k": ("stablehlo.scatter", "chlo.top_k"),
    "eqx_generate_fori": ("stablehlo.dynamic_update_slice", "stablehlo.while", "stablehlo.dot_general"),
    "jax_sample_top_p": ("stablehlo.sort", "stablehlo.scatter"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lowers_at_real_size_and_passes_the_validator(case):
    program = decoding.render(_spec(**CASES[case]))
    pair = lower_real(program)
    for op in EXPECTED_OPS[case]:
        assert op in pair.stablehlo_ir, op
    assert 100 <= pair.stablehlo_ir.count("\n") <= 5000
    checks = validator_checks(program, pair.stablehlo_ir)
    assert checks["reproduce"].status.value == "pass", checks["reproduce"]
    assert checks["execute"].status.value == "pass", checks["execute"]
    assert checks["iree"].status.value == "pass", checks["iree"]


def test_reduced_source_changes_only_config_defaults_and_inputs_are_small(programs):
    for p in programs[:12]:
        reduced = reduce_source(p.source)
        changed = [(a, b) for a, b in zip(p.source.splitlines(), reduced.splitlines()) if a != b]
        assert len(p.source.splitlines()) == len(reduced.splitlines())
        for a, b in changed:
            name = a.strip().split(":", 1)[0]
            assert name in REDUCTIONS and a.split("=", 1)[0] == b.split("=", 1)[0], a
        assert re.sub(r"=.*", "", reduced) == re.sub(r"=.*", "", p.source)
    import jax

    for p in programs[:6]:
        _, args = load_source(reduce_source(p.source), p.function_name)
        leaves = [x for x in jax.tree_util.tree_leaves(args) if hasattr(x, "shape")]
        assert leaves and max(x.size for x in leaves) <= 512 * 64, p.function_name
        assert all(max(x.shape, default=0) <= 512 for x in leaves)
