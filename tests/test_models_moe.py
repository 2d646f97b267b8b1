"""The moe family, composed from blocks: draws cover the dispatches and tasks, the four
dispatches compute the same layer when no token is dropped, the three styles of one spec
compute the same function, and the validator's checks pass at real and reduced size."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from generator.core.models.compose import grammar, render
from generator.core.models.compose.spec import ModelSpec
from tests.modelkit import draw, draw_specs, lower_real, reduced_outputs, validator_checks

CATEGORY = "moe"
N_DRAWS = 200


def test_draws_cover_dispatches_tasks_and_styles():
    specs = draw_specs(CATEGORY, N_DRAWS)
    assert [render.render(s) for s in specs[:10]] == draw(CATEGORY, 10)

    def seen(get) -> set:
        return {get(s) for s in specs}

    assert seen(lambda s: s.style) == {"jax", "flax_nnx", "equinox"}
    assert seen(lambda s: s.arch.task) == {"moe_layer", "block", "lm"}
    assert seen(lambda s: s.arch.layer.moe.dispatch) == {"dense", "capacity", "sorted", "ragged"}
    assert seen(lambda s: s.arch.layer.moe.shared_expert) == {True, False}
    assert seen(lambda s: s.arch.layer.moe.aux_output) == {"dict", "weighted"}
    assert any(s.sizes.num_experts >= 32 and s.sizes.experts_per_token >= 2 for s in specs), "fine-grained experts"
    # a vmapped Equinox layer dispatches by einsums (ragged_dot has no batching rule)
    assert not any(s.style == "equinox" and s.arch.layer.moe.dispatch in ("sorted", "ragged") for s in specs)
    # around attention a mixture of experts computes in float32 (near-tied router logits)
    assert all(s.dtype == "float32" for s in specs if s.arch.task != "moe_layer")
    for s in specs:  # an MoE layer alone has no attention: its neutral spec, so one program, one spec
        if s.arch.task == "moe_layer":
            assert s.arch.layer.attention == grammar.NO_ATTENTION and s.sizes.num_heads == 0
        if not s.arch.layer.moe.shared_expert:
            assert s.arch.layer.mlp == grammar.NO_MLP and s.sizes.d_ff == 0


def _layer_spec(seed: str) -> ModelSpec:
    rng = random.Random(seed)
    while True:
        spec = grammar.sample(rng, CATEGORY)
        if spec.arch.task == "moe_layer" and spec.arch.sharding == "none" and spec.style == "jax":
            return dataclasses.replace(spec, dtype="float32")


def test_the_four_dispatches_compute_the_same_layer_when_nothing_is_dropped():
    spec = _layer_spec("dispatch")
    moe = spec.arch.layer.moe
    outputs = {}
    for dispatch in ("dense", "capacity", "sorted", "ragged"):
        combine = "segment_sum" if dispatch in ("sorted", "ragged") else ""
        layer = dataclasses.replace(spec.arch.layer, moe=dataclasses.replace(moe, dispatch=dispatch, combine=combine))
        # capacity for every assignment of every token: nothing is dropped
        sizes = dataclasses.replace(
            spec.sizes, capacity_factor=float(spec.sizes.num_experts) if combine or dispatch == "capacity" else 0.0
        )
        variant = dataclasses.replace(spec, arch=dataclasses.replace(spec.arch, layer=layer), sizes=sizes)
        outputs[dispatch] = reduced_outputs(render.render(variant))
    assert np.abs(outputs["dense"]).max() > 0
    for dispatch in ("capacity", "sorted", "ragged"):
        np.testing.assert_allclose(outputs[dispatch], outputs["dense"], rtol=1e-4, atol=1e-4, err_msg=dispatch)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_three_styles_of_a_spec_compute_the_same_function(seed):
    """Dense dispatch: routing is per token, so an Equinox layer vmapped over sequences computes
    the batched layer's outputs (capacity and the losses are per sequence there)."""
    rng = random.Random(f"moe-styles:{seed}")
    while True:
        spec = grammar.sample(rng, CATEGORY)
        if spec.arch.sharding == "none" and spec.arch.task != "moe_layer":
            break
    layer = dataclasses.replace(
        spec.arch.layer, moe=dataclasses.replace(spec.arch.layer.moe, dispatch="dense", combine="")
    )
    sizes = dataclasses.replace(spec.sizes, capacity_factor=0.0)
    spec = dataclasses.replace(
        spec, arch=dataclasses.replace(spec.arch, layer=layer), sizes=sizes, library_layers=False
    )
    outputs = {
        style: reduced_outputs(render.render(dataclasses.replace(spec, style=style)))
        for style in ("jax", "flax_nnx", "equinox")
    }
    np.testing.assert_allclose(outputs["flax_nnx"], outputs["jax"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(outputs["equinox"], outputs["jax"], rtol=2e-4, atol=2e-4)


CASES = {
    "jax-lm-ragged": dict(style="jax", task="lm", dispatch="ragged"),
    "nnx-block-sorted": dict(style="flax_nnx", task="block", dispatch="sorted"),
    "eqx-layer-capacity": dict(style="equinox", task="moe_layer", dispatch="capacity"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_size_lowering_and_validator(name):
    want = CASES[name]
    rng = random.Random(name)
    while True:
        spec = grammar.sample(rng, CATEGORY)
        if (spec.style, spec.arch.task, spec.arch.layer.moe.dispatch, spec.arch.sharding) == (*want.values(), "none"):
            break
    program = render.render(spec)
    ir = lower_real(program).stablehlo_ir
    assert "stablehlo.sort" in ir or want["dispatch"] not in ("sorted", "ragged")
    results = validator_checks(program, ir)
    assert {k: v.status.value for k, v in results.items()} == {"reproduce": "pass", "execute": "pass", "iree": "pass"}
