"""The train_step model family: specs cover its styles and variants, sources follow the model
conventions, and a few programs lower at real size and pass the validator's own checks."""

from __future__ import annotations

import ast
import difflib
import random

import pytest

from generator.core.models import train_step
from generator.core.models.reduce import config_defaults, reduce_source
from tests.modelkit import draw, lower_real, validator_checks

PROGRAMS = draw("train_step", 40)
SPECS = [train_step.sample(random.Random(f"0:train_step:{i}")) for i in range(40)]


def test_draws_cover_styles_models_optimizers_and_variants():
    assert {p.style for p in PROGRAMS} == {"jax", "flax_nnx", "equinox"}
    assert {s.model for s in SPECS} == set(train_step.MODELS)
    assert {s.optimizer for s in SPECS} == set(train_step.OPTIMIZERS)
    assert {s.accumulation for s in SPECS} == set(train_step.ACCUMULATIONS)
    assert {s.schedule for s in SPECS} == set(train_step.SCHEDULES)
    assert {s.smoothing for s in SPECS} == {"", "optax", "manual"}
    assert any(s.dropout for s in SPECS) and any(s.mixed_precision for s in SPECS)
    assert any(s.scan_layers for s in SPECS) and any(s.model == "lm" and s.rope for s in SPECS)
    # the rendered text carries what the spec says
    sources = "\n".join(p.source for p in PROGRAMS)
    for idiom in (
        "jax.value_and_grad(loss_fn, has_aux=True)",
        "nnx.value_and_grad(loss_fn, has_aux=True)",
        "eqx.filter_value_and_grad(loss_fn, has_aux=True)",
        "optax.adamw(",
        "optax.lion(",
        "optax.adafactor(",
        "optax.sgd(",
        "optax.MultiSteps(",
        "optax.clip_by_global_norm(",
        "optax.join_schedules(",
        "optax.smooth_labels(",
        "jax.random.fold_in(key, step)",
        "nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)",
        "lax.scan(accumulate",
    ):
        assert idiom in sources, idiom


def test_sources_parse_reduce_and_name_a_training_function():
    for p in PROGRAMS:
        tree = ast.parse(p.source)
        assert p.function_name == "train_step"
        assert f"def {p.function_name}(" in p.source and "def example_args():" in p.source
        assert reduce_source(p.source) != p.source
        configs = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")]
        assert len(configs) == 1
        assert "import numpy" not in p.source
        assert "value_and_grad" in p.transforms


def test_specs_keep_real_sizes():
    for s in SPECS:
        size = s.size
        assert 8 <= size["batch_size"] <= 64
        if s.model == "lm":
            assert 128 <= size["d_model"] <= 2048 and size["d_model"] % 128 == 0
            assert size["num_heads"] % size["num_kv_heads"] == 0
            assert 32_000 <= size["vocab_size"] <= 262_144
            assert size["batch_size"] * size["seq_len"] <= train_step.TOKENS_CAP
        if "num_microbatches" in size:
            assert size["batch_size"] % size["num_microbatches"] == 0


def test_reduced_source_changes_only_config_defaults():
    p = PROGRAMS[0]
    reduced = reduce_source(p.source)
    changed = [
        line
        for line in difflib.unified_diff(p.source.splitlines(), reduced.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed
    fields = set(config_defaults(p.source))
    for line in changed:
        assert line[1:].strip().split(":")[0] in fields, line
    assert all(v <= 512 for v in config_defaults(reduced).values() if type(v) is int)


def _first(**want):
    for i, s in enumerate(SPECS):
        if all(getattr(s, k) == v for k, v in want.items()):
            return PROGRAMS[i]
    raise AssertionError(f"no drawn spec with {want}")


# (program, ops its IR must hold); chosen to cover the styles, models and accumulation kinds.
CASES = {
    "jax_lm": (lambda: _first(style="jax", model="lm", dropout=False), ("stablehlo.dot_general",)),
    "jax_mlp_scan_accumulation": (
        lambda: _first(style="jax", model="mlp", accumulation="scan", dropout=False),
        ("stablehlo.while",),
    ),
    "nnx_lm_multisteps": (
        lambda: _first(style="flax_nnx", model="lm", accumulation="multisteps", dropout=False),
        ("stablehlo.dot_general", "stablehlo.select"),
    ),
    "equinox_cnn": (lambda: _first(style="equinox", model="cnn", dropout=False), ("stablehlo.convolution",)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lowers_at_real_size_and_passes_the_validator(name):
    make, ops = CASES[name]
    program = make()
    pair = lower_real(program)
    lines = pair.stablehlo_ir.count("\n")
    assert 100 <= lines <= 5_000, lines
    for op in ops:
        assert op in pair.stablehlo_ir, op
    # a real-sized input: the reduced program is not what was lowered
    assert max(max(shape, default=1) for shape, _ in pair.input_signature) >= 128
    outcome = validator_checks(program, pair.stablehlo_ir)
    assert outcome["reproduce"].status.value == "pass", outcome["reproduce"]
    assert outcome["execute"].status.value == "pass", outcome["execute"]
    assert outcome["iree"].status.value == "pass", outcome["iree"]


def test_reduced_program_inputs_are_small():
    from generator.core.lowering import lower_source

    program = _first(style="jax", model="lm")
    pair = lower_source(reduce_source(program.source), program.function_name)
    assert max(max(shape, default=1) for shape, _ in pair.input_signature) <= 512
