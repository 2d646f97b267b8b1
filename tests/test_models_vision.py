"""The vision model family: ResNets, ViTs and diffusion U-Nets in plain JAX, Flax NNX and Equinox.

Drawn programs cover every variant in every style and follow the source conventions; a handful
(one per variant, across the styles) lower at real size to the ops their variant implies and pass
the validator's own checks (reproduce, reduced-size execution, IREE); reduction rewrites only the
config defaults and leaves small inputs.
"""

from __future__ import annotations

import ast
import functools
import math
import random

import jax
import jax.numpy as jnp
import pytest
from jax import lax

import generator.core.lowering as lowering
from generator.core.models import reduce_source, vision
from generator.core.models.reduce import config_defaults
from tests.modelkit import draw, lower_real, validator_checks

CATEGORY = "vision"
CONFIG_VARIANT = {"ResNetConfig": "resnet", "ViTConfig": "vit", "UNetConfig": "unet"}


def _variant(source: str) -> str:
    tree = ast.parse(source)
    names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")]
    assert len(names) == 1
    return CONFIG_VARIANT[names[0]]


def _op_names() -> set[str]:
    return {n for mod in (jnp, lax, jax.nn, jax.numpy.linalg) for n in dir(mod) if not n.startswith("_")}


# --- drawing --------------------------------------------------------------------------------------


def test_draws_cover_every_variant_in_every_style_and_follow_the_conventions():
    programs = draw(CATEGORY, 40)
    combos = {(_variant(p.source), p.style) for p in programs}
    assert combos == {(v, s) for v in vision.VARIANTS for s in vision.STYLE_NAMES}
    sources = "\n".join(p.source for p in programs)
    # BatchNorm in training mode (returns new statistics) and in evaluation mode (running averages)
    assert "new_stats" in sources and "BatchNorm in inference mode" in sources
    assert "nnx.BatchNorm(" in sources and "eqx.nn.make_with_state" in sources
    # ViT patch embeddings both ways; U-Net resampling and attention
    assert 'padding="VALID"' in sources and "patches.transpose(" in sources
    assert "jax.image.resize(" in sources and "jnp.repeat(" in sources and "dot_product_attention" in sources
    assert "lax.scan(" in sources and "timestep_embedding(" in sources and "GroupNorm" in sources
    ops = _op_names()
    for p in programs:
        tree = ast.parse(p.source)
        assert p.category == CATEGORY
        assert not all(part in ops for part in p.function_name.split("_")), p.function_name
        reduced = reduce_source(p.source)
        assert reduced != p.source
        ast.parse(reduced)
        # every import is used
        imported = {
            (a.asname or a.name).split(".")[0]
            for n in tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names
        }
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert imported <= used, (p.function_name, imported - used)
        assert "example_args" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if p.style == "equinox":
            assert "vmap" in p.transforms


def test_sampling_and_rendering_are_separate_and_deterministic():
    specs = [vision.sample(random.Random(f"det:{i}")) for i in range(20)]
    assert specs == [vision.sample(random.Random(f"det:{i}")) for i in range(20)]
    assert [vision.render(s) for s in specs] == [vision.render(s) for s in specs]
    assert len({vision.render(vision.sample(random.Random(i))).source for i in range(200)}) == 200
    module = ast.parse(open(vision.__file__).read())
    roots = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0] if not getattr(n, "level", 0) else "."
        for n in module.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    assert not roots & {"jax", "flax", "equinox", "optax", "numpy"}


# --- lowering and the validator ------------------------------------------------------------------

_BASE = {"in_channels": 3, "num_classes": 100}
CASES = {
    # plain JAX ResNet, BatchNorm in evaluation mode, ImageNet stem with max pooling, bfloat16
    "resnet_jax_eval": (
        vision.Spec(
            style="jax",
            variant="resnet",
            scope="net",
            function_name="forward",
            dtype="bfloat16",
            batch_size=8,
            image_size=128,
            channels=64,
            stage_sizes=(1, 1, 1),
            imagenet_stem=True,
            bn_train=False,
            epsilon=1e-3,
            **_BASE,
        ),
        ("stablehlo.convolution", "stablehlo.reduce_window", "stablehlo.rsqrt"),
    ),
    # Flax NNX bottleneck block with a strided projection shortcut, BatchNorm in training mode
    "resnet_nnx_train_block": (
        vision.Spec(
            style="flax_nnx",
            variant="resnet",
            scope="block",
            function_name="apply_block",
            dtype="float32",
            batch_size=16,
            image_size=28,
            channels=128,
            bottleneck=True,
            downsample_block=True,
            split_stats=True,
        ),
        ("stablehlo.convolution", "stablehlo.rsqrt"),
    ),
    # plain JAX ViT with its encoder blocks under lax.scan, reshape + linear patches
    "vit_jax_scan": (
        vision.Spec(
            style="jax",
            variant="vit",
            scope="net",
            function_name="forward",
            dtype="bfloat16",
            batch_size=16,
            image_size=64,
            patch_size=8,
            d_model=384,
            num_heads=6,
            d_ff=1536,
            num_layers=6,
            scan_layers=True,
            conv_patches=False,
            cls_token=True,
            attention="einsum",
            **_BASE,
        ),
        ("stablehlo.while", "stablehlo.dot_general", "stablehlo.exponential"),
    ),
    # Equinox diffusion block: timestep embedding, GroupNorm, attention, upsampling
    "unet_eqx_block": (
        vision.Spec(
            style="equinox",
            variant="unet",
            scope="block",
            function_name="apply_block",
            dtype="float32",
            batch_size=4,
            image_size=16,
            channels=128,
            num_groups=32,
            time_embed_dim=512,
            num_heads=4,
            self_attention=True,
            resample="up",
            resize_upsample=True,
        ),
        # SiLU lowers to x / (1 + exp(-x)); nearest resizing gathers
        ("stablehlo.convolution", "stablehlo.sine", "stablehlo.cosine", "stablehlo.exponential", "stablehlo.gather"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lowers_at_real_size_and_passes_the_validator(name):
    spec, ops = CASES[name]
    program = vision.render(spec)
    pair = lower_real(program)
    for op in ops:
        assert op in pair.stablehlo_ir, (name, op)
    assert 100 <= pair.stablehlo_ir.count("\n") <= 5000
    outcomes = validator_checks(program, pair.stablehlo_ir)
    assert outcomes["reproduce"].status.value == "pass", outcomes["reproduce"]
    assert outcomes["execute"].status.value == "pass", outcomes["execute"]
    assert outcomes["iree"].status.value == "pass", outcomes["iree"]


def test_training_mode_batchnorm_returns_updated_statistics():
    """A training-mode ResNet returns its logits and new running averages of the same structure."""
    spec = CASES["resnet_nnx_train_block"][0]
    program = vision.render(spec)
    fn, args = lowering.load_source(reduce_source(program.source), program.function_name)
    out, new_stats = jax.eval_shape(functools.partial(fn, args[0]), *args[1:])
    assert jax.tree_util.tree_structure(new_stats) == jax.tree_util.tree_structure(args[2])
    assert out.shape[0] == 2


def test_evaluation_mode_bfloat16_resnet_runs_finite_on_xla_cpu():
    """An evaluation-mode bfloat16 ResNet applies its ReLUs (after BatchNorm, after the residual
    add) in float32: with bfloat16 ReLUs XLA CPU fused the network up to the average pooling into
    one YNNPACK fusion that returned NaN (this row failed ``execute`` at reduced size)."""
    spec = vision.Spec(
        style="jax",
        variant="resnet",
        scope="net",
        function_name="classify",
        dtype="bfloat16",
        batch_size=2,
        image_size=32,
        channels=256,
        num_classes=10,
        stage_sizes=(1, 2),
        bn_train=False,
        epsilon=1e-3,
    )
    program = vision.render(spec)
    assert "config, relu=True)" in program.source and "jax.nn.relu(y + shortcut)" not in program.source
    outcomes = validator_checks(program, lower_real(program).stablehlo_ir)
    assert outcomes["execute"].status.value == "pass", outcomes["execute"]
    assert outcomes["iree"].status.value == "pass", outcomes["iree"]


# --- reduction ------------------------------------------------------------------------------------


def _config_lines(source: str) -> set[int]:
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config"))
    return {n.lineno for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_reduction_changes_only_config_defaults_and_makes_inputs_small():
    programs = draw(CATEGORY, 40, seed=1)
    seen = set()
    for program in programs:
        reduced = reduce_source(program.source)
        real_lines, small_lines = program.source.splitlines(), reduced.splitlines()
        assert len(real_lines) == len(small_lines)
        changed = {i + 1 for i, (a, b) in enumerate(zip(real_lines, small_lines)) if a != b}
        assert changed and changed <= _config_lines(program.source)
        small = config_defaults(reduced)
        assert small["image_size"] <= 16 and small["batch_size"] <= 2
        assert all(v <= 64 for k, v in small.items() if k in ("channels", "d_model", "patch_size", "num_groups"))
        key = (_variant(program.source), program.style)
        if key in seen:  # loading costs an eval_shape: one program per variant and style
            continue
        seen.add(key)
        _, args = lowering.load_source(reduced, program.function_name)
        leaves = [x for x in jax.tree_util.tree_leaves(args) if lowering.is_array_like(x)]
        sizes = [math.prod(x.shape) for x in leaves]
        assert max(sizes) <= 1 << 16 and sum(sizes) <= 1 << 20, (key, max(sizes), sum(sizes))
    assert len(seen) >= 6
