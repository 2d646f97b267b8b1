"""The vision family, composed from blocks: draws cover the grammar (convolutional nets, ViTs,
hybrids, diffusion U-Nets), a spec names its own shard, sizes come from the config, the three
styles of one spec compute the same function, and the validator's checks pass."""

from __future__ import annotations

import ast
import dataclasses
import random
import re

import numpy as np
import pytest

from generator.core import lowering
from generator.core.models import reduce_source
from generator.core.models.compose import vision
from generator.core.models.compose.conv import VisionSpec
from generator.core.models.reduce import config_defaults
from tests.modelkit import draw, draw_specs, filled, lower_real, validator_checks

CATEGORY = "vision"
N_DRAWS = 300


def test_draws_cover_the_grammar():
    specs = draw_specs(CATEGORY, N_DRAWS)
    assert [vision.render(s) for s in specs[:20]] == draw(CATEGORY, 20)

    def seen(get) -> set:
        return {v for s in specs for v in get(s)}

    convs = [s for s in specs if s.arch.stages]
    assert seen(lambda s: [s.style]) == {"jax", "flax_nnx", "equinox"}
    assert seen(lambda s: [s.arch.net]) == {"convnet", "vit", "hybrid", "unet"}
    assert seen(lambda s: [b.kind for b in s.arch.stages]) == {
        "basic",
        "bottleneck",
        "convnext",
        "mbconv",
        "fused_mbconv",
    }
    assert seen(lambda s: [s.arch.stem] if s.arch.stages else []) == {"conv", "conv_pool", "deep", "patchify"}
    assert seen(lambda s: [s.arch.downsample] if s.arch.stages else []) == {"block", "conv", "norm_conv", "pool_conv"}
    assert seen(lambda s: [s.arch.head] if s.arch.net == "convnet" else []) == {"pool", "norm_pool", "pool_norm"}
    assert seen(lambda s: [b.norm for b in s.arch.stages]) == {"group", "layer"}
    assert seen(lambda s: [b.scale for b in s.arch.stages]) == {"", "layer_scale", "grn"}
    assert any(b.preact for s in convs for b in s.arch.stages) and any(b.se for s in convs for b in s.arch.stages)
    assert seen(lambda s: [s.arch.patch] if s.arch.net == "vit" else []) == {"conv", "linear"}
    assert seen(lambda s: [s.arch.pool] if s.arch.encoder else []) == {"cls", "mean"}
    assert seen(lambda s: [s.arch.encoder.placement] if s.arch.encoder else []) == {
        "pre",
        "post",
        "sandwich",
        "parallel",
    }
    assert seen(lambda s: [s.arch.layout]) == {"unrolled", "scan"}
    unets = [s.arch.unet for s in specs if s.arch.unet]
    assert {u.attention for u in unets} == {"none", "einsum", "dpa"} and {u.up for u in unets} == {"repeat", "resize"}
    assert {u.down for u in unets} == {"conv", "pool"} and {u.scale_shift for u in unets} == {True, False}
    # EfficientNetV2: fused stages before MBConv stages
    assert any([b.kind for b in s.arch.stages][:2] == ["fused_mbconv", "mbconv"] for s in convs)
    assert seen(lambda s: [s.library_layers]) == {True, False}
    assert not any(s.library_layers for s in specs if s.style == "jax")
    # unused sizes keep their neutral values, so equal programs have equal specs
    for s in specs:
        assert len(s.sizes.depths) == len(s.arch.stages)
        assert (s.sizes.d_model > 0) == (s.arch.encoder is not None)
        assert (s.sizes.time_embed_dim > 0) == (s.arch.net == "unet")
        assert (s.sizes.num_groups > 0) == (s.arch.net == "unet" or any(b.norm == "group" for b in s.arch.stages))


def test_sources_read_their_sizes_from_the_config():
    for spec, program in zip(draw_specs(CATEGORY, 80), draw(CATEGORY, 80)):
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
        code = re.sub(r"keys\[\d+\]|jax\.random\.split\(key, \d+\)", "", code)  # a model's many children
        literals = {int(t) for t in re.findall(r"(?<![\w.])\d+(?![\w.])", code)}
        assert max(literals) <= 8, (literals, program.function_name)  # kernels, strides, key counts: no sizes
        assert "PRNGKey" not in program.source, "typed keys: jax.random.key"
        small = config_defaults(reduce_source(program.source))
        assert small["image_size"] <= 16 and small["batch_size"] <= 2
        assert all(v <= 64 for k, v in small.items() if k in ("channels", "d_model", "patch_size", "num_groups"))
        if spec.style == "equinox":
            assert "vmap" in program.transforms


def _outputs(spec: VisionSpec) -> np.ndarray:
    """The program at reduced size on images and timesteps that depend only on their shape;
    Equinox takes them channel-first and its maps are moved back channel-last."""
    import jax

    program = vision.render(spec)
    fn, args = lowering.load_source(reduce_source(program.source), program.function_name)
    channel_first = spec.style == "equinox"
    concrete = []
    for arg in args:
        if isinstance(arg, jax.ShapeDtypeStruct) and arg.dtype == np.int32:
            concrete.append(jax.numpy.asarray(np.arange(arg.shape[0]) * 37 % 1000, np.int32))
        elif isinstance(arg, jax.ShapeDtypeStruct) and arg.ndim == 4:
            b, *rest = arg.shape
            shape = (b, rest[1], rest[2], rest[0]) if channel_first else arg.shape
            images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
            concrete.append(images.transpose(0, 3, 1, 2) if channel_first else images)
        else:
            concrete.append(filled(arg, np.float32))
    out = np.asarray(jax.jit(fn, static_argnums=lowering.static_argnums(args))(*concrete))
    return out.transpose(0, 2, 3, 1) if channel_first and out.ndim == 4 else out


def _case(seed: str, **want) -> VisionSpec:
    rng = random.Random(seed)
    for _ in range(10_000):
        spec = vision.sample(rng)
        if all(get(spec) == value for get, value in want.values()):
            return spec
    raise AssertionError(f"no spec with {want}")


NET = {net: dict(net=(lambda s: s.arch.net, net)) for net in ("convnet", "vit", "hybrid", "unet")}


@pytest.mark.parametrize("net", list(NET))
def test_the_three_styles_of_a_spec_compute_the_same_function(net):
    """Same parameters (by name), same inputs, same outputs, at reduced size, in every style."""
    spec = _case(f"styles:{net}", **NET[net])
    spec = dataclasses.replace(spec, dtype="float32", library_layers=False)
    outputs = {style: _outputs(dataclasses.replace(spec, style=style)) for style in ("jax", "flax_nnx", "equinox")}
    assert np.isfinite(outputs["jax"]).all() and np.abs(outputs["jax"]).max() > 0
    np.testing.assert_allclose(outputs["flax_nnx"], outputs["jax"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(outputs["equinox"], outputs["jax"], rtol=2e-4, atol=2e-4)


CASES = {
    "jax-convnet": dict(style=(lambda s: s.style, "jax"), net=(lambda s: s.arch.net, "convnet")),
    "nnx-library-unet-attention": dict(
        style=(lambda s: s.style, "flax_nnx"),
        library=(lambda s: s.library_layers, True),
        net=(lambda s: s.arch.net, "unet"),
        attention=(lambda s: s.arch.unet and s.arch.unet.attention != "none", True),
    ),
    "eqx-vit": dict(style=(lambda s: s.style, "equinox"), net=(lambda s: s.arch.net, "vit")),
    "eqx-library-convnext": dict(
        style=(lambda s: s.style, "equinox"),
        library=(lambda s: s.library_layers, True),
        kind=(lambda s: s.arch.stages[:1] and s.arch.stages[0].kind, "convnext"),
    ),
    "nnx-hybrid-scan": dict(
        style=(lambda s: s.style, "flax_nnx"),
        net=(lambda s: s.arch.net, "hybrid"),
        layout=(lambda s: s.arch.layout, "scan"),
    ),
    "jax-efficientnet-bf16": dict(
        style=(lambda s: s.style, "jax"),
        kind=(lambda s: s.arch.stages[-1:] and s.arch.stages[-1].kind, "mbconv"),
        dtype=(lambda s: s.dtype, "bfloat16"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_size_lowering_and_validator(name):
    spec = _case(name, **CASES[name])
    program = vision.render(spec)
    pair = lower_real(program)
    ir = pair.stablehlo_ir
    assert "stablehlo.convolution" in ir or spec.arch.patch == "linear"
    assert ("stablehlo.while" in ir) == (spec.arch.layout == "scan")
    s = spec.sizes
    image = (s.image_size, s.image_size)
    want = (
        ((s.batch_size, s.in_channels, *image) if spec.style == "equinox" else (s.batch_size, *image, s.in_channels))
        if spec.arch.net == "unet"
        else (s.batch_size, s.num_classes)
    )
    assert pair.output_signature[0][0] == want
    results = validator_checks(program, ir)
    assert {k: v.status.value for k, v in results.items()} == {
        "reproduce": "pass",
        "execute": "pass",
        "iree": "pass",
    }, results
