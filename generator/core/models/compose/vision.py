"""Vision programs composed from blocks: a grammar that draws architectures the way published
image models combine blocks (``conv`` holds the specs and the blocks), and the renderer that
writes one self-contained module per spec (``render`` does the same for transformers)."""

from __future__ import annotations

import random

from ..base import BATCH_SIZES, CHANNELS, IMAGE_SIZES, ModelProgram, config_class, ffn_dim, pick
from .blocks import LAYER_NORM, RMS_NORM, attend_helper
from .conv import (
    CONV2D,
    GROUP_NORM,
    ConvBlock,
    Layout,
    UNet,
    VisionArch,
    VisionSizes,
    VisionSpec,
    classifier_block,
    timestep_helper,
    unet_block,
)
from .emit import Block, Conv, Emitter, GroupNorm, Idioms, Norm, Stack
from .grammar import CHECKPOINT_POLICIES
from .render import STYLE_NAMES, ModelCode, all_blocks, module_imports
from .spec import Attention, Layer, Mlp

UNET_MULTS = ((1, 2), (1, 2, 2), (1, 2, 4), (1, 1, 2), (1, 2, 3), (1, 2, 2, 2), (1, 2, 3, 4), (1, 1, 2, 2))
NAMES = {
    "convnet": (("classify", "forward", "predict", "image_logits"), ("ModelConfig", "ConvNetConfig")),
    "vit": (
        ("classify", "forward", "vit_forward", "image_logits"),
        ("ViTConfig", "VisionTransformerConfig", "ModelConfig"),
    ),
    "hybrid": (("classify", "forward", "hybrid_forward"), ("HybridConfig", "ModelConfig")),
    "unet": (("denoise", "predict_noise", "unet_forward"), ("UNetConfig", "DiffusionConfig")),
}
MODEL_NAMES = {
    "basic": ("ResNet",),
    "bottleneck": ("ResNet",),
    "convnext": ("ConvNeXt",),
    "mbconv": ("EfficientNet", "MobileNet"),
    "fused_mbconv": ("EfficientNetV2",),
    "vit": ("VisionTransformer", "ViT"),
    "hybrid": ("HybridViT",),
    "unet": ("UNet", "Denoiser"),
}


# --- the grammar -------------------------------------------------------------------------


def _resnet_block(rng: random.Random, kind: str) -> ConvBlock:
    return ConvBlock(
        kind=kind,
        norm="group" if rng.random() < 0.8 else "layer",
        activation=pick(rng, ("relu", "relu", "relu", "silu", "gelu")),
        preact=rng.random() < 0.3,
        se=rng.random() < 0.25,
        scale="layer_scale" if rng.random() < 0.15 else "",
    )


def _mbconv_block(kind: str, activation: str, norm: str, se: bool) -> ConvBlock:
    return ConvBlock(kind=kind, norm=norm, activation=activation, se=se and kind == "mbconv")


def sample_convnet(rng: random.Random, net: str) -> VisionArch:
    family = pick(rng, ("resnet", "resnet", "convnext", "efficientnet")) if net == "convnet" else "resnet"
    num_stages = rng.randint(2, 4) if net == "convnet" else rng.randint(1, 3)
    if family == "resnet":
        block = _resnet_block(rng, pick(rng, ("basic", "bottleneck")))
        stages = (block,) * num_stages
        stem = pick(rng, ("conv", "conv_pool", "conv_pool", "deep") if net == "convnet" else ("conv_pool", "deep"))
        downsample = pick(rng, ("block", "block", "block", "conv", "pool_conv"))
        head = "norm_pool" if block.preact else "pool"
    elif family == "convnext":
        scale = pick(rng, ("layer_scale", "layer_scale", "grn", ""))
        stages = (ConvBlock("convnext", "layer", pick(rng, ("gelu", "gelu", "silu")), scale=scale),) * num_stages
        stem, downsample, head = pick(rng, ("patchify", "patchify", "conv")), "norm_conv", "pool_norm"
    else:
        activation = pick(rng, ("silu", "silu", "relu6", "hard_swish"))
        norm = "group" if rng.random() < 0.8 else "layer"
        se = rng.random() < 0.7
        fused = rng.randint(0, num_stages - 1) if rng.random() < 0.5 else 0  # EfficientNetV2: fused early stages
        kinds = ["fused_mbconv"] * fused + ["mbconv"] * (num_stages - fused)
        blocks = {k: _mbconv_block(k, activation, norm, se) for k in dict.fromkeys(kinds)}
        stages = tuple(blocks[k] for k in kinds)
        stem, downsample = pick(rng, ("conv", "deep")), pick(rng, ("block", "block", "conv"))
        head = pick(rng, ("norm_pool", "pool"))
    return VisionArch(
        net=net,
        stages=stages,
        stem=stem,
        downsample=downsample,
        head=head if net == "convnet" else "",
        pool=("max" if rng.random() < 0.15 else "mean") if net == "convnet" else "",
    )


def sample_encoder(rng: random.Random) -> Layer:
    attention = Attention(
        impl=pick(rng, ("grouped", "grouped", "dpa")),
        rope="none",
        qk_norm=rng.random() < 0.25,
        softcap=False,
        qkv_bias=rng.random() < 0.6,
        causal=False,
    )
    mlp = Mlp(pick(rng, ("gelu", "gelu", "gelu", "swiglu", "geglu")), bias=rng.random() < 0.7)
    placement = pick(rng, ("pre", "pre", "pre", "pre", "post", "sandwich", "parallel"))
    return Layer(attention, mlp, norm="layer" if rng.random() < 0.8 else "rms", placement=placement)


def sample_architecture(rng: random.Random) -> VisionArch:
    net = pick(
        rng, ("convnet", "convnet", "convnet", "convnet", "vit", "vit", "vit", "hybrid", "hybrid", "unet", "unet")
    )
    if net == "unet":
        unet = UNet(
            mults=pick(rng, UNET_MULTS),
            attention=pick(rng, ("none", "einsum", "einsum", "dpa")),
            down=pick(rng, ("conv", "conv", "pool")),
            up=pick(rng, ("repeat", "resize")),
            scale_shift=rng.random() < 0.4,
            embedding=pick(rng, ("sin_cos", "cos_sin")),
            activation="silu" if rng.random() < 0.85 else "gelu",
        )
        return VisionArch(net="unet", unet=unet)
    layout, remat = "unrolled", ""
    if net != "convnet" and rng.random() < 0.4:
        layout = "scan"
        remat = pick(rng, ("", "", "checkpoint", *CHECKPOINT_POLICIES))
    encoder = sample_encoder(rng) if net != "convnet" else None
    if net == "vit":
        return VisionArch(
            net="vit",
            patch=pick(rng, ("conv", "conv", "linear")),
            pool=pick(rng, ("cls", "mean")),
            encoder=encoder,
            layout=layout,
            remat=remat,
        )
    arch = sample_convnet(rng, net)
    if net == "hybrid":
        arch = VisionArch(
            **{
                **arch.__dict__,
                "pool": pick(rng, ("cls", "mean")),
                "encoder": encoder,
                "layout": layout,
                "remat": remat,
            }
        )
    return arch


def _batch(rng: random.Random, per_example: int, cap: int) -> int:
    return pick(rng, [b for b in BATCH_SIZES if b * per_example <= cap] or [1])


def _encoder_sizes(rng: random.Random, arch: VisionArch) -> dict:
    d_model = pick(rng, (192, 384, 512, 768, 1024, 1280))
    heads = d_model // 64
    scan = arch.layout == "scan"
    return dict(
        d_model=d_model,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=64,
        d_ff=ffn_dim(rng, d_model, gated=arch.encoder.mlp.gated),
        num_layers=pick(rng, (6, 8, 12, 16, 24)) if scan else rng.randint(2, 6),
    )


def sample_sizes(rng: random.Random, arch: VisionArch) -> VisionSizes:
    eps = pick(rng, (1e-5, 1e-6))
    in_channels = 3
    if arch.net == "unet":
        mults = arch.unet.mults
        image = pick(rng, [s for s in (32, 64, 96, 128) if s >> (len(mults) - 1) >= 4])
        channels = pick(rng, [c for c in (64, 96, 128, 192, 256) if c * max(mults) <= 1024])
        return VisionSizes(
            batch_size=_batch(rng, image * image * channels, 1 << 26),
            image_size=image,
            in_channels=pick(rng, (3, 4)),
            channels=channels,
            num_groups=pick(rng, [g for g in (8, 16, 32) if channels % g == 0]),
            time_embed_dim=4 * channels,
            num_heads=pick(rng, (4, 8)) if arch.unet.attention != "none" else 0,
            norm_eps=eps,
        )
    if arch.net == "vit":
        image = pick(rng, IMAGE_SIZES)
        patch = pick(rng, [p for p in (4, 8, 14, 16, 32) if image % p == 0 and 2 <= image // p <= 32])
        tokens = (image // patch) ** 2 + 1
        return VisionSizes(
            batch_size=_batch(rng, tokens, 1 << 16),
            image_size=image,
            in_channels=in_channels,
            num_classes=pick(rng, (10, 100, 1000)),
            patch_size=patch,
            norm_eps=eps,
            **_encoder_sizes(rng, arch),
        )
    n = len(arch.stages)
    hybrid = arch.net == "hybrid"
    image = pick(rng, [s for s in IMAGE_SIZES if s >= 64] if hybrid else IMAGE_SIZES)
    expand = 4 if arch.stages[-1].kind in ("mbconv", "fused_mbconv") else 1
    channels = pick(rng, [c for c in CHANNELS if c * 2 ** (n - 1) * expand <= 2048 and (not hybrid or c <= 256)])
    low = 2 if arch.downsample == "block" else 1
    depths = tuple(rng.randint(low if i else 1, 4 if arch.stages[i].kind != "convnext" else 6) for i in range(n))
    grouped = any(b.norm == "group" for b in arch.stages)
    return VisionSizes(
        batch_size=_batch(rng, image * image, 1 << 22),
        image_size=image,
        in_channels=in_channels,
        num_classes=pick(rng, (10, 100, 1000)),
        channels=channels,
        depths=depths,
        num_groups=pick(rng, [g for g in (8, 16, 32) if (channels // 4) % g == 0]) if grouped else 0,
        norm_eps=eps,
        **(_encoder_sizes(rng, arch) if hybrid else {}),
    )


def sample(rng: random.Random, category: str = "vision") -> VisionSpec:
    arch = sample_architecture(rng)
    style = pick(rng, ("jax", "flax_nnx", "equinox"))
    sizes = sample_sizes(rng, arch)
    library = style != "jax" and rng.random() < 0.5
    functions, configs = NAMES[arch.net]
    model = MODEL_NAMES[arch.stages[-1].kind if arch.net == "convnet" else arch.net]
    return VisionSpec(
        category=category,
        style=style,
        arch=arch,
        sizes=sizes,
        dtype="bfloat16" if rng.random() < 0.7 else "float32",
        library_layers=library,
        einsum=not library and rng.random() < 0.4,
        function_name=pick(rng, functions),
        config_name=pick(rng, configs),
        model_name=pick(rng, model),
    )


# --- rendering ---------------------------------------------------------------------------


def _config(spec: VisionSpec, grouped: bool) -> str:
    arch, s = spec.arch, spec.sizes
    fields: list[tuple[str, str, object]] = [
        ("batch_size", "int", s.batch_size),
        ("image_size", "int", s.image_size),
        ("in_channels", "int", s.in_channels),
    ]
    if arch.net != "unet":
        fields.append(("num_classes", "int", s.num_classes))
    if arch.net == "vit":
        fields.append(("patch_size", "int", s.patch_size))
    if arch.net != "vit":
        fields.append(("channels", "int", s.channels))
    fields += [(f"depth_{i + 1}", "int", d) for i, d in enumerate(s.depths)]
    if grouped:
        fields.append(("num_groups", "int", s.num_groups))
    if arch.net == "unet":
        fields.append(("time_embed_dim", "int", s.time_embed_dim))
        if arch.unet.attention != "none":
            fields.append(("num_heads", "int", s.num_heads))
    if arch.encoder is not None:
        fields += [
            ("d_model", "int", s.d_model),
            ("num_layers", "int", s.num_layers),
            ("num_heads", "int", s.num_heads),
            ("num_kv_heads", "int", s.num_kv_heads),
            ("head_dim", "int", s.head_dim),
            ("d_ff", "int", s.d_ff),
        ]
    fields += [("norm_eps", "float", s.norm_eps), ("dtype", "str", spec.dtype)]
    what = {
        "convnet": "a convolutional image classifier",
        "vit": "a Vision Transformer",
        "hybrid": "a hybrid convolution-transformer classifier",
        "unet": "a diffusion U-Net",
    }[arch.net]
    return config_class(spec.config_name, fields, f"Sizes and constants of {what}.")


def _leaves(blocks: list[Block]) -> list:
    out = []
    for b in blocks:
        out += [c for c in b.children if not isinstance(c, (Block, Stack))]
    return out


def _helpers(spec: VisionSpec, blocks: list[Block], library: bool) -> list[str]:
    leaves = _leaves(blocks)
    last = spec.style != "equinox"
    out = []
    if not library and any(isinstance(c, Conv) for c in leaves):
        out.append(CONV2D[last])
    if not library and any(isinstance(c, GroupNorm) for c in leaves):
        out.append(GROUP_NORM[last])
    kinds = {c.kind for c in leaves if isinstance(c, Norm)}
    if not library:
        out += [RMS_NORM] * ("rms" in kinds) + [LAYER_NORM] * ("layer" in kinds)
    if spec.arch.encoder is not None:
        out.append(attend_helper(spec.arch.encoder.attention, False, False))
    if spec.arch.net == "unet":
        out.append(timestep_helper(spec.arch.unet.embedding))
    return out


def _entry(spec: VisionSpec, top: Block) -> tuple[str, str]:
    style, fn, cfg = spec.style, spec.function_name, spec.config_name
    unet = spec.arch.net == "unet"
    data = "images, timesteps" if unet else "images"
    typed = "images: jax.Array, timesteps: jax.Array" if unet else "images: jax.Array"
    image = (
        "(config.batch_size, config.in_channels, config.image_size, config.image_size)"
        if style == "equinox"
        else "(config.batch_size, config.image_size, config.image_size, config.in_channels)"
    )
    layout = "NCHW" if style == "equinox" else "NHWC"
    doc = (
        f"The predicted noise of a batch of {layout} images at their timesteps."
        if unet
        else f"Class logits (batch, num_classes) of a batch of {layout} images."
    )
    function = ""
    if style == "jax":
        abstract = ["params = jax.eval_shape(lambda key: init_params(key, config), jax.random.key(0))"]
        returned = f"params, {data}, config"
    elif style == "flax_nnx":
        function = "\n".join(
            [
                f"def {fn}(graphdef: nnx.GraphDef, state: nnx.State, {typed}) -> jax.Array:",
                f'    """{doc}"""',
                "    model = nnx.merge(graphdef, state)",
                f"    return model({data})",
            ]
        )
        abstract = [f"graphdef, state = nnx.split(nnx.eval_shape(lambda: {top.cls}(config, rngs=nnx.Rngs(0))))"]
        returned = f"graphdef, state, {data}"
    else:
        function = "\n".join(
            [
                f"def {fn}(params: {top.cls}, static: {top.cls}, {typed}) -> jax.Array:",
                f'    """{doc} The model sees one image; vmap maps it over the batch."""',
                "    model = eqx.combine(params, static)",
                f"    return jax.vmap(model)({data})",
            ]
        )
        abstract = [
            f"model = eqx.filter_eval_shape({top.cls}, config, jax.random.key(0))",
            "params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))",
        ]
        returned = f"params, static, {data}"
    lines = ["def example_args():", f"    config = {cfg}()", *("    " + a for a in abstract)]
    lines.append(f"    images = jax.ShapeDtypeStruct({image}, jnp.float32)")
    if unet:
        lines.append("    timesteps = jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)")
    lines.append(f"    return {returned}")
    return function, "\n".join(lines) + "\n"


def _module_doc(spec: VisionSpec) -> str:
    arch = spec.arch
    parts: list[str] = []
    if arch.net in ("convnet", "hybrid"):
        kinds = " then ".join(dict.fromkeys(b.kind.replace("_", "-") for b in arch.stages))
        block = arch.stages[0]
        norm = {"group": "GroupNorm", "layer": "LayerNorm"}[block.norm]
        parts += [f"{kinds} blocks", norm, block.activation, f"{arch.stem.replace('_', '+')} stem"]
        if block.preact:
            parts.append("pre-activation")
        if any(b.se for b in arch.stages):
            parts.append("squeeze-and-excitation")
        if block.scale:
            parts.append(block.scale.replace("_", " "))
        parts.append(
            {
                "block": "strided blocks",
                "conv": "strided convolutions",
                "norm_conv": "norm + 2x2 convolutions",
                "pool_conv": "pooling + 1x1 convolutions",
            }[arch.downsample]
            + " between stages"
        )
    if arch.encoder is not None:
        layer = arch.encoder
        if arch.net == "vit":
            parts.append(
                "patch embedding by "
                + ("a strided convolution" if arch.patch == "conv" else "reshape and a linear layer")
            )
        parts += [
            f"{layer.placement}-norm {layer.norm.replace('layer', 'LayerNorm').replace('rms', 'RMSNorm')} encoder",
            {"grouped": "einsum attention", "dpa": "jax.nn.dot_product_attention"}[layer.attention.impl],
            f"{layer.mlp.activation} MLP",
            "class token" if arch.pool == "cls" else "mean pooling",
        ]
        if layer.attention.qk_norm:
            parts.append("QK-norm")
        if arch.layout == "scan":
            parts.append("layers under lax.scan")
    if arch.net == "unet":
        u = arch.unet
        parts += [
            f"{len(u.mults)} resolutions",
            "GroupNorm",
            u.activation,
            "scale-shift timestep conditioning" if u.scale_shift else "additive timestep conditioning",
            "strided-convolution downsampling" if u.down == "conv" else "average-pool downsampling",
            ("jnp.repeat" if u.up == "repeat" else "jax.image.resize") + " upsampling",
        ]
        if u.attention != "none":
            parts.append("mid-block self-attention")
    what = {
        "convnet": "A convolutional image classifier",
        "vit": "A Vision Transformer",
        "hybrid": "A hybrid convolution-transformer classifier",
        "unet": "A diffusion U-Net denoiser",
    }[arch.net]
    return f'"""{what} in {STYLE_NAMES[spec.style]}: {", ".join(parts)}."""\n'


def model_code(spec: VisionSpec) -> ModelCode:
    """The code of ``spec``'s network (in plain JAX a pair of functions, ``init_params`` and
    ``spec.function_name``)."""
    emitter = Emitter(spec.style, Idioms(spec.library_layers, spec.einsum), spec.config_name)
    L = Layout(spec.style != "equinox")
    top = (
        unet_block(spec.arch, L, spec.model_name)
        if spec.arch.net == "unet"
        else classifier_block(spec.arch, L, spec.model_name)
    )
    blocks = all_blocks(top)
    grouped = any(isinstance(c, GroupNorm) for c in _leaves(blocks))
    code = _helpers(spec, blocks, emitter.library)
    for block in blocks:
        text = emitter.emit(block)
        if block is top and spec.style == "jax":
            text = text.replace(f"def init_{block.fn}(", "def init_params(", 1)
            text = text.replace(f"def {block.fn}(", f"def {spec.function_name}(", 1)
        code.append(text)
    return ModelCode(_module_doc(spec), _config(spec, grouped), (), tuple(code), top)


def render(spec: VisionSpec) -> ModelProgram:
    model = model_code(spec)
    parts = list(model.code)
    function, example = _entry(spec, model.top)
    if function:
        parts.append(function)
    parts.append(example)
    body = "\n\n".join(p.rstrip("\n") + "\n" for p in [model.config, *parts])
    source = model.doc + "\n" + module_imports(body, spec.style) + "\n\n" + body
    transforms = [t for t, mark in (("scan", "lax.scan"), ("checkpoint", "jax.checkpoint")) if mark in source]
    if "jax.vmap" in source or "eqx.filter_vmap" in source or "nnx.vmap" in source:
        transforms.append("vmap")
    return ModelProgram(
        category=spec.category,
        style=spec.style,
        function_name=spec.function_name,
        source=source,
        transforms=tuple(transforms),
    )
