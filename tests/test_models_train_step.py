"""The train_step model family: composed models (``compose.training``) trained by optax chains.
Draws cover model kinds, objectives, optimizers, schedules, accumulation and styles; a spec is
its program and names its structure without idioms; the three styles of one spec compute the
same loss; a few programs lower at real size and pass the validator's own checks."""

from __future__ import annotations

import ast
import dataclasses
import random

import numpy as np
import pytest

from generator.core.models import train_step
from generator.core.models.compose import optim, training
from generator.core.models.compose.conv import VisionSpec
from generator.core.models.reduce import reduce_source
from tests.modelkit import draw, draw_specs, lower_real, reduced_metrics, validator_checks

N = 120
SPECS = draw_specs("train_step", N)
PROGRAMS = draw("train_step", N)


def test_draws_cover_models_objectives_optimizers_and_styles():
    assert {p.style for p in PROGRAMS} == {"jax", "flax_nnx", "equinox"}
    assert {s.model.category for s in SPECS} == {"transformer", "moe", "recurrent", "vision"}
    assert {s.training.objective for s in SPECS} == set(training.OBJECTIVES)
    assert {s.training.optimizer for s in SPECS} == set(optim.OPTIMIZERS)
    assert {s.training.schedule for s in SPECS} == set(optim.SCHEDULES)
    assert {s.training.accumulation for s in SPECS} == set(training.ACCUMULATIONS)
    assert {s.training.smoothing for s in SPECS} == {"", "optax", "manual"}
    assert any(s.training.mixed_precision for s in SPECS) and any(s.training.skip_nonfinite for s in SPECS)
    sources = "\n".join(p.source for p in PROGRAMS)
    for idiom in (
        "jax.value_and_grad(loss_fn, has_aux=True)",
        "nnx.value_and_grad(loss_fn, has_aux=True)",
        "eqx.filter_value_and_grad(loss_fn, has_aux=True)",
        "nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)",
        "optax.adamw(",
        "optax.lion(",
        "optax.adafactor(",
        "optax.sgd(",
        "optax.MultiSteps(",
        "optax.clip_by_global_norm(",
        "optax.join_schedules(",
        "optax.smooth_labels(",
        "lax.scan(accumulate",
        "jax.random.fold_in(key, step)",
        "aux",
    ):
        assert idiom in sources, idiom


def test_sources_name_a_training_function_and_reduce():
    for p in PROGRAMS:
        tree = ast.parse(p.source)
        assert p.function_name in training.FUNCTION_NAMES and "value_and_grad" in p.transforms
        assert {p.function_name, "example_args", "make_optimizer"} <= {
            n.name for n in tree.body if isinstance(n, ast.FunctionDef)
        }
        assert reduce_source(p.source) != p.source
        assert "PRNGKey" not in p.source and "import numpy" not in p.source


def test_a_spec_is_its_program_and_its_structure_leaves_out_idioms():
    for spec, program in zip(SPECS[:10], PROGRAMS):
        assert train_step.FAMILY.render(spec) == program
    spec = next(s for s in SPECS if s.training.smoothing == "optax")
    manual = dataclasses.replace(spec, training=dataclasses.replace(spec.training, smoothing="manual"))
    assert manual.structure() == spec.structure() and manual.digest() != spec.digest()
    assert train_step.FAMILY.render(manual).source != train_step.FAMILY.render(spec).source
    optimizer = "lion" if spec.training.optimizer != "lion" else "adamw"
    other = dataclasses.replace(spec, training=dataclasses.replace(spec.training, optimizer=optimizer))
    assert other.structure() != spec.structure()


def test_specs_keep_real_sizes_and_divisible_microbatches():
    for s in SPECS:
        sizes = s.model.sizes
        if s.hyper.num_microbatches:
            assert sizes.batch_size % s.hyper.num_microbatches == 0
        if not isinstance(s.model, VisionSpec):
            assert sizes.d_model >= 128 and sizes.seq_len >= 128
        assert s.model.dtype == "float32"  # master weights; a mixed-precision step casts them


def _comparable(seed: str, kind: str) -> training.TrainSpec:
    """A spec whose styles name their parameters alike: hand-written layers, one step per call."""
    rng = random.Random(seed)
    while True:
        spec = training.sample(rng)
        if spec.model.category == kind and spec.model.arch.sharding == "none":
            break
    return dataclasses.replace(
        spec,
        model=dataclasses.replace(spec.model, library_layers=False),
        training=dataclasses.replace(spec.training, mixed_precision=False, accumulation="none", config_arg=False),
        hyper=dataclasses.replace(spec.hyper, num_microbatches=0),
    )


@pytest.mark.parametrize("kind", ["recurrent", pytest.param("transformer", marks=pytest.mark.slow)])
def test_the_three_styles_of_a_spec_compute_the_same_loss_and_gradients(kind):
    spec = _comparable(f"styles:{kind}", kind)
    metrics = {
        style: reduced_metrics(
            training.render_train_step(dataclasses.replace(spec, model=dataclasses.replace(spec.model, style=style)))
        )
        for style in ("jax", "flax_nnx", "equinox")
    }
    assert np.isfinite(metrics["jax"]["loss"]) and metrics["jax"]["loss"] > 0
    for style in ("flax_nnx", "equinox"):
        assert set(metrics[style]) == set(metrics["jax"])
        for name in ("loss", "accuracy", "grad_norm"):  # the gradients too: parameters are named alike
            if name in metrics["jax"]:
                np.testing.assert_allclose(metrics[style][name], metrics["jax"][name], rtol=2e-4, err_msg=name)


def _case(seed: str, **want) -> training.TrainSpec:
    rng = random.Random(seed)
    for _ in range(10_000):
        spec = training.sample(rng)
        if training._sharded(spec) and "layout" not in want:  # one device unless a layout is asked for
            continue
        if all(get(spec) == value for get, value in want.values()):
            return spec
    raise AssertionError(f"no spec with {want}")


STYLE = lambda s: s.style  # noqa: E731
CASES = {  # the first (the cheapest) runs by default
    "jax-transformer-mixed-precision": (
        dict(
            style=(STYLE, "jax"),
            kind=(lambda s: s.model.category, "transformer"),
            mixed=(lambda s: s.training.mixed_precision, True),
        ),
        ("bf16",),
    ),
    "jax-lm-scan-accumulation": (
        dict(
            style=(STYLE, "jax"),
            objective=(lambda s: s.training.objective, "next_token"),
            accumulation=(lambda s: s.training.accumulation, "scan"),
        ),
        ("stablehlo.while", "stablehlo.dot_general"),
    ),
    "nnx-vision-multisteps": (
        dict(
            style=(STYLE, "flax_nnx"),
            kind=(lambda s: s.model.category, "vision"),
            objective=(lambda s: s.training.objective, "classify"),
            accumulation=(lambda s: s.training.accumulation, "multisteps"),
        ),
        ("stablehlo.select",),
    ),
    "eqx-moe": (
        dict(style=(STYLE, "equinox"), kind=(lambda s: s.model.category, "moe")),
        ("stablehlo.dot_general",),
    ),
    "jax-unet-denoise": (
        dict(style=(STYLE, "jax"), objective=(lambda s: s.training.objective, "denoise")),
        ("stablehlo.convolution", "stablehlo.shift_right_logical"),  # threefry: noise and timesteps,
    ),
    "nnx-recurrent": (
        dict(style=(STYLE, "flax_nnx"), kind=(lambda s: s.model.category, "recurrent")),
        ("stablehlo.dot_general",),
    ),
    "eqx-transformer-guarded": (
        dict(
            style=(STYLE, "equinox"),
            kind=(lambda s: s.model.category, "transformer"),
            guard=(lambda s: s.training.skip_nonfinite, True),
        ),
        ("stablehlo.select",),
    ),
}
# A U-Net's train step compiles with IREE 3.13 but its runtime refuses the call ("binding table
# slot requires a buffer but none was provided"): the validator skips the check as IREE's.
IREE_RUNTIME_ERRORS = {"jax-unet-denoise"}


# (tests/conftest.py keeps the first case in the default run; the three styles each run there at
# reduced size in the loss test above)
@pytest.mark.parametrize("name", list(CASES))
def test_lowers_at_real_size_and_passes_the_validator(name):
    want, ops = CASES[name]
    program = training.render_train_step(_case(name, **want))
    pair = lower_real(program)
    for op in ops:
        assert op in pair.stablehlo_ir, op
    assert max(max(shape, default=1) for shape, _ in pair.input_signature) >= 128  # real sizes
    outcome = validator_checks(program, pair.stablehlo_ir)
    iree = "skip" if name in IREE_RUNTIME_ERRORS else "pass"
    assert {k: v.status.value for k, v in outcome.items()} == {"reproduce": "pass", "execute": "pass", "iree": iree}
    if iree == "skip":  # IREE's fault, named as such: the row is kept
        assert outcome["iree"].note == "IREE 3.13 runtime error", outcome["iree"]


def _sharded_case(seed: str) -> training.TrainSpec:
    return _case(seed, layout=(lambda s: s.model.arch.sharding if s.model.category == "transformer" else "", "fsdp"))


def test_sharded_steps_lay_out_parameters_optimizer_states_and_batches():
    programs = [p for s, p in zip(SPECS, PROGRAMS) if p.host_devices == 8]
    assert programs and all(p.style == "jax" and p.mesh for p in programs)
    program = training.render_train_step(_sharded_case("fsdp"))
    assert program.mesh == "fsdp=8" and "PARAM_SPECS" in program.source
    for text in ("sharding=param_sharding(path, x)", "sharding=state_sharding(path, x)", "sharding=batch_sharding"):
        assert text in program.source, text


@pytest.mark.slow
def test_an_fsdp_step_carries_its_layout_and_validates_on_8_devices():
    from generator.core import lowering
    from generator.runtime.device_server import lower_on_host_devices
    from generator.tools.validate.runner import RowRunner

    program = training.render_train_step(_sharded_case("fsdp"))
    pair = lower_on_host_devices(program.source, program.function_name)
    assert "sdy.mesh" in pair.stablehlo_ir and '{"fsdp"}' in pair.stablehlo_ir
    row = {
        "category": "train_step",
        "python_source": program.source,
        "function_name": program.function_name,
        "stablehlo_ir": pair.stablehlo_ir,
        "jax_version": lowering.JAX_VERSION,
        "lowering": lowering.lowering_method(8, static_argnums=pair.static_argnums),
    }
    with RowRunner(host_devices=8, time_limit=240) as runner:
        results = runner.run(row, ["reproduce", "execute"])
    assert {k: v.status.value for k, v in results.items()} == {"reproduce": "pass", "execute": "pass"}, results
