"""The transformer family, composed from blocks: draws cover the grammar, every draw names its
own shard, the three styles of one spec compute the same function, sharded programs carry
their layouts into the IR, and the validator's checks pass at real and reduced size."""

from __future__ import annotations

import ast
import dataclasses
import functools
import random
import re

import numpy as np
import pytest

from generator.core import lowering
from generator.core.models import reduce_source
from generator.core.models.compose import grammar, render
from generator.core.models.compose.spec import ModelSpec
from generator.core.models.reduce import config_defaults
from tests.modelkit import draw, draw_specs, lower_real, reduced_outputs, validator_checks

CATEGORY = "transformer"
N_DRAWS = 200


def test_draws_cover_the_grammar():
    specs = draw_specs(CATEGORY, N_DRAWS)
    assert [render.render(s) for s in specs[:20]] == draw(CATEGORY, 20)

    def seen(get) -> set:
        return {get(s) for s in specs}

    assert seen(lambda s: s.style) == {"jax", "flax_nnx", "equinox"}
    assert seen(lambda s: s.arch.task) == {"lm", "classifier", "block"}
    assert seen(lambda s: s.arch.layout) == {"unrolled", "scan"}
    assert seen(lambda s: s.arch.sharding) == {"none", "data", "fsdp", "tensor", "fsdp_tensor"}
    assert seen(lambda s: s.arch.layer.placement) == {"pre", "post", "sandwich", "parallel"}
    assert seen(lambda s: s.arch.layer.attention.impl) == {"grouped", "repeat", "dpa"}
    assert seen(lambda s: s.arch.layer.attention.rope) == {"half", "interleaved", "none"}
    assert seen(lambda s: s.arch.layer.mlp.activation) == {"swiglu", "geglu", "gelu", "relu2"}
    assert seen(lambda s: s.arch.layer.norm) == {"rms", "layer"}
    assert seen(lambda s: s.library_layers) == {True, False}
    assert any(s.arch.hybrid for s in specs) and any(s.arch.pattern == ("local",) for s in specs)
    assert any(s.arch.remat for s in specs)
    # the idiom is the writer's: plain JAX has no library layers
    assert not any(s.library_layers for s in specs if s.style == "jax")
    # unused sizes keep their neutral values, so equal programs have equal specs
    for s in specs:
        assert (s.sizes.window_size > 0) == s.arch.local
        assert (s.sizes.vocab_size > 0) == (s.arch.task != "block")
        assert (s.sizes.attn_softcap > 0) == s.arch.layer.attention.softcap
        assert bool(s.sizes.mesh_shape) == (s.arch.sharding != "none")
    sharded = sum(s.arch.sharding != "none" for s in specs) / len(specs)
    assert 0.45 <= sharded <= 0.75, sharded  # so at least 10% of a models build is sharded


def test_sources_read_their_sizes_from_the_config():
    for spec, program in zip(draw_specs(CATEGORY, 60), draw(CATEGORY, 60)):
        tree = ast.parse(program.source)
        imported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert imported - {"jax.numpy"} <= used | {"jax"}, f"unused imports in {program.function_name}"
        code = program.source.split("class " + spec.config_name, 1)[1].split("\n\n\n", 1)[1]
        code = "\n".join(line for line in code.splitlines() if not line.startswith("MESH = "))
        literals = {int(t) for t in re.findall(r"(?<![\w.])\d+(?![\w.])", code)}
        assert max(literals) <= 8, (literals, program.function_name)  # key counts, layer indices: no sizes
        assert "PRNGKey" not in program.source, "typed keys: jax.random.key"
        reduce_source(program.source)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_three_styles_of_a_spec_compute_the_same_function(seed):
    """Same parameters (by name), same inputs, same outputs, at reduced size, in every style."""
    rng = random.Random(f"styles:{seed}")
    while True:
        spec = grammar.sample(rng, CATEGORY)
        if spec.arch.sharding == "none" and spec.arch.task != "block":
            break
    spec = dataclasses.replace(spec, dtype="float32", library_layers=False)
    outputs = {
        style: reduced_outputs(render.render(dataclasses.replace(spec, style=style)))
        for style in ("jax", "flax_nnx", "equinox")
    }
    assert np.isfinite(outputs["jax"]).all()
    np.testing.assert_allclose(outputs["flax_nnx"], outputs["jax"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(outputs["equinox"], outputs["jax"], rtol=2e-4, atol=2e-4)


def _case(seed: str, **want) -> ModelSpec:
    rng = random.Random(seed)
    for _ in range(10_000):
        spec = grammar.sample(rng, CATEGORY)
        if all(get(spec) == value for get, value in want.values()):
            return spec
    raise AssertionError(f"no spec with {want}")


CASES = {
    "jax-lm-scan": dict(
        style=(lambda s: s.style, "jax"),
        layout=(lambda s: s.arch.layout, "scan"),
        none=(lambda s: s.arch.sharding, "none"),
    ),
    "nnx-hybrid": dict(
        style=(lambda s: s.style, "flax_nnx"),
        hybrid=(lambda s: s.arch.hybrid, True),
        none=(lambda s: s.arch.sharding, "none"),
    ),
    "eqx-classifier": dict(
        style=(lambda s: s.style, "equinox"),
        task=(lambda s: s.arch.task, "classifier"),
        none=(lambda s: s.arch.sharding, "none"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_size_lowering_and_validator(name):
    spec = _case(name, **CASES[name])
    program = render.render(spec)
    pair = lower_real(program)
    ir = pair.stablehlo_ir
    assert ("stablehlo.while" in ir) == (spec.arch.layout == "scan")
    out = pair.output_signature[0][0]
    s = spec.sizes
    assert out == {"lm": (s.batch_size, s.seq_len, s.vocab_size), "classifier": (s.batch_size, s.num_classes)}.get(
        spec.arch.task, (s.batch_size, s.seq_len, s.d_model)
    )
    results = validator_checks(program, ir)
    assert {k: v.status.value for k, v in results.items()} == {"reproduce": "pass", "execute": "pass", "iree": "pass"}


@functools.cache
def _sharded_lowering(style: str):
    """A sharded lm of ``style``, rendered and lowered on 8 host devices, its layout checked."""
    from generator.runtime.device_server import lower_on_host_devices

    spec = _case(
        f"sharded:{style}",
        style=(lambda s: s.style, style),
        sharding=(lambda s: s.arch.sharding in ("tensor", "fsdp_tensor"), True),
        task=(lambda s: s.arch.task, "lm"),
    )
    program = render.render(spec)
    assert program.host_devices == 8 and program.mesh.endswith(f"model={spec.sizes.mesh_shape[1]}")
    assert "NamedSharding" in program.source and "constrain(" in program.source
    pair = lower_on_host_devices(program.source, program.function_name)
    ir = pair.stablehlo_ir
    assert "sdy.mesh" in ir and "sdy.sharding_constraint" in ir
    assert re.search(r'sdy.sharding = #sdy.sharding<@mesh, \[\{[^]]*\}, \{"model"\}\]>', ir), (
        "a weight split over model"
    )
    return program, pair


@pytest.mark.parametrize("style", ["jax", "flax_nnx", "equinox"])
def test_sharded_programs_carry_their_layout(style):
    _sharded_lowering(style)


# The validator's 8-device child runs a row the same way whatever its style: one style by default,
# the others with the slow tests (every style's sharded lowering is checked above).
@pytest.mark.parametrize(
    "style", ["jax", pytest.param("flax_nnx", marks=pytest.mark.slow), pytest.param("equinox", marks=pytest.mark.slow)]
)
def test_sharded_programs_validate_on_8_devices(style):
    from generator.tools.validate.runner import RowRunner

    program, pair = _sharded_lowering(style)
    row = {
        "category": CATEGORY,
        "python_source": program.source,
        "function_name": program.function_name,
        "stablehlo_ir": pair.stablehlo_ir,
        "jax_version": lowering.JAX_VERSION,
        "lowering": lowering.lowering_method(8, static_argnums=pair.static_argnums),  # as the row would say
    }
    with RowRunner(host_devices=8, time_limit=240) as runner:
        results = runner.run(row, ["reproduce", "execute"])
    assert {k: v.status.value for k, v in results.items()} == {"reproduce": "pass", "execute": "pass"}, results


def test_reduced_sizes_fit_every_mesh():
    for spec in draw_specs(CATEGORY, N_DRAWS):
        if spec.arch.sharding == "none":
            continue
        small = config_defaults(reduce_source(render.render(spec).source))
        axes = spec.sizes.mesh_shape
        assert small["global_batch_size"] % axes[0] == 0
        if len(axes) == 2:
            assert small["num_heads"] % axes[1] == 0 and small["d_ff"] % axes[1] == 0
