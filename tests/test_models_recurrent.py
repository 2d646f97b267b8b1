"""The recurrent family, composed from blocks: draws cover the mixers, hybrids and heads; the
linear-recurrence scans agree (associative and sequential); the three styles of one spec
compute the same function; the validator's checks pass at real and reduced size."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from generator.core.models.compose import grammar, render
from generator.core.models.compose.spec import ModelSpec
from tests.modelkit import draw, draw_specs, lower_real, reduced_outputs, validator_checks

CATEGORY = "recurrent"
N_DRAWS = 300


def test_draws_cover_mixers_hybrids_and_heads():
    specs = draw_specs(CATEGORY, N_DRAWS)
    assert [render.render(s) for s in specs[:10]] == draw(CATEGORY, 10)

    def seen(get) -> set:
        return {get(s) for s in specs}

    assert seen(lambda s: s.style) == {"jax", "flax_nnx", "equinox"}
    assert seen(lambda s: s.arch.layer.recurrent.kind) == {"lstm", "gru", "rglru", "mamba", "s4d"}
    assert seen(lambda s: s.arch.layer.recurrent.scan) == {"", "associative", "sequential"}
    assert seen(lambda s: s.arch.task) == {"lm", "classifier", "block"}
    assert seen(lambda s: s.arch.pooling) == {"", "last", "mean", "max", "none"}
    assert seen(lambda s: s.arch.layer.placement) >= {"plain", "pre"}
    assert any(s.arch.hybrid and "local" in s.arch.pattern for s in specs), "Griffin-style hybrids"
    assert any(s.arch.layer.recurrent.bidirectional for s in specs)
    assert any(s.arch.layer.recurrent.low_rank_dt for s in specs)
    assert {s.style for s in specs if s.arch.layer.recurrent.library} == {"flax_nnx", "equinox"}
    assert any(s.arch.sharding != "none" for s in specs)
    for s in specs:
        r = s.arch.layer.recurrent
        assert (r.kind in ("rglru", "mamba", "s4d")) == bool(r.scan) == (s.sizes.hidden_size > 0)
        assert not r.bidirectional or s.arch.task == "classifier", "a causal model reads forwards only"
        assert not r.library or (s.library_layers and s.style != "jax" and r.kind in ("lstm", "gru"))
        if not s.arch.attends:  # no attention: its neutral spec, so one program has one spec
            assert s.arch.layer.attention == grammar.NO_ATTENTION and s.sizes.num_heads == 0


def _spec(seed: str, **want) -> ModelSpec:
    rng = random.Random(seed)
    for _ in range(20_000):
        spec = grammar.sample(rng, CATEGORY)
        if spec.arch.sharding == "none" and all(get(spec) == v for get, v in want.values()):
            return spec
    raise AssertionError(f"no {CATEGORY} spec with {list(want)}")


@pytest.mark.parametrize("kind", ["rglru", "mamba", "s4d"])
def test_associative_and_sequential_scans_agree(kind):
    spec = _spec(
        f"scan:{kind}", kind=(lambda s: s.arch.layer.recurrent.kind, kind), task=(lambda s: s.arch.task, "block")
    )
    spec = dataclasses.replace(spec, dtype="float32", style="jax")
    outputs = {}
    for scan in ("associative", "sequential"):
        layer = dataclasses.replace(
            spec.arch.layer, recurrent=dataclasses.replace(spec.arch.layer.recurrent, scan=scan)
        )
        outputs[scan] = reduced_outputs(
            render.render(dataclasses.replace(spec, arch=dataclasses.replace(spec.arch, layer=layer)))
        )
    assert np.abs(outputs["sequential"]).max() > 0
    np.testing.assert_allclose(outputs["associative"], outputs["sequential"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["lstm", "gru", "mamba", "rglru"])
def test_the_three_styles_of_a_spec_compute_the_same_function(kind):
    spec = _spec(
        f"styles:{kind}",
        kind=(lambda s: s.arch.layer.recurrent.kind, kind),
        task=(lambda s: s.arch.task != "block", True),
    )
    hand_written = dataclasses.replace(spec.arch.layer.recurrent, library=False)
    arch = dataclasses.replace(spec.arch, layer=dataclasses.replace(spec.arch.layer, recurrent=hand_written))
    spec = dataclasses.replace(spec, arch=arch, dtype="float32", library_layers=False)
    outputs = {
        style: reduced_outputs(render.render(dataclasses.replace(spec, style=style)))
        for style in ("jax", "flax_nnx", "equinox")
    }
    np.testing.assert_allclose(outputs["flax_nnx"], outputs["jax"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(outputs["equinox"], outputs["jax"], rtol=2e-4, atol=2e-4)


CASES = {
    "nnx-griffin-lm": dict(style=(lambda s: s.style, "flax_nnx"), hybrid=(lambda s: "local" in s.arch.pattern, True)),
    "jax-bidirectional-lstm": dict(
        style=(lambda s: s.style, "jax"), bi=(lambda s: s.arch.layer.recurrent.bidirectional, True)
    ),
    "eqx-mamba": dict(style=(lambda s: s.style, "equinox"), kind=(lambda s: s.arch.layer.recurrent.kind, "mamba")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_size_lowering_and_validator(name):
    spec = _spec(name, **CASES[name])
    program = render.render(spec)
    ir = lower_real(program).stablehlo_ir
    assert "stablehlo.while" in ir or "stablehlo.reduce_window" in ir or spec.arch.layer.recurrent.scan == "associative"
    results = validator_checks(program, ir)
    assert {k: v.status.value for k, v in results.items()} == {"reproduce": "pass", "execute": "pass", "iree": "pass"}
