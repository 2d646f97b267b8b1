"""The recurrent family: LSTM/GRU networks (hand-written cells over parameter dicts, Equinox
cells, Flax NNX cells through ``nnx.RNN``) and linear recurrences / state-space models
(Griffin's RG-LRU, S4D, S5, Mamba's selective scan) in plain JAX, Flax NNX and Equinox. Drawn
programs cover every style and variant, follow the source conventions, lower at real size
with the ops their recurrence implies, and pass the validator's own checks at reduced size."""

from __future__ import annotations

import ast
import dataclasses
import random
import re

import numpy as np
import pytest

from generator.core.lowering import load_source, static_argnums, traced_leaves
from generator.core.models import STYLES, recurrent, reduce_source
from generator.core.models.reduce import REDUCTIONS, config_defaults
from generator.core.naming import name_ops
from tests.modelkit import draw, lower_real, validator_checks

CLASSES = {
    "lstm": ("lstm_step", "eqx.nn.LSTMCell", "nnx.LSTMCell", "nnx.OptimizedLSTMCell"),
    "gru": ("gru_step", "eqx.nn.GRUCell", "nnx.GRUCell"),
    "rglru": ("rg_lru",),
    "s4d": ("class S4DBlock", "def s4d("),
    "s5": ("class S5Block", "def s5("),
    "mamba": ("class MambaBlock", "def mamba_block("),
}


def variant_of(source: str) -> str:
    return next(v for v, markers in CLASSES.items() if any(m in source for m in markers))


@pytest.fixture(scope="module")
def drawn():
    return draw("recurrent", 40)


def test_forty_draws_cover_every_style_variant_and_idiom(drawn):
    assert {p.style for p in drawn} == set(STYLES)
    assert {variant_of(p.source) for p in drawn} == set(recurrent.VARIANTS)
    # each style writes both kinds: gated RNN cells and linear recurrences
    for style in STYLES:
        kinds = {variant_of(p.source) in recurrent.RNN_VARIANTS for p in drawn if p.style == style}
        assert kinds == {True, False}, style
    sources = [p.source for p in drawn]
    for idiom in (
        "lax.associative_scan(combine",  # parallel linear recurrence
        "def step(h, inputs):",  # sequential linear recurrence
        "nnx.RNN(",
        "eqx.nn.LSTMCell(",
        "eqx.nn.GRUCell(",
        "jnp.concatenate([forward_states, backward_states]",  # bidirectional
        "jnp.exp(dt",  # Mamba's input-dependent discretization
        "causal_conv1d(",  # plain-JAX short conv
        "jax.checkpoint(",  # remat of the scanned layer
        "optax.softmax_cross_entropy_with_integer_labels",
    ):
        assert any(idiom in s for s in sources), idiom
    assert any("reverse=True" in s for s in sources) and any("jnp.flip(" in s for s in sources)
    assert any("bfloat16" in s for s in sources) and any(re.search(r"dtype: str = .float32.", s) for s in sources)


def test_sources_parse_reduce_and_are_named_for_their_purpose(drawn):
    assert len({p.source for p in drawn}) == len(drawn)
    for p in drawn:
        tree = ast.parse(p.source)
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {p.function_name, "example_args"} <= functions
        assert len(name_ops(p.function_name) or ()) <= 1, p.function_name
        assert p.category == "recurrent"
        # no library beyond the ones the style writes with
        if p.style == "jax":
            assert "flax" not in p.libraries and "equinox" not in p.libraries
        else:
            assert {"flax_nnx": "flax", "equinox": "equinox"}[p.style] in p.libraries
        reduced = reduce_source(p.source)
        ast.parse(reduced)
        assert "scan" in p.transforms or "associative_scan" in p.transforms


def test_sample_draws_no_numbers_in_render_and_keeps_real_sizes():
    for i in range(200):
        spec = recurrent.sample(random.Random(i))
        assert recurrent.render(spec) == recurrent.render(spec)
        defaults = config_defaults(recurrent.render(spec).source)
        assert all(k in REDUCTIONS for k, v in defaults.items() if type(v) is int)
        width = defaults.get("d_model", defaults.get("hidden_size"))
        assert 128 <= width <= 4096 and width % 128 == 0
        assert 128 <= defaults["seq_len"] <= 8192 and 1 <= defaults["batch_size"] <= 64
        assert defaults["batch_size"] * defaults["seq_len"] <= 1 << 18
        if "state_size" in defaults:
            assert 16 <= defaults["state_size"] <= 256
        unrolled = re.search(r"lax\.scan\((jax\.checkpoint\()?body", recurrent.render(spec).source) is None
        assert defaults["num_layers"] <= 4 or not unrolled


def test_reduced_source_differs_only_in_config_defaults_and_runs_small(drawn):
    for p in drawn[:12]:
        reduced = reduce_source(p.source)
        real_lines, small_lines = p.source.splitlines(), reduced.splitlines()
        assert len(real_lines) == len(small_lines)
        fields = config_defaults(p.source)
        for a, b in zip(real_lines, small_lines):
            if a != b:
                name = a.strip().split(":", 1)[0]
                assert name in fields and type(fields[name]) is int, a
                assert a.split("=", 1)[0] == b.split("=", 1)[0]
        _, args = load_source(reduced, p.function_name)
        leaves = traced_leaves(args, static_argnums(args))
        sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
        assert max(sizes) <= 512 * 64 and sum(sizes) < 1_000_000, (p.function_name, max(sizes), sum(sizes))


BASE = recurrent.Spec(
    style="jax",
    variant="lstm",
    cell="",
    inputs="tokens",
    head="tagger",
    objective="loss",
    pool="",
    function_name="eval_step",
    num_layers=1,
    d_model=512,
    hidden_size=512,
    input_size=256,
    state_size=0,
    d_ff=0,
    vocab_size=32_000,
    num_classes=20,
    seq_len=1024,
    batch_size=8,
    dtype="float32",
    bidirectional=True,
    reverse_idiom="flip",
    precompute_inputs=True,
    scan_impl="",
    layer_loop="unrolled",
    remat=False,
    norm="rms",
    conv_impl="",
    tie_embeddings=False,
)

# (spec, ops its IR must hold): every style, RNN cells and both ways of running a linear recurrence
# (the scratch sweep over drawn programs covers the other variants; these keep the file short)
CASES = {
    "jax-bilstm-flip": (BASE, {"stablehlo.while": 2, "stablehlo.reverse": 2, "stablehlo.tanh": 1}),
    "equinox-bigru-reverse": (
        dataclasses.replace(
            BASE,
            style="equinox",
            variant="gru",
            cell="GRUCell",
            inputs="features",
            head="classifier",
            objective="logits",
            pool="mean",
            function_name="forward",
            input_size=80,
            reverse_idiom="reverse",
            precompute_inputs=False,
            dtype="bfloat16",
        ),
        {"stablehlo.while": 2, "stablehlo.tanh": 1},
    ),
    "nnx-optimized-lstm-lm": (
        dataclasses.replace(
            BASE,
            style="flax_nnx",
            cell="OptimizedLSTMCell",
            head="lm",
            bidirectional=False,
            function_name="forward",
            objective="logits",
            precompute_inputs=False,
            dtype="bfloat16",
        ),
        {"stablehlo.while": 1},
    ),
    "jax-mamba-associative-scanned-layers": (
        dataclasses.replace(
            BASE,
            variant="mamba",
            head="lm",
            bidirectional=False,
            num_layers=24,
            d_model=768,
            hidden_size=0,
            input_size=0,
            state_size=16,
            d_ff=1536,
            seq_len=2048,
            batch_size=2,
            dtype="bfloat16",
            scan_impl="associative",
            layer_loop="scan",
            remat=True,
            conv_impl="lax",
            tie_embeddings=True,
            precompute_inputs=False,
        ),
        {"stablehlo.while": 1, "stablehlo.convolution": 1, "stablehlo.exponential": 1, "stablehlo.pad": 1},
    ),
    "equinox-s5-scanned-layers": (
        dataclasses.replace(
            BASE,
            style="equinox",
            variant="s5",
            inputs="features",
            head="classifier",
            pool="mean",
            function_name="compute_loss",
            bidirectional=False,
            num_layers=6,
            d_model=256,
            hidden_size=0,
            input_size=64,
            state_size=64,
            scan_impl="associative",
            layer_loop="scan",
            precompute_inputs=False,
        ),
        {"stablehlo.while": 1, "stablehlo.exponential": 1},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lowers_at_real_size_and_passes_the_validator(case):
    spec, want_ops = CASES[case]
    program = recurrent.render(spec)
    pair = lower_real(program)
    ops = pair.stablehlo_ops
    for op, count in want_ops.items():
        assert ops[op] >= count, (op, ops[op])
    assert 50 <= len(pair.stablehlo_ir.splitlines()) <= 5000
    results = validator_checks(program, pair.stablehlo_ir)
    assert results["reproduce"].status.value == "pass", results["reproduce"]
    assert results["execute"].status.value == "pass", results["execute"]
    assert results["iree"].status.value == "pass", results["iree"]
