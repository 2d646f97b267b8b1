"""vision: image models as JAX users write them: ResNets, Vision Transformers and diffusion U-Nets.

Three variants, each in three styles (plain JAX over parameter dicts, Flax NNX, Equinox):

- ``resnet``: basic or bottleneck residual blocks (3x3/1x1 convolutions, BatchNorm, ReLU, a
  projection shortcut, stride 2 when a stage downsamples), either one block on a feature map
  or a small network (stem, stages, global average pooling, classifier). BatchNorm runs in
  training mode (batch statistics; the updated running averages are returned) or, in plain
  JAX, in evaluation mode (running averages).
- ``vit``: a Vision Transformer classifier: patch embedding (a strided convolution or
  reshape + linear), class token or mean pooling, learned position embeddings, pre-LayerNorm
  encoder blocks (unmasked multi-head attention, GELU MLP), unrolled or under ``lax.scan``.
- ``unet``: diffusion blocks: GroupNorm, SiLU, 3x3 convolutions, sinusoidal timestep
  embeddings projected into each residual block, downsampling (strided convolution or
  reshape-based average pooling), upsampling (``jax.image.resize`` nearest or ``jnp.repeat``),
  optional self-attention at the lowest resolution; one block or a small U-Net.

Plain JAX and Flax take NHWC images; Equinox modules are unbatched and channel-first, so the
jitted function ``jax.vmap``s them over an NCHW batch. Every size lives in the ``*Config``
dataclass (names from ``reduce.REDUCTIONS``), so ``reduce_source`` shrinks a program to 16x16
images, 16 channels and 4 groups without touching its code.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .base import BATCH_SIZES, CHANNELS, IMAGE_SIZES, Family, ModelProgram, config_class, pick

CATEGORY = "vision"
VARIANTS = ("resnet", "vit", "unet")
STYLE_NAMES = ("jax", "flax_nnx", "equinox")


@dataclass(frozen=True)
class Spec:
    """Every choice of one vision program (``render`` turns it into source text).

    ``scope`` is ``"block"`` (one residual / diffusion block on a feature map) or ``"net"``
    (a whole network on images). Fields a variant does not use keep their defaults.
    """

    style: str
    variant: str
    scope: str
    function_name: str
    dtype: str
    batch_size: int
    image_size: int
    channels: int = 64
    in_channels: int = 3
    num_classes: int = 1000
    # resnet
    bottleneck: bool = False
    bn_train: bool = True
    imagenet_stem: bool = False
    stage_sizes: tuple[int, ...] = (1, 1)
    downsample_block: bool = False
    split_stats: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    # vit
    patch_size: int = 16
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 2
    conv_patches: bool = True
    cls_token: bool = True
    attention: str = "einsum"  # einsum | dot_product_attention | module
    scan_layers: bool = False
    # unet
    num_groups: int = 32
    time_embed_dim: int = 512
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    self_attention: bool = False
    strided_downsample: bool = True
    resize_upsample: bool = True
    resample: str = "none"  # block scope: none | down | up
    float_timesteps: bool = False


# --- sampling -----------------------------------------------------------------------------------

_RESNET_STAGES = ((1, 1), (2, 2), (1, 1, 1), (2, 1, 1), (1, 1, 1, 1), (1, 2), (2, 1))
_UNET_MULTS = ((1, 2), (1, 2, 2), (1, 2, 4), (1, 1, 2), (1, 2, 3), (1, 2, 2, 2))
_NAMES = {
    ("resnet", "net", True): ("train_forward", "forward_train", "train_apply"),
    ("resnet", "net", False): ("forward", "predict", "classify"),
    ("resnet", "block", True): ("apply_block", "block_forward"),
    ("resnet", "block", False): ("apply_block", "block_forward"),
    ("vit", "net", True): ("forward", "classify", "vit_forward"),
    ("unet", "net", True): ("denoise", "predict_noise", "forward"),
    ("unet", "block", True): ("apply_block", "diffusion_block"),
}


def _batch(rng: random.Random, pixels: int, cap: int) -> int:
    return pick(rng, [b for b in BATCH_SIZES if b * pixels <= cap] or [1])


def _sample_resnet(rng: random.Random, style: str, dtype: str) -> dict:
    scope = pick(rng, ("net", "net", "block"))
    # Equinox and NNX BatchNorm run in training mode; evaluation mode reads running averages
    # from the parameter pytree (plain JAX).
    bn_train = style != "jax" or rng.random() < 0.5
    bottleneck = rng.random() < 0.4
    fields: dict = {
        "scope": scope,
        "bn_train": bn_train,
        "bottleneck": bottleneck,
        "momentum": pick(rng, (0.9, 0.99)),
        # Keras' default epsilon in evaluation mode: it bounds 1/sqrt(var + eps) where running variances are tiny.
        "epsilon": pick(rng, (1e-5, 1e-3)) if bn_train else 1e-3,
    }
    if style == "flax_nnx":
        fields["split_stats"] = rng.random() < 0.5
    if scope == "net":
        image = pick(rng, IMAGE_SIZES)
        imagenet_stem = image >= 96 and rng.random() < 0.8
        # At the validator's 16 pixels an ImageNet stem (4x) and two more strided stages leave 1x1
        # maps: training-mode BatchNorm over 2 values per channel turns bfloat16 rounding into sign flips.
        few_pixels = imagenet_stem and bn_train and dtype == "bfloat16"
        stages = pick(rng, [s for s in _RESNET_STAGES if len(s) <= 2] if few_pixels else _RESNET_STAGES)
        widest = 2 ** (len(stages) - 1) * (4 if bottleneck else 1)
        channels = pick(rng, [c for c in CHANNELS if c * widest <= 2048] or [64])
        fields.update(
            stage_sizes=stages,
            image_size=image,
            channels=channels,
            imagenet_stem=imagenet_stem,
            num_classes=pick(rng, (10, 100, 1000)) if image <= 64 else pick(rng, (100, 1000)),
            batch_size=_batch(rng, image * image, 1 << 22),
        )
    else:
        size = pick(rng, (14, 28, 32, 56, 64))
        channels = pick(rng, [c for c in CHANNELS if c * (8 if bottleneck else 2) <= 2048])
        fields.update(
            image_size=size,
            channels=channels,
            downsample_block=rng.random() < 0.5,
            batch_size=_batch(rng, size * size * channels, 1 << 26),
        )
    return fields


def _sample_vit(rng: random.Random, style: str, dtype: str) -> dict:
    image = pick(rng, IMAGE_SIZES)
    patch = pick(rng, [p for p in (4, 8, 14, 16, 32) if image % p == 0 and 2 <= image // p <= 32])
    d_model = pick(rng, (256, 384, 512, 768, 1024, 1280))
    head_dim = pick(rng, [hd for hd in (64, 128) if 4 <= d_model // hd <= 32])
    tokens = (image // patch) ** 2 + 1
    scan = style == "jax" and rng.random() < 0.4
    # jax.nn.dot_product_attention puts a dot algorithm on bfloat16 dots, which IREE's frontend refuses.
    fused = ("dot_product_attention",) if dtype == "float32" else ()
    # nnx.MultiHeadAttention calls jax.nn.dot_product_attention too (without dropout).
    forms = {
        "jax": ("einsum",) + fused,
        "flax_nnx": ("einsum",) + (("module",) + fused if fused else ()),
        "equinox": ("module",) + fused,  # eqx.nn.MultiheadAttention is einsums
    }
    attention = pick(rng, forms[style])
    return {
        "scope": "net",
        "image_size": image,
        "patch_size": patch,
        "d_model": d_model,
        "num_heads": d_model // head_dim,
        "d_ff": 4 * d_model,
        "num_layers": rng.randint(2, 12) if scan else rng.randint(1, 4),
        "scan_layers": scan,
        "conv_patches": rng.random() < 0.6,
        "cls_token": rng.random() < 0.6,
        "attention": attention,
        "num_classes": pick(rng, (10, 100, 1000)) if image <= 64 else pick(rng, (100, 1000, 21843)),
        "batch_size": _batch(rng, tokens, 1 << 16),
    }


def _sample_unet(rng: random.Random, style: str, dtype: str) -> dict:
    scope = pick(rng, ("net", "block"))
    fields: dict = {
        "scope": scope,
        "float_timesteps": rng.random() < 0.3,
        "in_channels": pick(rng, (3, 4)),
        "num_heads": pick(rng, (4, 8)),
        # the fused form: jax.nn.dot_product_attention (plain JAX) or nnx.MultiHeadAttention, float32 only
        "attention": "dot_product_attention" if dtype == "float32" and rng.random() < 0.6 else "einsum",
    }
    if scope == "net":
        mult = pick(rng, _UNET_MULTS)
        image = pick(rng, (32, 64, 96, 128))
        # NNX and Equinox spend more Python time per module when tracing: smaller U-Nets keep lowering fast.
        max_blocks = 4 if style == "jax" else 3
        mult = pick(rng, [m for m in _UNET_MULTS if len(m) <= max_blocks])
        num_blocks = pick(rng, [n for n in (1, 2) if n * len(mult) <= max_blocks])
        channels = pick(rng, [c for c in CHANNELS if c * max(mult) <= 1024 and c <= 256])
        lowest = image // 2 ** (len(mult) - 1)
        fields.update(
            image_size=image,
            channel_mult=mult,
            num_blocks=num_blocks,
            channels=channels,
            self_attention=lowest <= 32 and rng.random() < 0.6,
            strided_downsample=rng.random() < 0.6,
            resize_upsample=rng.random() < 0.6,
            batch_size=_batch(rng, image * image * channels, 1 << 26),
        )
    else:
        size = pick(rng, (8, 16, 32, 64))
        resample = pick(rng, ("none", "down", "up"))
        channels = pick(rng, CHANNELS)
        fields.update(
            image_size=size,
            channels=channels,
            channel_mult=pick(rng, ((1,), (2,))) if resample == "none" else (1,),
            self_attention=size <= 32 and rng.random() < 0.5,
            resample=resample,
            strided_downsample=rng.random() < 0.6,
            resize_upsample=rng.random() < 0.6,
            batch_size=_batch(rng, size * size * channels, 1 << 25),
        )
    fields["num_groups"] = pick(rng, (8, 16, 32))
    fields["time_embed_dim"] = 4 * fields["channels"]
    return fields


def sample(rng: random.Random) -> Spec:
    """Draw every choice of one vision program."""
    variant = pick(rng, VARIANTS)
    style = pick(rng, STYLE_NAMES)
    dtype = pick(rng, ("bfloat16", "bfloat16", "float32"))
    fields = {"resnet": _sample_resnet, "vit": _sample_vit, "unet": _sample_unet}[variant](rng, style, dtype)
    key = (variant, fields["scope"], fields.get("bn_train", True))
    return Spec(style=style, variant=variant, function_name=pick(rng, _NAMES[key]), dtype=dtype, **fields)


# --- rendering helpers ----------------------------------------------------------------------------

_TOP_LEVEL = re.compile(r"\n{2,}(?=def |class |@)")


def _imports(*, functools: bool = False, math: bool = False, lax: bool = False, lib: str | None = None) -> str:
    lines = ["import dataclasses"]
    if functools:
        lines.append("import functools")
    if math:
        lines.append("import math")
    lines += ["", "import jax", "import jax.numpy as jnp"]
    if lax:
        lines.append("from jax import lax")
    if lib == "flax_nnx":
        lines.append("from flax import nnx")
    elif lib == "equinox":
        lines.insert(lines.index("import jax"), "import equinox as eqx")
    return "\n".join(lines) + "\n"


def _join(*parts: str) -> str:
    """Top-level definitions separated by two blank lines (PEP 8)."""
    text = "\n\n".join(p.strip("\n") + "\n" for p in parts if p.strip())
    return _TOP_LEVEL.sub("\n\n\n", text)


def _sub(text: str, **names: str) -> str:
    for key, value in names.items():
        text = text.replace(f"@{key}@", value)
    return text


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else line for line in text.split("\n"))


# === ResNet ========================================================================================

_JAX_CONV = '''
def conv_kernel(key, size, in_features, out_features):
    """He-normal initialisation of a ``(size, size, in, out)`` HWIO kernel."""
    std = math.sqrt(2.0 / (size * size * in_features))
    return std * jax.random.normal(key, (size, size, in_features, out_features), jnp.float32)


def conv2d(x, kernel, strides=1):
    return lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(strides, strides),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
'''

_JAX_BN_PARAMS = """
def batch_norm_params(features):
    params = {"scale": jnp.ones((features,), jnp.float32), "bias": jnp.zeros((features,), jnp.float32)}
    stats = {"mean": jnp.zeros((features,), jnp.float32), "var": jnp.ones((features,), jnp.float32)}
    return params, stats
"""

_JAX_BN_TRAIN = '''
def batch_norm(x, params, stats, config):
    """BatchNorm with the batch's statistics; also returns the updated running averages."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
    y = (x32 - mean) * lax.rsqrt(var + config.epsilon) * params["scale"] + params["bias"]
    new_stats = {
        "mean": config.momentum * stats["mean"] + (1.0 - config.momentum) * mean,
        "var": config.momentum * stats["var"] + (1.0 - config.momentum) * var,
    }
    return y.astype(x.dtype), new_stats
'''

# Evaluation mode applies the ReLU that follows a BatchNorm (and the residual add and ReLU) in
# float32 before casting back, as an inference epilogue does. With bfloat16 ReLUs instead, XLA CPU
# (jaxlib 0.12) fuses a whole evaluation-mode network (convolutions and elementwise ops, no
# reduction in between) up to the global average pooling into one YNNPACK fusion that returns
# NaN for two bfloat16 ReLUs separated by a convolution, though every op is finite unfused.
_JAX_BN_EVAL = '''
def batch_norm(x, params, stats, config, relu=False):
    """BatchNorm in inference mode (running averages), then the ReLU if ``relu``, in float32."""
    inv_std = lax.rsqrt(jnp.maximum(stats["var"], 0.0) + config.epsilon)
    y = (x.astype(jnp.float32) - stats["mean"]) * inv_std * params["scale"] + params["bias"]
    if relu:
        y = jax.nn.relu(y)
    return y.astype(x.dtype)
'''


def _jax_bn_line(train: bool, out: str, inp: str, name: str, indent: int = 4, relu: bool = False) -> str:
    """A BatchNorm call (and, with ``relu``, the ReLU after it: its own line in training mode,
    fused into the float32 ``batch_norm`` in evaluation mode)."""
    pad = " " * indent
    if train:
        line = f'{pad}{out}, new_stats["{name}"] = batch_norm({inp}, params["{name}"], stats["{name}"], config)'
        return line + (f"\n{pad}{out} = jax.nn.relu({out})" if relu else "")
    fused = ", relu=True" if relu else ""
    return f'{pad}{out} = batch_norm({inp}, params["{name}"], stats["{name}"], config{fused})'


def _jax_resnet_block(spec: Spec) -> str:
    """``init_block`` and the block's apply function (plain JAX)."""
    train = spec.bn_train
    bn = lambda out, inp, name, indent=4, relu=False: _jax_bn_line(train, out, inp, name, indent, relu)  # noqa: E731
    if spec.bottleneck:
        init = '''
def init_block(key, in_features, features, strides):
    """Parameters and BatchNorm statistics of a bottleneck block (1x1, 3x3, 1x1 expanding 4x)."""
    keys = jax.random.split(key, 4)
    params, stats = {}, {}
    params["conv1"] = conv_kernel(keys[0], 1, in_features, features)
    params["bn1"], stats["bn1"] = batch_norm_params(features)
    params["conv2"] = conv_kernel(keys[1], 3, features, features)
    params["bn2"], stats["bn2"] = batch_norm_params(features)
    params["conv3"] = conv_kernel(keys[2], 1, features, 4 * features)
    params["bn3"], stats["bn3"] = batch_norm_params(4 * features)
    if strides != 1 or in_features != 4 * features:
        params["proj"] = conv_kernel(keys[3], 1, in_features, 4 * features)
        params["proj_bn"], stats["proj_bn"] = batch_norm_params(4 * features)
    return params, stats
'''
        body = [
            '    y = conv2d(x, params["conv1"])',
            bn("y", "y", "bn1", relu=True),
            '    y = conv2d(y, params["conv2"], strides)',
            bn("y", "y", "bn2", relu=True),
            '    y = conv2d(y, params["conv3"])',
            bn("y", "y", "bn3"),
        ]
        name, doc = "bottleneck_block", "1x1 reduce, 3x3 (strided), 1x1 expand, each with BatchNorm, plus the shortcut."
    else:
        init = '''
def init_block(key, in_features, features, strides):
    """Parameters and BatchNorm statistics of a basic block (two 3x3 convolutions)."""
    keys = jax.random.split(key, 3)
    params, stats = {}, {}
    params["conv1"] = conv_kernel(keys[0], 3, in_features, features)
    params["bn1"], stats["bn1"] = batch_norm_params(features)
    params["conv2"] = conv_kernel(keys[1], 3, features, features)
    params["bn2"], stats["bn2"] = batch_norm_params(features)
    if strides != 1 or in_features != features:
        params["proj"] = conv_kernel(keys[2], 1, in_features, features)
        params["proj_bn"], stats["proj_bn"] = batch_norm_params(features)
    return params, stats
'''
        body = [
            '    y = conv2d(x, params["conv1"], strides)',
            bn("y", "y", "bn1", relu=True),
            '    y = conv2d(y, params["conv2"])',
            bn("y", "y", "bn2"),
        ]
        name, doc = "basic_block", "Two 3x3 convolutions with BatchNorm and ReLU, plus the (projected) shortcut."
    lines = [f"def {name}(x, params, stats, strides, config):", f'    """{doc}"""']
    if train:
        lines.append("    new_stats = {}")
    lines += body
    lines += [
        "    shortcut = x",
        '    if "proj" in params:',
        '        shortcut = conv2d(x, params["proj"], strides)',
        bn("shortcut", "shortcut", "proj_bn", 8),
    ]
    if train:
        lines.append("    return jax.nn.relu(y + shortcut), new_stats")
    else:
        lines.append("    return jax.nn.relu(y.astype(jnp.float32) + shortcut.astype(jnp.float32)).astype(x.dtype)")
    return init + "\n\n" + "\n".join(lines) + "\n"


def _resnet_config(spec: Spec) -> str:
    if spec.scope == "net":
        fields = [
            ("batch_size", "int", spec.batch_size),
            ("image_size", "int", spec.image_size),
            ("in_channels", "int", spec.in_channels),
            ("channels", "int", spec.channels),
            ("num_classes", "int", spec.num_classes),
            ("stage_sizes", "tuple[int, ...]", spec.stage_sizes),
        ]
        doc = "A ResNet: widths double each stage, starting from ``channels``."
    else:
        fields = [
            ("batch_size", "int", spec.batch_size),
            ("image_size", "int", spec.image_size),
            ("channels", "int", spec.channels),
            ("downsample", "bool", spec.downsample_block),
        ]
        doc = "One residual block on a ``image_size`` x ``image_size`` feature map."
    fields += [("momentum", "float", spec.momentum), ("epsilon", "float", spec.epsilon), ("dtype", "str", spec.dtype)]
    return config_class("ResNetConfig", fields, doc)


def _block_io(spec: Spec) -> tuple[str, str, str]:
    """Input features, block width and strides of a block-scope ResNet program, as code."""
    expand = "4 * " if spec.bottleneck else ""
    width = "(2 if config.downsample else 1) * config.channels"
    return f"{expand}config.channels", width, "2 if config.downsample else 1"


def _render_resnet_jax(spec: Spec) -> tuple[str, tuple[str, ...]]:
    train = spec.bn_train
    block_fn = "bottleneck_block" if spec.bottleneck else "basic_block"
    expansion = "4 * " if spec.bottleneck else ""
    ret_doc = " and the updated BatchNorm statistics" if train else ""
    if spec.scope == "net":
        stem = 7 if spec.imagenet_stem else 3
        init = f'''
def init_params(config, key):
    """Initial parameters and BatchNorm statistics of the ResNet, as two pytrees."""
    keys = iter(jax.random.split(key, sum(config.stage_sizes) + 2))
    params, stats = {{}}, {{}}
    params["stem"] = conv_kernel(next(keys), {stem}, config.in_channels, config.channels)
    params["stem_bn"], stats["stem_bn"] = batch_norm_params(config.channels)
    in_features = config.channels
    for stage, num_blocks in enumerate(config.stage_sizes):
        features = config.channels * 2**stage
        for block in range(num_blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{{stage}}_block{{block}}"
            params[name], stats[name] = init_block(next(keys), in_features, features, strides)
            in_features = {expansion}features
    params["head"] = {{
        "kernel": jax.random.normal(next(keys), (in_features, config.num_classes), jnp.float32) / math.sqrt(in_features),
        "bias": jnp.zeros((config.num_classes,), jnp.float32),
    }}
    return params, stats
'''
        lines = [
            f"def {spec.function_name}(params, stats, images, config):",
            f'    """Class logits of a batch of NHWC images{ret_doc}."""',
        ]
        if train:
            lines.append("    new_stats = {}")
        lines.append(
            f'    x = conv2d(images.astype(config.dtype), params["stem"]{", 2" if spec.imagenet_stem else ""})'
        )
        lines.append(_jax_bn_line(train, "x", "x", "stem_bn", relu=True))
        if spec.imagenet_stem:
            lines.append('    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")')
        target = "x, new_stats[name]" if train else "x"
        lines += [
            "    for stage, num_blocks in enumerate(config.stage_sizes):",
            "        for block in range(num_blocks):",
            "            strides = 2 if stage > 0 and block == 0 else 1",
            '            name = f"stage{stage}_block{block}"',
            f"            {target} = {block_fn}(x, params[name], stats[name], strides, config)",
            "    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))",
            '    logits = features @ params["head"]["kernel"] + params["head"]["bias"]',
            "    return logits" + (", new_stats" if train else ""),
        ]
        images = "(config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32"
        tail = "params, stats, images, config"
    else:
        in_f, width, strides = _block_io(spec)
        init = f'''
def init_params(config, key):
    """Parameters and BatchNorm statistics of the block."""
    return init_block(key, {in_f}, {width}, {strides})
'''
        lines = [
            f"def {spec.function_name}(params, stats, hidden, config):",
            f'    """The residual block on a batch of NHWC feature maps{ret_doc}."""',
            f"    return {block_fn}(hidden.astype(config.dtype), params, stats, {strides}, config)",
        ]
        images = f"(config.batch_size, config.image_size, config.image_size, {in_f}), config.dtype"
        tail = "params, stats, hidden, config"
    data_name = tail.split(", ")[2]
    example = f"""
def example_args():
    config = ResNetConfig()
    params, stats = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
    {data_name} = jax.ShapeDtypeStruct({images})
    return {tail}
"""
    source = _join(
        _imports(functools=True, math=True, lax=True),
        _resnet_config(spec),
        _JAX_CONV,
        _JAX_BN_PARAMS,
        _JAX_BN_TRAIN if train else _JAX_BN_EVAL,
        _jax_resnet_block(spec),
        init,
        "\n".join(lines) + "\n",
        example,
    )
    return source, ()


def _nnx_resnet_block(spec: Spec) -> str:
    bn = "nnx.BatchNorm(@F@, momentum=config.momentum, epsilon=config.epsilon, dtype=dtype, rngs=rngs)"
    conv = "nnx.Conv(@I@, @O@, (@K@, @K@), strides=@S@, use_bias=False, dtype=dtype, rngs=rngs)"

    def c(i: str, o: str, k: int, s: str = "1") -> str:
        return _sub(conv, I=i, O=o, K=str(k), S=s)

    def b(f: str) -> str:
        return _sub(bn, F=f)

    if spec.bottleneck:
        name, doc = "BottleneckBlock", "A bottleneck residual block: 1x1 reduce, strided 3x3, 1x1 expand (4x)."
        out = "4 * features"
        layers = [
            f"self.conv1 = {c('in_features', 'features', 1)}",
            f"self.bn1 = {b('features')}",
            f"self.conv2 = {c('features', 'features', 3, 'strides')}",
            f"self.bn2 = {b('features')}",
            f"self.conv3 = {c('features', out, 1)}",
            f"self.bn3 = {b(out)}",
        ]
        call = [
            "y = nnx.relu(self.bn1(self.conv1(x)))",
            "y = nnx.relu(self.bn2(self.conv2(y)))",
            "y = self.bn3(self.conv3(y))",
        ]
    else:
        name, doc = "BasicBlock", "A basic residual block: two 3x3 convolutions with BatchNorm and ReLU."
        out = "features"
        layers = [
            f"self.conv1 = {c('in_features', 'features', 3, 'strides')}",
            f"self.bn1 = {b('features')}",
            f"self.conv2 = {c('features', 'features', 3)}",
            f"self.bn2 = {b('features')}",
        ]
        call = ["y = nnx.relu(self.bn1(self.conv1(x)))", "y = self.bn2(self.conv2(y))"]
    layers += [
        f"if strides != 1 or in_features != {out}:",
        f"    self.proj = {c('in_features', out, 1, 'strides')}",
        f"    self.proj_bn = {b(out)}",
        "else:",
        "    self.proj = None",
        "    self.proj_bn = None",
    ]
    call += [
        "shortcut = x",
        "if self.proj is not None:",
        "    shortcut = self.proj_bn(self.proj(x))",
        "return nnx.relu(y + shortcut)",
    ]
    return (
        f"class {name}(nnx.Module):\n"
        f'    """{doc}"""\n\n'
        "    def __init__(self, in_features: int, features: int, strides: int, config: ResNetConfig, *, rngs: nnx.Rngs):\n"
        "        dtype = jnp.dtype(config.dtype)\n"
        + _indent("\n".join(layers), 8)
        + "\n\n    def __call__(self, x: jax.Array) -> jax.Array:\n"
        + _indent("\n".join(call), 8)
        + "\n"
    )


def _render_resnet_nnx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    block_cls = "BottleneckBlock" if spec.bottleneck else "BasicBlock"
    expansion = "4 * " if spec.bottleneck else ""
    if spec.scope == "net":
        k = 7 if spec.imagenet_stem else 3
        s = 2 if spec.imagenet_stem else 1
        pool = (
            '        x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="SAME")\n'
            if spec.imagenet_stem
            else ""
        )
        model = f'''
class ResNet(nnx.Module):
    """A ResNet classifier: stem, residual stages, global average pooling and a linear head."""

    def __init__(self, config: ResNetConfig, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.stem = nnx.Conv(
            config.in_channels, config.channels, ({k}, {k}), strides={s}, use_bias=False, dtype=dtype, rngs=rngs
        )
        self.stem_bn = nnx.BatchNorm(
            config.channels, momentum=config.momentum, epsilon=config.epsilon, dtype=dtype, rngs=rngs
        )
        blocks = []
        in_features = config.channels
        for stage, num_blocks in enumerate(config.stage_sizes):
            features = config.channels * 2**stage
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                blocks.append({block_cls}(in_features, features, strides, config, rngs=rngs))
                in_features = {expansion}features
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(in_features, config.num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = nnx.relu(self.stem_bn(self.stem(images)))
{pool}        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(x.astype(jnp.float32), axis=(1, 2)))
'''
        ctor = "ResNet(config, rngs=nnx.Rngs(0))"
        data = "images"
        shape = "(config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32"
        doc = "Logits in training mode (batch statistics) and the state with updated running averages."
    else:
        in_f, width, strides = _block_io(spec)
        model = ""
        ctor = f"{block_cls}({in_f}, {width}, {strides}, config, rngs=nnx.Rngs(0))"
        data = "hidden"
        shape = f"(config.batch_size, config.image_size, config.image_size, {in_f}), jnp.dtype(config.dtype)"
        doc = "The block in training mode (batch statistics) and the state with updated running averages."
    if spec.split_stats:
        fn = f'''
def {spec.function_name}(graphdef, params, batch_stats, {data}):
    """{doc}"""
    model = nnx.merge(graphdef, params, batch_stats)
    out = model({data})
    return out, nnx.state(model, nnx.BatchStat)
'''
        example = f"""
def example_args():
    config = ResNetConfig()
    graphdef, params, batch_stats = nnx.split(nnx.eval_shape(lambda: {ctor}), nnx.Param, nnx.BatchStat)
    {data} = jax.ShapeDtypeStruct({shape})
    return graphdef, params, batch_stats, {data}
"""
    else:
        fn = f'''
def {spec.function_name}(graphdef, state, {data}):
    """{doc}"""
    model = nnx.merge(graphdef, state)
    out = model({data})
    _, new_state = nnx.split(model)
    return out, new_state
'''
        example = f"""
def example_args():
    config = ResNetConfig()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: {ctor}))
    {data} = jax.ShapeDtypeStruct({shape})
    return graphdef, state, {data}
"""
    source = _join(_imports(lib="flax_nnx"), _resnet_config(spec), _nnx_resnet_block(spec), model, fn, example)
    return source, ()


def _eqx_resnet_block(spec: Spec) -> str:
    bn = "batch_norm(@F@, config)"
    conv = "eqx.nn.Conv2d(@I@, @O@, @K@, stride=@S@, padding=@P@, use_bias=False, dtype=dtype, key=@KEY@)"

    def c(i: str, o: str, k: int, key: str, s: str = "1") -> str:
        return _sub(conv, I=i, O=o, K=str(k), S=s, P=str(k // 2), KEY=key)

    def b(f: str) -> str:
        return _sub(bn, F=f)

    if spec.bottleneck:
        name, doc = "BottleneckBlock", "A bottleneck residual block: 1x1 reduce, strided 3x3, 1x1 expand (4x)."
        out = "4 * features"
        fields = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
        layers = [
            "keys = jax.random.split(key, 4)",
            f"self.conv1 = {c('in_channels', 'features', 1, 'keys[0]')}",
            f"self.bn1 = {b('features')}",
            f"self.conv2 = {c('features', 'features', 3, 'keys[1]', 'strides')}",
            f"self.bn2 = {b('features')}",
            f"self.conv3 = {c('features', out, 1, 'keys[2]')}",
            f"self.bn3 = {b(out)}",
        ]
        call = [
            "y, state = self.bn1(self.conv1(x), state)",
            "y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)",
            "y, state = self.bn3(self.conv3(jax.nn.relu(y)), state)",
        ]
        proj_key = "keys[3]"
    else:
        name, doc = "BasicBlock", "A basic residual block: two 3x3 convolutions with BatchNorm and ReLU."
        out = "features"
        fields = ["conv1", "bn1", "conv2", "bn2"]
        layers = [
            "keys = jax.random.split(key, 3)",
            f"self.conv1 = {c('in_channels', 'features', 3, 'keys[0]', 'strides')}",
            f"self.bn1 = {b('features')}",
            f"self.conv2 = {c('features', 'features', 3, 'keys[1]')}",
            f"self.bn2 = {b('features')}",
        ]
        call = [
            "y, state = self.bn1(self.conv1(x), state)",
            "y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)",
        ]
        proj_key = "keys[2]"
    layers += [
        f"if strides != 1 or in_channels != {out}:",
        f"    self.proj = {c('in_channels', out, 1, proj_key, 'strides')}",
        f"    self.proj_bn = {b(out)}",
        "else:",
        "    self.proj = None",
        "    self.proj_bn = None",
    ]
    call += [
        "shortcut = x",
        "if self.proj is not None:",
        "    shortcut, state = self.proj_bn(self.proj(x), state)",
        "return jax.nn.relu(y + shortcut), state",
    ]
    annotations = [f"    {f}: {'eqx.nn.Conv2d' if f.startswith('conv') else 'eqx.nn.BatchNorm'}" for f in fields]
    annotations += ["    proj: eqx.nn.Conv2d | None", "    proj_bn: eqx.nn.BatchNorm | None"]
    helper = """
def batch_norm(features: int, config: ResNetConfig) -> eqx.nn.BatchNorm:
    return eqx.nn.BatchNorm(
        features,
        axis_name="batch",
        eps=config.epsilon,
        momentum=config.momentum,
        mode="batch",
        dtype=jnp.dtype(config.dtype),
    )


"""
    return helper + (
        f"class {name}(eqx.Module):\n"
        f'    """{doc}\n\n    Channel-first and unbatched; BatchNorm reduces over the vmapped ``"batch"`` axis.\n    """\n\n'
        + "\n".join(annotations)
        + "\n\n    def __init__(self, in_channels: int, features: int, strides: int, config: ResNetConfig, *, key):\n"
        "        dtype = jnp.dtype(config.dtype)\n"
        + _indent("\n".join(layers), 8)
        + "\n\n    def __call__(self, x: jax.Array, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:\n"
        + _indent("\n".join(call), 8)
        + "\n"
    )


def _render_resnet_eqx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    block_cls = "BottleneckBlock" if spec.bottleneck else "BasicBlock"
    expansion = "4 * " if spec.bottleneck else ""
    if spec.scope == "net":
        k, s, p = (7, 2, 3) if spec.imagenet_stem else (3, 1, 1)
        pool_field = "    pool: eqx.nn.MaxPool2d\n" if spec.imagenet_stem else ""
        pool_init = "        self.pool = eqx.nn.MaxPool2d(3, 2, padding=1)\n" if spec.imagenet_stem else ""
        pool_call = "        x = self.pool(x)\n" if spec.imagenet_stem else ""
        model = f'''
class ResNet(eqx.Module):
    """A ResNet classifier on one CHW image: stem, residual stages, average pooling, linear head."""

    stem: eqx.nn.Conv2d
    stem_bn: eqx.nn.BatchNorm
{pool_field}    blocks: tuple
    head: eqx.nn.Linear

    def __init__(self, config: ResNetConfig, key):
        dtype = jnp.dtype(config.dtype)
        keys = jax.random.split(key, sum(config.stage_sizes) + 2)
        self.stem = eqx.nn.Conv2d(
            config.in_channels, config.channels, {k}, stride={s}, padding={p}, use_bias=False, dtype=dtype, key=keys[0]
        )
        self.stem_bn = batch_norm(config.channels, config)
{pool_init}        blocks = []
        in_channels = config.channels
        for stage, num_blocks in enumerate(config.stage_sizes):
            features = config.channels * 2**stage
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                blocks.append({block_cls}(in_channels, features, strides, config, key=keys[len(blocks) + 1]))
                in_channels = {expansion}features
        self.blocks = tuple(blocks)
        self.head = eqx.nn.Linear(in_channels, config.num_classes, dtype=dtype, key=keys[-1])

    def __call__(self, image: jax.Array, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        x, state = self.stem_bn(self.stem(image.astype(self.head.weight.dtype)), state)
        x = jax.nn.relu(x)
{pool_call}        for block in self.blocks:
            x, state = block(x, state)
        return self.head(jnp.mean(x, axis=(1, 2))), state
'''
        ctor = "ResNet"
        ctor_args = "config, jax.random.PRNGKey(0)"
        data, shape = "images", "(config.batch_size, config.in_channels, config.image_size, config.image_size)"
        dtype = "jnp.float32"
        doc = "Logits of a batch of NCHW images in training mode, and the updated BatchNorm state."
    else:
        in_f, width, strides = _block_io(spec)
        model = ""
        ctor = block_cls
        ctor_args = f"{in_f}, {width}, {strides}, config, key=jax.random.PRNGKey(0)"
        data, shape = "hidden", f"(config.batch_size, {in_f}, config.image_size, config.image_size)"
        dtype = "jnp.dtype(config.dtype)"
        doc = "The block on a batch of NCHW feature maps in training mode, and the updated BatchNorm state."
    fn = f'''
def {spec.function_name}(params, static, state, {data}):
    """{doc}"""
    model = eqx.combine(params, static)
    batched = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    out, state = batched({data}, state)
    return out, state
'''
    example = f"""
def example_args():
    config = ResNetConfig()
    model, state = eqx.filter_eval_shape(eqx.nn.make_with_state({ctor}), {ctor_args})
    params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    {data} = jax.ShapeDtypeStruct({shape}, {dtype})
    return params, static, state, {data}
"""
    source = _join(_imports(lib="equinox"), _resnet_config(spec), _eqx_resnet_block(spec), model, fn, example)
    return source, ("vmap",)


# === ViT ===========================================================================================


def _vit_config(spec: Spec) -> str:
    fields = [
        ("batch_size", "int", spec.batch_size),
        ("image_size", "int", spec.image_size),
        ("patch_size", "int", spec.patch_size),
        ("in_channels", "int", spec.in_channels),
        ("d_model", "int", spec.d_model),
        ("num_heads", "int", spec.num_heads),
        ("d_ff", "int", spec.d_ff),
        ("num_layers", "int", spec.num_layers),
        ("num_classes", "int", spec.num_classes),
        ("layer_norm_eps", "float", 1e-6),
        ("dtype", "str", spec.dtype),
    ]
    return config_class("ViTConfig", fields, "A Vision Transformer classifier.")


def _render_vit_jax(spec: Spec) -> tuple[str, tuple[str, ...]]:
    helpers = """
def dense_params(key, in_features, out_features):
    return {
        "kernel": jax.random.normal(key, (in_features, out_features), jnp.float32) / math.sqrt(in_features),
        "bias": jnp.zeros((out_features,), jnp.float32),
    }


def dense(x, params):
    return x @ params["kernel"].astype(x.dtype) + params["bias"].astype(x.dtype)


def layer_norm(x, params, eps):
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * lax.rsqrt(var + eps) * params["scale"] + params["bias"]
    return y.astype(x.dtype)


def layer_norm_params(features):
    return {"scale": jnp.ones((features,), jnp.float32), "bias": jnp.zeros((features,), jnp.float32)}
"""
    init_block = '''
def init_block(key, config):
    """Parameters of one pre-LayerNorm encoder block."""
    head_dim = config.d_model // config.num_heads
    keys = jax.random.split(key, 6)
    qkv_shape = (config.d_model, config.num_heads, head_dim)
    scale = 1.0 / math.sqrt(config.d_model)
    return {
        "ln1": layer_norm_params(config.d_model),
        "query": scale * jax.random.normal(keys[0], qkv_shape, jnp.float32),
        "key": scale * jax.random.normal(keys[1], qkv_shape, jnp.float32),
        "value": scale * jax.random.normal(keys[2], qkv_shape, jnp.float32),
        "out": scale * jax.random.normal(keys[3], (config.num_heads, head_dim, config.d_model), jnp.float32),
        "ln2": layer_norm_params(config.d_model),
        "mlp_in": dense_params(keys[4], config.d_model, config.d_ff),
        "mlp_out": dense_params(keys[5], config.d_ff, config.d_model),
    }
'''
    if spec.attention == "einsum":
        attend = """    scores = jnp.einsum("bqhk,bthk->bhqt", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
    weights = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    attended = jnp.einsum("bhqt,bthk->bqhk", weights, v)"""
    else:
        attend = "    attended = jax.nn.dot_product_attention(q, k, v)"
    attention = f'''
def self_attention(x, params):
    """Unmasked multi-head self-attention over the patch tokens."""
    q = jnp.einsum("btd,dhk->bthk", x, params["query"].astype(x.dtype))
    k = jnp.einsum("btd,dhk->bthk", x, params["key"].astype(x.dtype))
    v = jnp.einsum("btd,dhk->bthk", x, params["value"].astype(x.dtype))
{attend}
    return jnp.einsum("bthk,hkd->btd", attended, params["out"].astype(x.dtype))


def encoder_block(x, params, config):
    """Pre-LayerNorm encoder block: self-attention, then a GELU MLP, each with a residual."""
    x = x + self_attention(layer_norm(x, params["ln1"], config.layer_norm_eps), params)
    h = layer_norm(x, params["ln2"], config.layer_norm_eps)
    h = jax.nn.gelu(dense(h, params["mlp_in"]))
    return x + dense(h, params["mlp_out"])
'''
    num_tokens = "num_patches + 1" if spec.cls_token else "num_patches"
    if spec.conv_patches:
        patch_init = '"kernel": jax.random.normal(keys[0], (config.patch_size, config.patch_size, config.in_channels, config.d_model), jnp.float32) / math.sqrt(patch_dim),\n            "bias": jnp.zeros((config.d_model,), jnp.float32),'
        patch_init = "{\n            " + patch_init + "\n        }"
        patch_fn = '''
def embed_patches(images, params, config):
    """Non-overlapping patches through a convolution with stride ``patch_size``: (batch, patches, d_model)."""
    x = lax.conv_general_dilated(
        images,
        params["kernel"].astype(images.dtype),
        window_strides=(config.patch_size, config.patch_size),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    x = x + params["bias"].astype(x.dtype)
    batch, grid_h, grid_w, features = x.shape
    return x.reshape(batch, grid_h * grid_w, features)
'''
    else:
        patch_init = "dense_params(keys[0], patch_dim, config.d_model)"
        patch_fn = '''
def embed_patches(images, params, config):
    """Cut images into flattened ``patch_size`` x ``patch_size`` patches and project them linearly."""
    batch = images.shape[0]
    grid = config.image_size // config.patch_size
    patches = images.reshape(batch, grid, config.patch_size, grid, config.patch_size, config.in_channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, grid * grid, -1)
    return dense(patches, params)
'''
    if spec.scan_layers:
        layers_init = (
            "jax.vmap(functools.partial(init_block, config=config))(jax.random.split(keys[3], config.num_layers))"
        )
        layers_run = """    def layer(hidden, block_params):
        return encoder_block(hidden, block_params, config), None

    x, _ = lax.scan(layer, x, params["layers"])"""
    else:
        layers_init = "[init_block(k, config) for k in jax.random.split(keys[3], config.num_layers)]"
        layers_run = """    for block_params in params["layers"]:
        x = encoder_block(x, block_params, config)"""
    cls_init = '\n        "cls_token": jnp.zeros((1, 1, config.d_model), jnp.float32),' if spec.cls_token else ""
    init = f'''
def init_params(config, key):
    """Initial parameters of the ViT."""
    num_patches = (config.image_size // config.patch_size) ** 2
    patch_dim = config.patch_size * config.patch_size * config.in_channels
    keys = jax.random.split(key, 4)
    return {{
        "patch_embed": {patch_init},{cls_init}
        "pos_embed": 0.02 * jax.random.normal(keys[1], (1, {num_tokens}, config.d_model), jnp.float32),
        "layers": {layers_init},
        "final_ln": layer_norm_params(config.d_model),
        "head": dense_params(keys[2], config.d_model, config.num_classes),
    }}
'''
    lines = [
        f"def {spec.function_name}(params, images, config):",
        '    """Class logits of a batch of NHWC images."""',
        '    x = embed_patches(images.astype(config.dtype), params["patch_embed"], config)',
    ]
    if spec.cls_token:
        lines += [
            '    cls_token = jnp.broadcast_to(params["cls_token"].astype(x.dtype), (x.shape[0], 1, config.d_model))',
            "    x = jnp.concatenate([cls_token, x], axis=1)",
        ]
    lines += [
        '    x = x + params["pos_embed"].astype(x.dtype)',
        layers_run,
        '    x = layer_norm(x, params["final_ln"], config.layer_norm_eps)',
        "    pooled = x[:, 0]" if spec.cls_token else "    pooled = jnp.mean(x, axis=1)",
        '    return dense(pooled.astype(jnp.float32), params["head"])',
    ]
    example = """
def example_args():
    config = ViTConfig()
    params = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
    images = jax.ShapeDtypeStruct((config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32)
    return params, images, config
"""
    source = _join(
        _imports(functools=True, math=True, lax=True),
        _vit_config(spec),
        helpers,
        init_block,
        attention,
        patch_fn,
        init,
        "\n".join(lines) + "\n",
        example,
    )
    return source, ("scan",) if spec.scan_layers else ()


def _render_vit_nnx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    if spec.attention == "module":
        attn_init = "self.attn = nnx.MultiHeadAttention(\n            config.num_heads, config.d_model, decode=False, dtype=dtype, rngs=rngs\n        )"
        attn_call = "x = x + self.attn(self.ln1(x))"
        attn_method = ""
    elif spec.attention == "einsum":
        attn_init = (
            "self.num_heads = config.num_heads\n"
            "        self.qkv = nnx.Linear(config.d_model, 3 * config.d_model, dtype=dtype, rngs=rngs)\n"
            "        self.out = nnx.Linear(config.d_model, config.d_model, dtype=dtype, rngs=rngs)"
        )
        attn_call = "x = x + self.attention(self.ln1(x))"
        attn_method = """
    def attention(self, x: jax.Array) -> jax.Array:
        batch, length, features = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, features // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.out(attended.reshape(batch, length, features))
"""
    else:
        attn_init = (
            "self.num_heads = config.num_heads\n"
            "        self.qkv = nnx.Linear(config.d_model, 3 * config.d_model, dtype=dtype, rngs=rngs)\n"
            "        self.out = nnx.Linear(config.d_model, config.d_model, dtype=dtype, rngs=rngs)"
        )
        attn_call = "x = x + self.attention(self.ln1(x))"
        attn_method = """
    def attention(self, x: jax.Array) -> jax.Array:
        batch, length, features = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, features // self.num_heads)
        attended = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        return self.out(attended.reshape(batch, length, features))
"""
    block = f'''
class EncoderBlock(nnx.Module):
    """Pre-LayerNorm Transformer encoder block: self-attention and a GELU MLP, each residual."""

    def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.ln1 = nnx.LayerNorm(config.d_model, epsilon=config.layer_norm_eps, dtype=dtype, rngs=rngs)
        {attn_init}
        self.ln2 = nnx.LayerNorm(config.d_model, epsilon=config.layer_norm_eps, dtype=dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(config.d_model, config.d_ff, dtype=dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(config.d_ff, config.d_model, dtype=dtype, rngs=rngs)
{attn_method}
    def __call__(self, x: jax.Array) -> jax.Array:
        {attn_call}
        return x + self.mlp_out(nnx.gelu(self.mlp_in(self.ln2(x))))
'''
    num_tokens = "num_patches + 1" if spec.cls_token else "num_patches"
    if spec.conv_patches:
        patch_init = """self.patch_embed = nnx.Conv(
            config.in_channels,
            config.d_model,
            (config.patch_size, config.patch_size),
            strides=config.patch_size,
            padding="VALID",
            dtype=dtype,
            rngs=rngs,
        )"""
        patch_call = """x = self.patch_embed(images)
        x = x.reshape(x.shape[0], -1, self.config.d_model)"""
    else:
        patch_init = "self.patch_embed = nnx.Linear(patch_dim, config.d_model, dtype=dtype, rngs=rngs)"
        patch_call = """batch, grid, size = images.shape[0], self.config.image_size // self.config.patch_size, self.config.patch_size
        patches = images.reshape(batch, grid, size, grid, size, self.config.in_channels)
        x = self.patch_embed(patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, grid * grid, -1))"""
    cls_init = "\n        self.cls_token = nnx.Param(jnp.zeros((1, 1, config.d_model)))" if spec.cls_token else ""
    cls_call = (
        "\n        cls_token = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))"
        "\n        x = jnp.concatenate([cls_token, x], axis=1)"
        if spec.cls_token
        else ""
    )
    pool = "x[:, 0]" if spec.cls_token else "jnp.mean(x, axis=1)"
    model = f'''
class VisionTransformer(nnx.Module):
    """ViT: patch embedding, learned position embeddings, encoder blocks and a linear head."""

    def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        num_patches = (config.image_size // config.patch_size) ** 2
        patch_dim = config.patch_size * config.patch_size * config.in_channels
        {patch_init}{cls_init}
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, {num_tokens}, config.d_model)))
        self.blocks = nnx.List([EncoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
        self.final_ln = nnx.LayerNorm(config.d_model, epsilon=config.layer_norm_eps, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(config.d_model, config.num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        {patch_call}{cls_call}
        x = x + self.pos_embed[...].astype(x.dtype)
        for block in self.blocks:
            x = block(x)
        x = self.final_ln(x)
        return self.head({pool}.astype(jnp.float32))
'''
    model = (
        model.replace("patch_dim = config.patch_size * config.patch_size * config.in_channels\n        ", "")
        if spec.conv_patches
        else model
    )
    fn = f'''
def {spec.function_name}(graphdef, state, images):
    """Class logits of a batch of NHWC images."""
    model = nnx.merge(graphdef, state)
    return model(images)
'''
    example = """
def example_args():
    config = ViTConfig()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VisionTransformer(config, rngs=nnx.Rngs(0))))
    images = jax.ShapeDtypeStruct((config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32)
    return graphdef, state, images
"""
    return _join(_imports(lib="flax_nnx"), _vit_config(spec), block, model, fn, example), ()


def _render_vit_eqx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    if spec.attention == "module":
        attn_field = "    attn: eqx.nn.MultiheadAttention\n"
        attn_init = """self.attn = eqx.nn.MultiheadAttention(
            config.num_heads,
            config.d_model,
            use_query_bias=True,
            use_key_bias=True,
            use_value_bias=True,
            use_output_bias=True,
            dtype=dtype,
            key=keys[0],
        )"""
        attn_call = "h = self.attn(h, h, h)"
    else:
        attn_field = "    num_heads: int = eqx.field(static=True)\n    qkv: eqx.nn.Linear\n    out: eqx.nn.Linear\n"
        attn_init = """self.num_heads = config.num_heads
        self.qkv = eqx.nn.Linear(config.d_model, 3 * config.d_model, dtype=dtype, key=keys[0])
        self.out = eqx.nn.Linear(config.d_model, config.d_model, dtype=dtype, key=keys[3])"""
        attn_call = """length, features = h.shape
        qkv = jax.vmap(self.qkv)(h).reshape(length, 3, self.num_heads, features // self.num_heads)
        h = jax.nn.dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2]).reshape(length, features)
        h = jax.vmap(self.out)(h)"""
    block = f'''
class EncoderBlock(eqx.Module):
    """Pre-LayerNorm encoder block on one sequence of tokens (unbatched)."""

    ln1: eqx.nn.LayerNorm
{attn_field}    ln2: eqx.nn.LayerNorm
    mlp_in: eqx.nn.Linear
    mlp_out: eqx.nn.Linear

    def __init__(self, config: ViTConfig, key):
        dtype = jnp.dtype(config.dtype)
        keys = jax.random.split(key, 4)
        self.ln1 = eqx.nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, dtype=dtype)
        {attn_init}
        self.ln2 = eqx.nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, dtype=dtype)
        self.mlp_in = eqx.nn.Linear(config.d_model, config.d_ff, dtype=dtype, key=keys[1])
        self.mlp_out = eqx.nn.Linear(config.d_ff, config.d_model, dtype=dtype, key=keys[2])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.vmap(self.ln1)(x)
        {attn_call}
        x = x + h
        h = jax.nn.gelu(jax.vmap(self.mlp_in)(jax.vmap(self.ln2)(x)))
        return x + jax.vmap(self.mlp_out)(h)
'''
    num_tokens = "num_patches + 1" if spec.cls_token else "num_patches"
    if spec.conv_patches:
        patch_field = "eqx.nn.Conv2d"
        patch_init = """eqx.nn.Conv2d(
            config.in_channels, config.d_model, config.patch_size, stride=config.patch_size, dtype=dtype, key=keys[0]
        )"""
        patch_call = "x = self.patch_embed(image).reshape(self.config.d_model, -1).T"
    else:
        patch_field = "eqx.nn.Linear"
        patch_init = "eqx.nn.Linear(config.patch_size * config.patch_size * config.in_channels, config.d_model, dtype=dtype, key=keys[0])"
        patch_call = """grid, size = self.config.image_size // self.config.patch_size, self.config.patch_size
        patches = image.reshape(self.config.in_channels, grid, size, grid, size).transpose(1, 3, 2, 4, 0)
        x = jax.vmap(self.patch_embed)(patches.reshape(grid * grid, -1))"""
    cls_field = "    cls_token: jax.Array\n" if spec.cls_token else ""
    cls_init = "\n        self.cls_token = jnp.zeros((1, config.d_model), dtype)" if spec.cls_token else ""
    cls_call = "\n        x = jnp.concatenate([self.cls_token, x], axis=0)" if spec.cls_token else ""
    pool = "x[0]" if spec.cls_token else "jnp.mean(x, axis=0)"
    model = f'''
class VisionTransformer(eqx.Module):
    """ViT classifier on one CHW image: patches, position embeddings, encoder blocks, linear head."""

    config: ViTConfig = eqx.field(static=True)
    patch_embed: {patch_field}
{cls_field}    pos_embed: jax.Array
    blocks: tuple[EncoderBlock, ...]
    final_ln: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, config: ViTConfig, key):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        keys = jax.random.split(key, config.num_layers + 3)
        num_patches = (config.image_size // config.patch_size) ** 2
        self.patch_embed = {patch_init}{cls_init}
        self.pos_embed = 0.02 * jax.random.normal(keys[1], ({num_tokens}, config.d_model), dtype)
        self.blocks = tuple(EncoderBlock(config, k) for k in keys[3:])
        self.final_ln = eqx.nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, dtype=dtype)
        self.head = eqx.nn.Linear(config.d_model, config.num_classes, dtype=dtype, key=keys[2])

    def __call__(self, image: jax.Array) -> jax.Array:
        image = image.astype(self.pos_embed.dtype)
        {patch_call}{cls_call}
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = jax.vmap(self.final_ln)(x)
        return self.head({pool})
'''
    fn = f'''
def {spec.function_name}(params, static, images):
    """Class logits of a batch of NCHW images."""
    model = eqx.combine(params, static)
    return jax.vmap(model)(images)
'''
    example = """
def example_args():
    config = ViTConfig()
    model = eqx.filter_eval_shape(VisionTransformer, config, jax.random.PRNGKey(0))
    params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    images = jax.ShapeDtypeStruct((config.batch_size, config.in_channels, config.image_size, config.image_size), jnp.float32)
    return params, static, images
"""
    return _join(_imports(lib="equinox"), _vit_config(spec), block, model, fn, example), ("vmap",)


# === U-Net =========================================================================================


def _unet_config(spec: Spec) -> str:
    fields = [("batch_size", "int", spec.batch_size), ("image_size", "int", spec.image_size)]
    if spec.scope == "net":
        fields += [
            ("in_channels", "int", spec.in_channels),
            ("channels", "int", spec.channels),
            ("channel_mult", "tuple[int, ...]", spec.channel_mult),
            ("num_blocks", "int", spec.num_blocks),
        ]
        doc = "A diffusion U-Net: level widths are ``channels`` times ``channel_mult``."
    else:
        fields += [("channels", "int", spec.channels), ("double_channels", "bool", spec.channel_mult[0] == 2)]
        doc = "One diffusion block (residual block with timestep conditioning) on a feature map."
    fields += [("num_groups", "int", spec.num_groups), ("time_embed_dim", "int", spec.time_embed_dim)]
    if spec.self_attention:
        fields.append(("num_heads", "int", spec.num_heads))
    fields += [("norm_eps", "float", 1e-5), ("dtype", "str", spec.dtype)]
    return config_class("UNetConfig", fields, doc)


_TIMESTEP_BATCHED = '''
def timestep_embedding(timesteps, dim, max_period=10000.0):
    """Sinusoidal embeddings of diffusion timesteps: (batch,) -> (batch, dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
'''

_TIMESTEP_SINGLE = '''
def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding of one diffusion timestep: () -> (dim,)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)])
'''


def _unet_blocks_used(spec: Spec) -> tuple[bool, bool]:
    """Whether the program downsamples and upsamples at all."""
    if spec.scope == "net":
        return len(spec.channel_mult) > 1, len(spec.channel_mult) > 1
    return spec.resample == "down", spec.resample == "up"


def _render_unet_jax(spec: Spec) -> tuple[str, tuple[str, ...]]:
    down, up = _unet_blocks_used(spec)
    helpers = '''
def conv_params(key, size, in_features, out_features):
    std = math.sqrt(1.0 / (size * size * in_features))
    return {
        "kernel": std * jax.random.normal(key, (size, size, in_features, out_features), jnp.float32),
        "bias": jnp.zeros((out_features,), jnp.float32),
    }


def conv2d(x, params, strides=1):
    y = lax.conv_general_dilated(
        x,
        params["kernel"].astype(x.dtype),
        window_strides=(strides, strides),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + params["bias"].astype(x.dtype)


def dense_params(key, in_features, out_features):
    return {
        "kernel": jax.random.normal(key, (in_features, out_features), jnp.float32) / math.sqrt(in_features),
        "bias": jnp.zeros((out_features,), jnp.float32),
    }


def dense(x, params):
    return x @ params["kernel"].astype(x.dtype) + params["bias"].astype(x.dtype)


def norm_params(features):
    return {"scale": jnp.ones((features,), jnp.float32), "bias": jnp.zeros((features,), jnp.float32)}


def group_norm(x, params, config):
    """GroupNorm over NHWC activations, statistics in float32."""
    batch, height, width, features = x.shape
    groups = x.astype(jnp.float32).reshape(batch, height, width, config.num_groups, features // config.num_groups)
    mean = jnp.mean(groups, axis=(1, 2, 4), keepdims=True)
    var = jnp.var(groups, axis=(1, 2, 4), keepdims=True)
    y = ((groups - mean) * lax.rsqrt(var + config.norm_eps)).reshape(batch, height, width, features)
    return (y * params["scale"] + params["bias"]).astype(x.dtype)
'''
    resblock = '''
def init_res_block(key, in_features, out_features, config):
    keys = jax.random.split(key, 4)
    params = {
        "norm1": norm_params(in_features),
        "conv1": conv_params(keys[0], 3, in_features, out_features),
        "time_proj": dense_params(keys[1], config.time_embed_dim, out_features),
        "norm2": norm_params(out_features),
        "conv2": conv_params(keys[2], 3, out_features, out_features),
    }
    if in_features != out_features:
        params["skip"] = conv_params(keys[3], 1, in_features, out_features)
    return params


def res_block(x, temb, params, config):
    """GroupNorm, SiLU, 3x3 conv, plus the projected timestep embedding, twice; residual."""
    h = conv2d(jax.nn.silu(group_norm(x, params["norm1"], config)), params["conv1"])
    h = h + dense(jax.nn.silu(temb), params["time_proj"])[:, None, None, :]
    h = conv2d(jax.nn.silu(group_norm(h, params["norm2"], config)), params["conv2"])
    if "skip" in params:
        x = conv2d(x, params["skip"])
    return x + h
'''
    attn = ""
    if spec.self_attention:
        attn = '''
def init_attention(key, features):
    keys = jax.random.split(key, 2)
    return {
        "norm": norm_params(features),
        "qkv": dense_params(keys[0], features, 3 * features),
        "out": dense_params(keys[1], features, features),
    }


def attention_block(x, params, config):
    """Self-attention over the pixels of a low-resolution feature map, residual."""
    batch, height, width, features = x.shape
    h = group_norm(x, params["norm"], config).reshape(batch, height * width, features)
    qkv = dense(h, params["qkv"]).reshape(batch, height * width, 3, config.num_heads, features // config.num_heads)
@ATTEND@
    out = dense(attended.reshape(batch, height * width, features), params["out"])
    return x + out.reshape(batch, height, width, features)
'''
    if spec.attention == "einsum":
        attend = """    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v)"""
    else:
        attend = "    attended = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])"
    attn = attn.replace("@ATTEND@", attend)
    resample = ""
    if down:
        if spec.strided_downsample:
            resample += '''
def downsample(x, params):
    """Halve the resolution with a strided 3x3 convolution."""
    return conv2d(x, params, strides=2)
'''
        else:
            resample += '''
def downsample(x):
    """Halve the resolution with 2x2 average pooling."""
    batch, height, width, features = x.shape
    return jnp.mean(x.reshape(batch, height // 2, 2, width // 2, 2, features), axis=(2, 4))
'''
    if up:
        repeat = (
            'x = jax.image.resize(x, (batch, 2 * height, 2 * width, features), method="nearest")'
            if spec.resize_upsample
            else "x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)"
        )
        resample += f'''
def upsample(x, params):
    """Double the resolution (nearest neighbour), then a 3x3 convolution."""
    batch, height, width, features = x.shape
    {repeat}
    return conv2d(x, params)
'''
        if not spec.resize_upsample:
            resample = resample.replace(
                "    batch, height, width, features = x.shape\n    x = jnp.repeat", "    x = jnp.repeat"
            )
    down_call = 'downsample(h, level_params["downsample"])' if spec.strided_downsample else "downsample(h)"
    time_mlp = """
    temb = timestep_embedding(timesteps, config.channels)
    temb = dense(jax.nn.silu(dense(temb, params["time_mlp1"])), params["time_mlp2"])"""
    if spec.scope == "net":
        down_init = (
            '\n        if level < len(config.channel_mult) - 1:\n            level_params["downsample"] = conv_params(next(keys), 3, features, features)'
            if spec.strided_downsample
            else ""
        )
        mid_attn_init = '\n    params["mid_attn"] = init_attention(next(keys), features)' if spec.self_attention else ""
        init = f'''
def init_params(config, key):
    """Initial parameters of the U-Net."""
    keys = iter(jax.random.split(key, 64))
    params = {{
        "time_mlp1": dense_params(next(keys), config.channels, config.time_embed_dim),
        "time_mlp2": dense_params(next(keys), config.time_embed_dim, config.time_embed_dim),
        "conv_in": conv_params(next(keys), 3, config.in_channels, config.channels),
    }}
    features = config.channels
    skip_features = []
    params["down"] = []
    for level, mult in enumerate(config.channel_mult):
        level_params = {{"blocks": []}}
        for _ in range(config.num_blocks):
            level_params["blocks"].append(init_res_block(next(keys), features, config.channels * mult, config))
            features = config.channels * mult{down_init}
        skip_features.append(features)
        params["down"].append(level_params)
    params["mid_block1"] = init_res_block(next(keys), features, features, config){mid_attn_init}
    params["mid_block2"] = init_res_block(next(keys), features, features, config)
    params["up"] = []
    for level, mult in reversed(list(enumerate(config.channel_mult))):
        level_params = {{"blocks": []}}
        for block in range(config.num_blocks):
            in_features = features + (skip_features[level] if block == 0 else 0)
            level_params["blocks"].append(init_res_block(next(keys), in_features, config.channels * mult, config))
            features = config.channels * mult
        if level > 0:
            level_params["upsample"] = conv_params(next(keys), 3, features, features)
        params["up"].append(level_params)
    params["norm_out"] = norm_params(features)
    params["conv_out"] = conv_params(next(keys), 3, features, config.in_channels)
    return params
'''
        mid_attn = '\n    h = attention_block(h, params["mid_attn"], config)' if spec.self_attention else ""
        fn = f'''
def {spec.function_name}(params, images, timesteps, config):
    """Predict the noise in a batch of noisy NHWC images at the given diffusion timesteps."""{time_mlp}
    h = conv2d(images.astype(config.dtype), params["conv_in"])
    temb = temb.astype(h.dtype)
    skips = []
    for level, level_params in enumerate(params["down"]):
        for block_params in level_params["blocks"]:
            h = res_block(h, temb, block_params, config)
        skips.append(h)
        if level < len(config.channel_mult) - 1:
            h = {down_call}
    h = res_block(h, temb, params["mid_block1"], config){mid_attn}
    h = res_block(h, temb, params["mid_block2"], config)
    for level_params in params["up"]:
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        for block_params in level_params["blocks"]:
            h = res_block(h, temb, block_params, config)
        if "upsample" in level_params:
            h = upsample(h, level_params["upsample"])
    h = jax.nn.silu(group_norm(h, params["norm_out"], config))
    return conv2d(h, params["conv_out"]).astype(jnp.float32)
'''
        data = "images"
        shape = "(config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32"
    else:
        extra_init = ""
        extra_call = ""
        if spec.self_attention:
            extra_init += '\n    params["attn"] = init_attention(keys[4], out_features)'
            extra_call += '\n    h = attention_block(h, params["attn"], config)'
        if down:
            if spec.strided_downsample:
                extra_init += '\n    params["downsample"] = conv_params(keys[5], 3, out_features, out_features)'
                extra_call += '\n    h = downsample(h, params["downsample"])'
            else:
                extra_call += "\n    h = downsample(h)"
        if up:
            extra_init += '\n    params["upsample"] = conv_params(keys[5], 3, out_features, out_features)'
            extra_call += '\n    h = upsample(h, params["upsample"])'
        init = f'''
def init_params(config, key):
    """Parameters of the block and of its timestep MLP."""
    keys = jax.random.split(key, 6)
    out_features = (2 if config.double_channels else 1) * config.channels
    params = {{
        "time_mlp1": dense_params(keys[0], config.channels, config.time_embed_dim),
        "time_mlp2": dense_params(keys[1], config.time_embed_dim, config.time_embed_dim),
        "block": init_res_block(keys[2], config.channels, out_features, config),
    }}{extra_init}
    return params
'''
        fn = f'''
def {spec.function_name}(params, hidden, timesteps, config):
    """The diffusion block on NHWC feature maps, conditioned on the diffusion timesteps."""{time_mlp}
    h = hidden.astype(config.dtype)
    h = res_block(h, temb.astype(h.dtype), params["block"], config){extra_call}
    return h
'''
        data = "hidden"
        shape = "(config.batch_size, config.image_size, config.image_size, config.channels), jnp.dtype(config.dtype)"
    t_dtype = "jnp.float32" if spec.float_timesteps else "jnp.int32"
    example = f"""
def example_args():
    config = UNetConfig()
    params = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
    {data} = jax.ShapeDtypeStruct({shape})
    timesteps = jax.ShapeDtypeStruct((config.batch_size,), {t_dtype})
    return params, {data}, timesteps, config
"""
    source = _join(
        _imports(functools=True, math=True, lax=True),
        _unet_config(spec),
        _TIMESTEP_BATCHED,
        helpers,
        resblock,
        attn,
        resample,
        init,
        fn,
        example,
    )
    return source, ()


def _render_unet_nnx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    down, up = _unet_blocks_used(spec)
    gn = "nnx.GroupNorm(@F@, num_groups=config.num_groups, epsilon=config.norm_eps, rngs=rngs)"
    resblock = f'''
class ResBlock(nnx.Module):
    """Residual block of a diffusion U-Net: GroupNorm, SiLU, 3x3 conv, timestep projection."""

    def __init__(self, in_features: int, out_features: int, config: UNetConfig, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.norm1 = {_sub(gn, F="in_features")}
        self.conv1 = nnx.Conv(in_features, out_features, (3, 3), dtype=dtype, rngs=rngs)
        self.time_proj = nnx.Linear(config.time_embed_dim, out_features, dtype=dtype, rngs=rngs)
        self.norm2 = {_sub(gn, F="out_features")}
        self.conv2 = nnx.Conv(out_features, out_features, (3, 3), dtype=dtype, rngs=rngs)
        if in_features != out_features:
            self.skip = nnx.Conv(in_features, out_features, (1, 1), dtype=dtype, rngs=rngs)
        else:
            self.skip = None

    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = h + self.time_proj(nnx.silu(temb))[:, None, None, :]
        h = self.conv2(nnx.silu(self.norm2(h)))
        if self.skip is not None:
            x = self.skip(x)
        return x + h
'''
    attn = ""
    if spec.self_attention:
        attn = f'''
class AttentionBlock(nnx.Module):
    """Self-attention over the pixels of a low-resolution feature map, residual."""

    def __init__(self, features: int, config: UNetConfig, *, rngs: nnx.Rngs):
        self.norm = {_sub(gn, F="features")}
        self.attn = nnx.MultiHeadAttention(
            config.num_heads, features, decode=False, dtype=jnp.dtype(config.dtype), rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, features = x.shape
        h = self.attn(self.norm(x).reshape(batch, height * width, features))
        return x + h.reshape(batch, height, width, features)
'''
        if spec.attention == "einsum":
            attn = f'''
class AttentionBlock(nnx.Module):
    """Self-attention over the pixels of a low-resolution feature map, residual."""

    def __init__(self, features: int, config: UNetConfig, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.num_heads = config.num_heads
        self.norm = {_sub(gn, F="features")}
        self.qkv = nnx.Linear(features, 3 * features, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(features, features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, features = x.shape
        h = self.norm(x).reshape(batch, height * width, features)
        qkv = self.qkv(h).reshape(batch, height * width, 3, self.num_heads, features // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, height * width, features)
        return x + self.out(attended).reshape(batch, height, width, features)
'''
    resample = ""
    if down:
        if spec.strided_downsample:
            resample += '''
class Downsample(nnx.Module):
    """Halve the resolution with a strided 3x3 convolution."""

    def __init__(self, features: int, config: UNetConfig, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(features, features, (3, 3), strides=2, dtype=jnp.dtype(config.dtype), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)
'''
        else:
            resample += '''
def downsample(x: jax.Array) -> jax.Array:
    """Halve the resolution with 2x2 average pooling."""
    return nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
'''
    if up:
        repeat = (
            '        batch, height, width, features = x.shape\n        x = jax.image.resize(x, (batch, 2 * height, 2 * width, features), method="nearest")'
            if spec.resize_upsample
            else "        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)"
        )
        resample += f'''
class Upsample(nnx.Module):
    """Double the resolution (nearest neighbour), then a 3x3 convolution."""

    def __init__(self, features: int, config: UNetConfig, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(features, features, (3, 3), dtype=jnp.dtype(config.dtype), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
{repeat}
        return self.conv(x)
'''
    time_init = """self.time_mlp1 = nnx.Linear(config.channels, config.time_embed_dim, dtype=dtype, rngs=rngs)
        self.time_mlp2 = nnx.Linear(config.time_embed_dim, config.time_embed_dim, dtype=dtype, rngs=rngs)"""
    time_call = """temb = timestep_embedding(timesteps, self.config.channels)
        temb = self.time_mlp2(nnx.silu(self.time_mlp1(temb)))"""
    if spec.scope == "net":
        if spec.strided_downsample:
            level_down = (
                ", Downsample(features, config, rngs=rngs) if level_index < len(config.channel_mult) - 1 else None"
            )
            down_loop = "\n            if level.resample is not None:\n                h = level.resample(h)"
        else:
            level_down = ""
            down_loop = (
                "\n            if level_index < len(self.config.channel_mult) - 1:\n                h = downsample(h)"
            )
        attn_init = (
            "\n        self.mid_attn = AttentionBlock(features, config, rngs=rngs)" if spec.self_attention else ""
        )
        attn_call = "\n        h = self.mid_attn(h)" if spec.self_attention else ""
        init_down_target, init_down_iter = (
            ("level_index, mult", "enumerate(config.channel_mult)")
            if spec.strided_downsample
            else ("mult", "config.channel_mult")
        )
        down_target, down_iter = (
            ("level", "self.down") if spec.strided_downsample else ("level_index, level", "enumerate(self.down)")
        )
        level_up = ", Upsample(features, config, rngs=rngs) if level_index > 0 else None" if up else ""
        up_loop = "\n            if level.resample is not None:\n                h = level.resample(h)" if up else ""
        model = f'''
class Level(nnx.Module):
    """The residual blocks of one U-Net resolution and the layer that resamples after them."""

    def __init__(self, blocks: list[ResBlock], resample: nnx.Module | None = None):
        self.blocks = nnx.List(blocks)
        self.resample = resample


class UNet(nnx.Module):
    """A diffusion U-Net predicting the noise in NHWC images at given timesteps."""

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        {time_init}
        self.conv_in = nnx.Conv(config.in_channels, config.channels, (3, 3), dtype=dtype, rngs=rngs)
        features = config.channels
        skip_features = []
        down_levels = []
        for {init_down_target} in {init_down_iter}:
            blocks = []
            for _ in range(config.num_blocks):
                blocks.append(ResBlock(features, config.channels * mult, config, rngs=rngs))
                features = config.channels * mult
            skip_features.append(features)
            down_levels.append(Level(blocks{level_down}))
        self.down = nnx.List(down_levels)
        self.mid_block1 = ResBlock(features, features, config, rngs=rngs){attn_init}
        self.mid_block2 = ResBlock(features, features, config, rngs=rngs)
        up_levels = []
        for level_index, mult in reversed(list(enumerate(config.channel_mult))):
            blocks = []
            for block in range(config.num_blocks):
                in_features = features + (skip_features[level_index] if block == 0 else 0)
                blocks.append(ResBlock(in_features, config.channels * mult, config, rngs=rngs))
                features = config.channels * mult
            up_levels.append(Level(blocks{level_up}))
        self.up = nnx.List(up_levels)
        self.norm_out = nnx.GroupNorm(features, num_groups=config.num_groups, epsilon=config.norm_eps, rngs=rngs)
        self.conv_out = nnx.Conv(features, config.in_channels, (3, 3), rngs=rngs)

    def __call__(self, images: jax.Array, timesteps: jax.Array) -> jax.Array:
        {time_call}
        h = self.conv_in(images)
        skips = []
        for {down_target} in {down_iter}:
            for block in level.blocks:
                h = block(h, temb)
            skips.append(h){down_loop}
        h = self.mid_block1(h, temb){attn_call}
        h = self.mid_block2(h, temb)
        for level in self.up:
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            for block in level.blocks:
                h = block(h, temb){up_loop}
        return self.conv_out(nnx.silu(self.norm_out(h)))
'''
        ctor = "UNet(config, rngs=nnx.Rngs(0))"
        data = "images"
        shape = "(config.batch_size, config.image_size, config.image_size, config.in_channels), jnp.float32"
        doc = "Predict the noise in a batch of noisy NHWC images at the given diffusion timesteps."
    else:
        inits, calls = [], []
        if spec.self_attention:
            inits.append("self.attn = AttentionBlock(out_features, config, rngs=rngs)")
            calls.append("h = self.attn(h)")
        if down:
            if spec.strided_downsample:
                inits.append("self.downsample = Downsample(out_features, config, rngs=rngs)")
                calls.append("h = self.downsample(h)")
            else:
                calls.append("h = downsample(h)")
        if up:
            inits.append("self.upsample = Upsample(out_features, config, rngs=rngs)")
            calls.append("h = self.upsample(h)")
        extra_init = "".join("\n        " + line for line in inits)
        extra_call = "".join("\n        " + line for line in calls)
        model = f'''
class DiffusionBlock(nnx.Module):
    """Timestep MLP and a residual block{" with self-attention" if spec.self_attention else ""}{", then resampling" if down or up else ""}."""

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        out_features = (2 if config.double_channels else 1) * config.channels
        {time_init}
        self.block = ResBlock(config.channels, out_features, config, rngs=rngs){extra_init}

    def __call__(self, hidden: jax.Array, timesteps: jax.Array) -> jax.Array:
        {time_call}
        h = self.block(hidden, temb){extra_call}
        return h
'''
        ctor = "DiffusionBlock(config, rngs=nnx.Rngs(0))"
        data = "hidden"
        shape = "(config.batch_size, config.image_size, config.image_size, config.channels), jnp.dtype(config.dtype)"
        doc = "The diffusion block on NHWC feature maps, conditioned on the diffusion timesteps."
    fn = f'''
def {spec.function_name}(graphdef, state, {data}, timesteps):
    """{doc}"""
    model = nnx.merge(graphdef, state)
    return model({data}, timesteps)
'''
    t_dtype = "jnp.float32" if spec.float_timesteps else "jnp.int32"
    example = f"""
def example_args():
    config = UNetConfig()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: {ctor}))
    {data} = jax.ShapeDtypeStruct({shape})
    timesteps = jax.ShapeDtypeStruct((config.batch_size,), {t_dtype})
    return graphdef, state, {data}, timesteps
"""
    source = _join(
        _imports(math=True, lib="flax_nnx"),
        _unet_config(spec),
        _TIMESTEP_BATCHED,
        resblock,
        attn,
        resample,
        model,
        fn,
        example,
    )
    return source, ()


def _render_unet_eqx(spec: Spec) -> tuple[str, tuple[str, ...]]:
    down, up = _unet_blocks_used(spec)
    gn = "eqx.nn.GroupNorm(config.num_groups, @F@, eps=config.norm_eps, dtype=dtype)"
    resblock = f'''
class ResBlock(eqx.Module):
    """Residual block of a diffusion U-Net on one CHW feature map, conditioned on a timestep embedding."""

    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    time_proj: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(self, in_features: int, out_features: int, config: UNetConfig, *, key):
        dtype = jnp.dtype(config.dtype)
        keys = jax.random.split(key, 4)
        self.norm1 = {_sub(gn, F="in_features")}
        self.conv1 = eqx.nn.Conv2d(in_features, out_features, 3, padding=1, dtype=dtype, key=keys[0])
        self.time_proj = eqx.nn.Linear(config.time_embed_dim, out_features, dtype=dtype, key=keys[1])
        self.norm2 = {_sub(gn, F="out_features")}
        self.conv2 = eqx.nn.Conv2d(out_features, out_features, 3, padding=1, dtype=dtype, key=keys[2])
        if in_features != out_features:
            self.skip = eqx.nn.Conv2d(in_features, out_features, 1, dtype=dtype, key=keys[3])
        else:
            self.skip = None

    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.time_proj(jax.nn.silu(temb))[:, None, None]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        if self.skip is not None:
            x = self.skip(x)
        return x + h
'''
    attn = ""
    if spec.self_attention:
        attn = f'''
class AttentionBlock(eqx.Module):
    """Self-attention over the pixels of a low-resolution CHW feature map, residual."""

    norm: eqx.nn.GroupNorm
    attn: eqx.nn.MultiheadAttention

    def __init__(self, features: int, config: UNetConfig, *, key):
        dtype = jnp.dtype(config.dtype)
        self.norm = {_sub(gn, F="features")}
        self.attn = eqx.nn.MultiheadAttention(config.num_heads, features, dtype=dtype, key=key)

    def __call__(self, x: jax.Array) -> jax.Array:
        features, height, width = x.shape
        tokens = self.norm(x).reshape(features, height * width).T
        h = self.attn(tokens, tokens, tokens)
        return x + h.T.reshape(features, height, width)
'''
    resample = ""
    if down:
        if spec.strided_downsample:
            resample += '''
class Downsample(eqx.Module):
    """Halve the resolution with a strided 3x3 convolution."""

    conv: eqx.nn.Conv2d

    def __init__(self, features: int, config: UNetConfig, *, key):
        self.conv = eqx.nn.Conv2d(features, features, 3, stride=2, padding=1, dtype=jnp.dtype(config.dtype), key=key)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)
'''
        else:
            resample += '''
def downsample(x: jax.Array) -> jax.Array:
    """Halve the resolution with 2x2 average pooling."""
    features, height, width = x.shape
    return jnp.mean(x.reshape(features, height // 2, 2, width // 2, 2), axis=(2, 4))
'''
    if up:
        repeat = (
            '        features, height, width = x.shape\n        x = jax.image.resize(x, (features, 2 * height, 2 * width), method="nearest")'
            if spec.resize_upsample
            else "        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)"
        )
        resample += f'''
class Upsample(eqx.Module):
    """Double the resolution (nearest neighbour), then a 3x3 convolution."""

    conv: eqx.nn.Conv2d

    def __init__(self, features: int, config: UNetConfig, *, key):
        self.conv = eqx.nn.Conv2d(features, features, 3, padding=1, dtype=jnp.dtype(config.dtype), key=key)

    def __call__(self, x: jax.Array) -> jax.Array:
{repeat}
        return self.conv(x)
'''
    time_fields = "    time_mlp1: eqx.nn.Linear\n    time_mlp2: eqx.nn.Linear\n"
    time_init = """self.time_mlp1 = eqx.nn.Linear(config.channels, config.time_embed_dim, dtype=dtype, key=keys[0])
        self.time_mlp2 = eqx.nn.Linear(config.time_embed_dim, config.time_embed_dim, dtype=dtype, key=keys[1])"""
    time_call = """temb = timestep_embedding(t, self.config.channels).astype(h.dtype)
        temb = self.time_mlp2(jax.nn.silu(self.time_mlp1(temb)))"""
    if spec.scope == "net":
        down_field = "    downsamples: tuple\n" if spec.strided_downsample else ""
        down_init = (
            "\n        self.downsamples = tuple(\n            Downsample(config.channels * mult, config, key=next(keys)) for mult in config.channel_mult[:-1]\n        )"
            if spec.strided_downsample
            else ""
        )
        down_call = "self.downsamples[level](h)" if spec.strided_downsample else "downsample(h)"
        attn_field = "    mid_attn: AttentionBlock\n" if spec.self_attention else ""
        attn_init = (
            "\n        self.mid_attn = AttentionBlock(features, config, key=next(keys))" if spec.self_attention else ""
        )
        attn_call = "\n        h = self.mid_attn(h)" if spec.self_attention else ""
        model = f'''
class UNet(eqx.Module):
    """A diffusion U-Net predicting the noise in one CHW image at one timestep."""

    config: UNetConfig = eqx.field(static=True)
{time_fields}    conv_in: eqx.nn.Conv2d
    down_blocks: tuple
{down_field}    mid_block1: ResBlock
{attn_field}    mid_block2: ResBlock
    up_blocks: tuple
    upsamples: tuple
    norm_out: eqx.nn.GroupNorm
    conv_out: eqx.nn.Conv2d

    def __init__(self, config: UNetConfig, key):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        keys = iter(jax.random.split(key, 64))
        self.time_mlp1 = eqx.nn.Linear(config.channels, config.time_embed_dim, dtype=dtype, key=next(keys))
        self.time_mlp2 = eqx.nn.Linear(config.time_embed_dim, config.time_embed_dim, dtype=dtype, key=next(keys))
        self.conv_in = eqx.nn.Conv2d(config.in_channels, config.channels, 3, padding=1, dtype=dtype, key=next(keys))
        features = config.channels
        skip_features = []
        down_blocks = []
        for mult in config.channel_mult:
            blocks = []
            for _ in range(config.num_blocks):
                blocks.append(ResBlock(features, config.channels * mult, config, key=next(keys)))
                features = config.channels * mult
            skip_features.append(features)
            down_blocks.append(tuple(blocks))
        self.down_blocks = tuple(down_blocks){down_init}
        self.mid_block1 = ResBlock(features, features, config, key=next(keys)){attn_init}
        self.mid_block2 = ResBlock(features, features, config, key=next(keys))
        up_blocks = []
        upsamples = []
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            blocks = []
            for block in range(config.num_blocks):
                in_features = features + (skip_features[level] if block == 0 else 0)
                blocks.append(ResBlock(in_features, config.channels * mult, config, key=next(keys)))
                features = config.channels * mult
            up_blocks.append(tuple(blocks))
            if level > 0:
                upsamples.append(Upsample(features, config, key=next(keys)))
        self.up_blocks = tuple(up_blocks)
        self.upsamples = tuple(upsamples)
        self.norm_out = eqx.nn.GroupNorm(config.num_groups, features, eps=config.norm_eps, dtype=dtype)
        self.conv_out = eqx.nn.Conv2d(features, config.in_channels, 3, padding=1, dtype=dtype, key=next(keys))

    def __call__(self, image: jax.Array, t: jax.Array) -> jax.Array:
        h = self.conv_in(image.astype(self.conv_in.weight.dtype))
        {time_call}
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, temb)
            skips.append(h)
            if level < len(self.down_blocks) - 1:
                h = {down_call}
        h = self.mid_block1(h, temb){attn_call}
        h = self.mid_block2(h, temb)
        for level, blocks in enumerate(self.up_blocks):
            h = jnp.concatenate([h, skips.pop()], axis=0)
            for block in blocks:
                h = block(h, temb)
            if level < len(self.upsamples):
                h = self.upsamples[level](h)
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
'''
        if not up:
            model = model.replace("    upsamples: tuple\n", "").replace("        upsamples = []\n", "")
            model = model.replace(
                "            if level > 0:\n                upsamples.append(Upsample(features, config, key=next(keys)))\n",
                "",
            )
            model = model.replace("        self.upsamples = tuple(upsamples)\n", "")
            model = model.replace(
                "            if level < len(self.upsamples):\n                h = self.upsamples[level](h)\n", ""
            )
        ctor = "UNet"
        data = "images"
        shape = "(config.batch_size, config.in_channels, config.image_size, config.image_size), jnp.float32"
        doc = "Predict the noise in a batch of noisy NCHW images at the given diffusion timesteps."
    else:
        fields, inits, calls = [], [], []
        if spec.self_attention:
            fields.append("    attn: AttentionBlock")
            inits.append("self.attn = AttentionBlock(out_features, config, key=keys[3])")
            calls.append("h = self.attn(h)")
        if down:
            if spec.strided_downsample:
                fields.append("    downsample: Downsample")
                inits.append("self.downsample = Downsample(out_features, config, key=keys[4])")
                calls.append("h = self.downsample(h)")
            else:
                calls.append("h = downsample(h)")
        if up:
            fields.append("    upsample: Upsample")
            inits.append("self.upsample = Upsample(out_features, config, key=keys[4])")
            calls.append("h = self.upsample(h)")
        extra_fields = "".join(line + "\n" for line in fields)
        extra_init = "".join("\n        " + line for line in inits)
        extra_call = "".join("\n        " + line for line in calls)
        model = f'''
class DiffusionBlock(eqx.Module):
    """Timestep MLP and a residual block on one CHW feature map{" with self-attention" if spec.self_attention else ""}{", then resampling" if down or up else ""}."""

    config: UNetConfig = eqx.field(static=True)
{time_fields}    block: ResBlock
{extra_fields}
    def __init__(self, config: UNetConfig, key):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        keys = jax.random.split(key, 5)
        out_features = (2 if config.double_channels else 1) * config.channels
        {time_init}
        self.block = ResBlock(config.channels, out_features, config, key=keys[2]){extra_init}

    def __call__(self, hidden: jax.Array, t: jax.Array) -> jax.Array:
        h = hidden
        {time_call}
        h = self.block(h, temb){extra_call}
        return h
'''
        ctor = "DiffusionBlock"
        data = "hidden"
        shape = "(config.batch_size, config.channels, config.image_size, config.image_size), jnp.dtype(config.dtype)"
        doc = "The diffusion block on NCHW feature maps, conditioned on the diffusion timesteps."
    fn = f'''
def {spec.function_name}(params, static, {data}, timesteps):
    """{doc}"""
    model = eqx.combine(params, static)
    return jax.vmap(model)({data}, timesteps)
'''
    t_dtype = "jnp.float32" if spec.float_timesteps else "jnp.int32"
    example = f"""
def example_args():
    config = UNetConfig()
    model = eqx.filter_eval_shape({ctor}, config, jax.random.PRNGKey(0))
    params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    {data} = jax.ShapeDtypeStruct({shape})
    timesteps = jax.ShapeDtypeStruct((config.batch_size,), {t_dtype})
    return params, static, {data}, timesteps
"""
    source = _join(
        _imports(math=True, lib="equinox"),
        _unet_config(spec),
        _TIMESTEP_SINGLE,
        resblock,
        attn,
        resample,
        model,
        fn,
        example,
    )
    return source, ("vmap",)


# === the family ====================================================================================

_RENDERERS = {
    ("resnet", "jax"): _render_resnet_jax,
    ("resnet", "flax_nnx"): _render_resnet_nnx,
    ("resnet", "equinox"): _render_resnet_eqx,
    ("vit", "jax"): _render_vit_jax,
    ("vit", "flax_nnx"): _render_vit_nnx,
    ("vit", "equinox"): _render_vit_eqx,
    ("unet", "jax"): _render_unet_jax,
    ("unet", "flax_nnx"): _render_unet_nnx,
    ("unet", "equinox"): _render_unet_eqx,
}


def render(spec: Spec) -> ModelProgram:
    """The program ``spec`` describes (draws no random numbers)."""
    source, transforms = _RENDERERS[spec.variant, spec.style](spec)
    return ModelProgram(CATEGORY, spec.style, spec.function_name, source, transforms)


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("resnet", "block"): ("bn_train",),
    ("resnet", "net"): ("bn_train", "imagenet_stem"),
    ("unet", "block"): ("self_attention",),
    ("unet", "net"): ("resize_upsample", "self_attention", "strided_downsample"),
    ("vit", "net"): ("attention", "cls_token", "conv_patches", "scan_layers"),
}
FAMILY = Family(CATEGORY, sample, render, context=("variant", "scope"), structure=STRUCTURE)
