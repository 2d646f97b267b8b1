"""Vision models as data: their specs and their blocks (convolutional residual blocks, stems,
stage transitions, squeeze-excitation, patch embeddings, diffusion U-Net blocks), each written
once and rendered in every style by ``emit``. A ViT's encoder layers are the transformer
library's (``blocks.layer_block``) with bidirectional attention.

Feature maps are channels-last and batched in plain JAX and Flax (NHWC), one channel-first map
in Equinox (CHW; the caller vmaps): ``Layout`` holds the few expressions that differ (the
channel axis, broadcasting a per-channel vector, flattening a map into tokens).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from .blocks import layer_block
from .emit import Block, Conv, Dense, GroupNorm, Norm, Param, Stack
from .spec import Architecture, Layer

ACTIVATIONS = {
    "relu": "jax.nn.relu({})",
    "gelu": "jax.nn.gelu({})",
    "silu": "jax.nn.silu({})",
    "relu6": "jax.nn.relu6({})",
    "hard_swish": "jax.nn.hard_swish({})",
}
BLOCK_NAMES = {
    "basic": "BasicBlock",
    "bottleneck": "Bottleneck",
    "convnext": "ConvNeXtBlock",
    "mbconv": "MBConv",
    "fused_mbconv": "FusedMBConv",
}


# --- specs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvBlock:
    """A residual block of a convolutional stage: ``basic`` (two 3x3 convolutions), ``bottleneck``
    (1x1, 3x3, 1x1 at a quarter of the width), ``convnext`` (7x7 depthwise, LayerNorm, an inverted
    MLP), ``mbconv`` (1x1 expand, 3x3 depthwise, 1x1 project: MobileNetV2/EfficientNet) or
    ``fused_mbconv`` (3x3 expand, 1x1 project: EfficientNetV2). ``preact`` puts norms and
    activations before the convolutions (ResNet v2); ``se`` adds squeeze-and-excitation; ``scale``
    is a learned per-channel residual scale (``layer_scale``) or ConvNeXt V2's global response
    normalization (``grn``)."""

    kind: str
    norm: str  # "group" | "layer"
    activation: str
    preact: bool = False
    se: bool = False
    scale: str = ""


@dataclass(frozen=True)
class UNet:
    """A diffusion U-Net: widths ``channels * mult`` per level, one residual block per level on
    the way down and up (skip connections concatenated), timestep embeddings added to each
    block or as a scale and shift of its second norm (``scale_shift``), self-attention at the
    lowest resolution (``attention``: einsum or ``jax.nn.dot_product_attention``)."""

    mults: tuple[int, ...]
    attention: str  # "none" | "einsum" | "dpa"
    down: str  # "conv" (strided) | "pool" (average)
    up: str  # "repeat" | "resize" (nearest neighbours), then a 3x3 convolution
    scale_shift: bool
    embedding: str  # "sin_cos" | "cos_sin": the halves of the sinusoidal timestep embedding
    activation: str


@dataclass(frozen=True)
class VisionArch:
    """A vision program's structure. ``net``: ``convnet`` (stem, stages, pooled head), ``vit``
    (patches, transformer encoder), ``hybrid`` (a convolutional stem and stages, then a
    transformer encoder over the feature map's positions) or ``unet`` (a denoiser)."""

    net: str
    stages: tuple[ConvBlock, ...] = ()
    stem: str = ""  # "conv" | "conv_pool" | "deep" | "patchify"
    downsample: str = ""  # "block" | "conv" | "norm_conv" | "pool_conv"
    head: str = ""  # "pool" | "norm_pool" | "pool_norm"
    pool: str = ""  # "mean" | "max" | "cls"
    patch: str = ""  # "conv" | "linear"
    encoder: Layer | None = None
    layout: str = "unrolled"
    remat: str = ""
    unet: UNet | None = None

    @property
    def transformer(self) -> Architecture | None:
        """The encoder as the transformer library's architecture (bidirectional attention)."""
        if self.encoder is None:
            return None
        return Architecture("classifier", self.encoder, layout=self.layout, remat=self.remat, learned_positions=True)


@dataclass(frozen=True)
class VisionSizes:
    """Sizes and constants (0 or empty where the architecture has no use for one)."""

    batch_size: int
    image_size: int
    in_channels: int
    num_classes: int = 0
    channels: int = 0
    depths: tuple[int, ...] = ()
    num_groups: int = 0
    patch_size: int = 0
    d_model: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    d_ff: int = 0
    num_layers: int = 0
    time_embed_dim: int = 0
    norm_eps: float = 1e-6


@dataclass(frozen=True)
class VisionSpec:
    """Everything one vision program is: its architecture, sizes and how it is written."""

    category: str
    style: str
    arch: VisionArch
    sizes: VisionSizes
    dtype: str
    library_layers: bool
    einsum: bool
    function_name: str
    config_name: str
    model_name: str

    def structure(self) -> str:
        """What the program computes, without sizes, names, dtype, style or idioms."""
        return f"{self.category}\n{self.arch!r}"

    def digest(self) -> bytes:
        """A hash of every choice: a program's shard follows from it."""
        return hashlib.sha256(repr(self).encode()).digest()


# --- layouts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The expressions that differ between batched NHWC maps and one CHW map."""

    last: bool

    @property
    def ch(self) -> str:
        return "-1" if self.last else "-3"

    @property
    def spatial(self) -> str:
        return "(-3, -2)" if self.last else "(-2, -1)"

    def bcast(self, v: str) -> str:
        return f"{v}[..., None, None, :]" if self.last else f"{v}[..., :, None, None]"

    def to_last(self, x: str) -> str:
        return x if self.last else f"jnp.moveaxis({x}, -3, -1)"

    def from_last(self, x: str) -> str:
        return x if self.last else f"jnp.moveaxis({x}, -1, -3)"

    def tokens(self, x: str) -> str:
        """A map as (..., positions, channels)."""
        return f"{x}.reshape(*{x}.shape[:-3], -1, {x}.shape[-1])" if self.last else f"{x}.reshape({x}.shape[0], -1).T"

    def untokens(self, t: str, like: str) -> str:
        return f"{t}.reshape({like}.shape)" if self.last else f"{t}.T.reshape({like}.shape)"

    def window(self, n: int) -> str:
        return f"(1, {n}, {n}, 1)" if self.last else f"(1, {n}, {n})"

    def upsample(self, x: str, how: str) -> str:
        h, w = ("-3", "-2") if self.last else ("-2", "-1")
        if how == "repeat":
            return f"jnp.repeat(jnp.repeat({x}, 2, axis={h}), 2, axis={w})"
        shape = (
            f"(*{x}.shape[:-3], 2 * {x}.shape[-3], 2 * {x}.shape[-2], {x}.shape[-1])"
            if self.last
            else f"({x}.shape[0], 2 * {x}.shape[-2], 2 * {x}.shape[-1])"
        )
        return f'jax.image.resize({x}, {shape}, "nearest")'

    def avg_pool(self, x: str) -> str:
        return f'lax.reduce_window({x}, 0.0, lax.add, {self.window(2)}, {self.window(2)}, "VALID") / 4'

    def max_pool(self, x: str) -> str:
        return f'lax.reduce_window({x}, -jnp.inf, lax.max, {self.window(3)}, {self.window(2)}, "SAME")'


# --- helpers: module-level functions the blocks call ---------------------------------------

CONV2D = {
    True: '''def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """A "SAME" convolution of NHWC maps with an HWIO kernel (depthwise when its input axis is 1)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1] // kernel.shape[-2],
    )
''',
    False: '''def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """A "SAME" convolution of one CHW map with an HWIO kernel (depthwise when its input axis is 1)."""
    out = lax.conv_general_dilated(
        x[None],
        kernel,
        window_strides=(stride, stride),
        padding="SAME",
        dimension_numbers=("NCHW", "HWIO", "NCHW"),
        feature_group_count=x.shape[0] // kernel.shape[-2],
    )
    return out[0]
''',
}

GROUP_NORM = {
    True: '''def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int, eps: float) -> jax.Array:
    """GroupNorm of NHWC maps: statistics over each group of channels and all positions, in float32."""
    groups = x.astype(jnp.float32).reshape(*x.shape[:-1], num_groups, -1)
    mean = jnp.mean(groups, axis=(-4, -3, -1), keepdims=True)
    variance = jnp.mean(jnp.square(groups - mean), axis=(-4, -3, -1), keepdims=True)
    normed = ((groups - mean) * lax.rsqrt(variance + eps)).reshape(x.shape)
    return (normed * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)
''',
    False: '''def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int, eps: float) -> jax.Array:
    """GroupNorm of one CHW map: statistics over each group of channels and all positions, in float32."""
    groups = x.astype(jnp.float32).reshape(num_groups, -1, *x.shape[1:])
    mean = jnp.mean(groups, axis=(-3, -2, -1), keepdims=True)
    variance = jnp.mean(jnp.square(groups - mean), axis=(-3, -2, -1), keepdims=True)
    normed = ((groups - mean) * lax.rsqrt(variance + eps)).reshape(x.shape)
    return (normed * scale[:, None, None].astype(jnp.float32) + bias[:, None, None].astype(jnp.float32)).astype(x.dtype)
''',
}


def timestep_helper(order: str) -> str:
    halves = "jnp.sin(angles), jnp.cos(angles)" if order == "sin_cos" else "jnp.cos(angles), jnp.sin(angles)"
    what = "sines then cosines" if order == "sin_cos" else "cosines then sines"
    return f'''def timestep_embedding(timesteps: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embeddings (..., dim) of diffusion timesteps: {what}."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = timesteps.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([{halves}], axis=-1)
'''


# --- blocks ------------------------------------------------------------------------------


def act(name: str, x: str) -> str:
    return ACTIVATIONS[name].format(x)


def norm_leaf(kind: str, name: str, dim: str) -> GroupNorm | Norm:
    return GroupNorm(name, dim) if kind == "group" else Norm(name, "layer", dim, rank=3)


def norm_call(L: Layout, kind: str, name: str, x: str) -> str:
    """A norm over a map's channels (a LayerNorm of a CHW map moves its channels last)."""
    return f"@{name}({x})" if kind == "group" else L.from_last(f"@{name}({L.to_last(x)})")


def se_block(L: Layout) -> Block:
    body = "\n".join(
        [
            f"s = jnp.mean(x, axis={L.spatial})",
            "s = jax.nn.silu(@reduce(s))",
            "s = jax.nn.sigmoid(@expand(s))",
            f"return x * {L.bcast('s')}",
        ]
    )
    children = (
        Dense("reduce", "dim", "hidden", (None, None), True, 1),
        Dense("expand", "hidden", "dim", (None, None), True, 1),
    )
    return Block(
        "SqueezeExcite",
        "Squeeze-and-excitation: channel weights from the pooled map.",
        ("x",),
        body,
        (),
        children,
        init_args=("dim", "hidden"),
    )


def conv_block(block: ConvBlock, L: Layout, down: bool = False) -> Block:
    """One residual block of ``block``'s kind at width ``dim`` (``down``: from ``dim_in`` at half
    the resolution, with a projected shortcut, or none for an inverted bottleneck)."""
    a = lambda x: act(block.activation, x)  # noqa: E731
    n = lambda name, x: norm_call(L, block.norm, name, x)  # noqa: E731
    d_in = "dim_in" if down else "dim"
    stride = "2" if down else "1"
    children: list = []
    params: list = []
    kind = block.kind
    if kind in ("basic", "bottleneck"):
        inner = "dim" if kind == "basic" else "dim // 4"
        if kind == "basic":
            convs = [Conv("conv1", d_in, "dim", "3", stride, bias=False), Conv("conv2", "dim", "dim", bias=False)]
        else:
            convs = [
                Conv("conv1", d_in, inner, "1", bias=False),
                Conv("conv2", inner, inner, "3", stride, bias=False),
                Conv("conv3", inner, "dim", "1", bias=False),
            ]
        widths = [c.c_in if block.preact else c.c_out for c in convs]
        norms = [norm_leaf(block.norm, f"norm{i + 1}", w) for i, w in enumerate(widths)]
        children += [*convs, *norms]
        lines = []
        h = "x"
        for i in range(len(convs)):
            if block.preact:
                lines.append(f"h = @conv{i + 1}({a(n(f'norm{i + 1}', h))})")
            elif i < len(convs) - 1:
                lines.append(f"h = {a(n(f'norm{i + 1}', f'@conv{i + 1}({h})'))}")
            else:
                lines.append(f"h = {n(f'norm{i + 1}', f'@conv{i + 1}({h})')}")
            h = "h"
    elif kind == "convnext":
        children += [
            Conv("dwconv", "dim", "dim", "7", depthwise=True),
            Norm("norm", "layer", "dim", rank=3),
            Dense("fc1", "dim", "4 * dim", (None, None), True, 3),
            Dense("fc2", "4 * dim", "dim", (None, None), True, 3),
        ]
        lines = [
            f"h = {L.to_last('@dwconv(x)')}",
            f"h = {a('@fc1(@norm(h))')}",
        ]
        if block.scale == "grn":
            params += [Param("grn_gamma", ("4 * dim",), "zeros"), Param("grn_beta", ("4 * dim",), "zeros")]
            lines += [
                "gx = jnp.sqrt(jnp.sum(jnp.square(h.astype(jnp.float32)), axis=(-3, -2), keepdims=True))",
                "nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)",
                "h = h + ($grn_gamma * (h * nx) + $grn_beta).astype(h.dtype)",
            ]
        lines.append(f"h = {L.from_last('@fc2(h)')}" if block.scale != "layer_scale" else "h = @fc2(h)")
    else:  # mbconv, fused_mbconv
        wide = "4 * dim_in" if down else "4 * dim"
        if kind == "mbconv":
            children += [
                Conv("expand", d_in, wide, "1", bias=False),
                Conv("dwconv", wide, wide, "3", stride, depthwise=True, bias=False),
                Conv("project", wide, "dim", "1", bias=False),
                norm_leaf(block.norm, "norm1", wide),
                norm_leaf(block.norm, "norm2", wide),
                norm_leaf(block.norm, "norm3", "dim"),
            ]
            lines = [f"h = {a(n('norm1', '@expand(x)'))}", f"h = {a(n('norm2', '@dwconv(h)'))}"]
        else:
            children += [
                Conv("expand", d_in, wide, "3", stride, bias=False),
                Conv("project", wide, "dim", "1", bias=False),
                norm_leaf(block.norm, "norm1", wide),
                norm_leaf(block.norm, "norm3", "dim"),
            ]
            lines = [f"h = {a(n('norm1', '@expand(x)'))}"]
        if block.se:
            children.append(dataclasses.replace(se_block(L), name="se", bind=(wide, f"{_paren(d_in)} // 4")))
            lines.append("h = @se(h)")
        lines.append(f"h = {n('norm3', '@project(h)')}")
    if block.se and kind in ("basic", "bottleneck"):
        children.append(dataclasses.replace(se_block(L), name="se", bind=("dim", "dim // 4")))
        lines.append("h = @se(h)")
    if block.scale == "layer_scale":
        params.append(Param("gamma", ("dim",), "ones"))
        lines.append(f"h = {L.from_last('h * $gamma')}" if kind == "convnext" else f"h = h * {L.bcast('$gamma')}")
    # the residual
    if down and kind in ("mbconv", "fused_mbconv"):
        lines.append("return h")
    elif down and block.preact:  # ResNet v2: the shortcut is a bare projection
        children.append(Conv("proj", "dim_in", "dim", "1", "2", bias=False))
        lines.append("return @proj(x) + h")
    elif down:
        children += [Conv("proj", "dim_in", "dim", "1", "2", bias=False), norm_leaf(block.norm, "proj_norm", "dim")]
        lines += [f"shortcut = {n('proj_norm', '@proj(x)')}", f"return {a('shortcut + h')}"]
    elif block.preact or kind in ("convnext", "mbconv", "fused_mbconv"):
        lines.append("return x + h")
    else:
        lines.append(f"return {a('x + h')}")
    cls = BLOCK_NAMES[kind] + ("Down" if down else "")
    doc = _block_doc(block, down)
    args = ("dim_in", "dim") if down else ("dim",)
    return Block(cls, doc, ("x",), "\n".join(lines), tuple(params), tuple(children), init_args=args)


def _paren(expr: str) -> str:
    return expr if re.fullmatch(r"[\w.]+", expr) else f"({expr})"


def _block_doc(block: ConvBlock, down: bool) -> str:
    what = {
        "basic": "Basic residual block: two 3x3 convolutions",
        "bottleneck": "Bottleneck residual block: 1x1 reduce, 3x3, 1x1 expand",
        "convnext": "ConvNeXt block: 7x7 depthwise convolution, LayerNorm, an inverted MLP",
        "mbconv": "Inverted residual (MBConv): 1x1 expand, 3x3 depthwise, 1x1 project",
        "fused_mbconv": "Fused inverted residual (Fused-MBConv): 3x3 expand, 1x1 project",
    }[block.kind]
    extras = []
    if block.preact:
        extras.append("norms and activations before the convolutions")
    if block.se:
        extras.append("squeeze-and-excitation")
    if block.scale:
        extras.append({"layer_scale": "a learned residual scale", "grn": "global response normalization"}[block.scale])
    if down:
        extras.append(
            "halving the resolution"
            + (", a projected shortcut" if block.kind not in ("mbconv", "fused_mbconv") else "")
        )
    return what + (" (" + ", ".join(extras) + ")" if extras else "") + "."


def stem_block(arch: VisionArch, L: Layout) -> Block:
    first = arch.stages[0]
    kind, a = first.norm, lambda x: act(first.activation, x)  # noqa: E731
    n = lambda name, x: norm_call(L, kind, name, x)  # noqa: E731
    c_in, ch = "config.in_channels", "config.channels"
    if arch.stem == "patchify":
        children = [Conv("conv", c_in, ch, "4", "4"), norm_leaf(kind, "norm", ch)]
        lines = [f"return {n('norm', '@conv(x)')}"]
        doc = "Patchify stem: a 4x4 convolution of stride 4, then a norm."
    elif arch.stem == "deep":
        half = "config.channels // 2"
        children = [
            Conv("conv1", c_in, half, "3", "2", bias=False),
            Conv("conv2", half, half, bias=False),
            Conv("conv3", half, ch, bias=False),
            norm_leaf(kind, "norm1", half),
            norm_leaf(kind, "norm2", half),
            norm_leaf(kind, "norm3", ch),
        ]
        lines = [f"x = {a(n(f'norm{i}', f'@conv{i}(x)'))}" for i in (1, 2, 3)]
        lines.append(f"return {L.max_pool('x')}")
        doc = "Deep stem: three 3x3 convolutions (the first of stride 2), then 3x3 max pooling."
    else:
        pool = arch.stem == "conv_pool"
        children = [Conv("conv", c_in, ch, "7" if pool else "3", "2" if pool else "1", bias=False)]
        if arch.stages[0].preact:
            lines = ["x = @conv(x)"]
        else:
            children.append(norm_leaf(kind, "norm", ch))
            lines = [f"x = {a(n('norm', '@conv(x)'))}"]
        lines.append(f"return {L.max_pool('x')}" if pool else "return x")
        doc = "Stem: a 7x7 convolution of stride 2, then 3x3 max pooling." if pool else "Stem: a 3x3 convolution."
    return Block("Stem", doc, ("x",), "\n".join(lines), (), tuple(children))


def transition_block(arch: VisionArch, block: ConvBlock, L: Layout) -> Block:
    """Between stages (when blocks do not downsample themselves): half the resolution, more channels."""
    n = lambda name, x: norm_call(L, block.norm, name, x)  # noqa: E731
    if arch.downsample == "norm_conv":
        children = (norm_leaf(block.norm, "norm", "dim_in"), Conv("conv", "dim_in", "dim", "2", "2"))
        body, doc = f"return @conv({n('norm', 'x')})", "Downsampling: a norm, then a 2x2 convolution of stride 2."
    elif arch.downsample == "pool_conv":
        children = (Conv("conv", "dim_in", "dim", "1", bias=False), norm_leaf(block.norm, "norm", "dim"))
        body = f"return {n('norm', '@conv(' + L.avg_pool('x') + ')')}"
        doc = "Downsampling: 2x2 average pooling, then a 1x1 convolution and a norm."
    else:
        children = (Conv("conv", "dim_in", "dim", "3", "2", bias=False), norm_leaf(block.norm, "norm", "dim"))
        body = f"return {act(block.activation, n('norm', '@conv(x)'))}"
        doc = "Downsampling: a 3x3 convolution of stride 2, a norm and an activation."
    return Block("Downsample", doc, ("x",), body, (), children, init_args=("dim_in", "dim"))


def width(i: int) -> str:
    return "config.channels" if i == 0 else f"{2**i} * config.channels"


def stage_children(arch: VisionArch, L: Layout) -> tuple[list, list[str]]:
    """The conv stages' children and the lines that apply them to ``x``."""
    children, lines = [], []
    for i, block in enumerate(arch.stages):
        depth = f"config.depth_{i + 1}"
        if i > 0 and arch.downsample == "block":
            down = conv_block(block, L, down=True)
            children.append(dataclasses.replace(down, name=f"stage_{i + 1}_down", bind=(width(i - 1), width(i))))
            lines.append(f"x = @stage_{i + 1}_down(x)")
            depth = f"config.depth_{i + 1} - 1"
        elif i > 0:
            t = transition_block(arch, block, L)
            children.append(dataclasses.replace(t, name=f"downsample_{i + 1}", bind=(width(i - 1), width(i))))
            lines.append(f"x = @downsample_{i + 1}(x)")
        blk = dataclasses.replace(conv_block(block, L), bind=(width(i),))
        children.append(Stack(f"stage_{i + 1}", blk, depth))
        lines.append(f"x = @stage_{i + 1}*(x)")
    return children, lines


def encoder_children(arch: VisionArch) -> list:
    tarch = arch.transformer
    layer = layer_block(tarch, "global", "EncoderBlock")
    layer = dataclasses.replace(layer, doc=layer.doc.replace("residual layer", "encoder block"))
    return [
        Stack("layers", layer, "config.num_layers", arch.layout == "scan", arch.remat),
        Norm("final_norm", arch.encoder.norm, "config.d_model"),
    ]


def classifier_block(arch: VisionArch, L: Layout, cls: str) -> Block:
    lines = ["x = images.astype(config.dtype)"]
    children: list = []
    params: list = []
    d = "config.d_model"
    if arch.net in ("convnet", "hybrid"):
        children.append(dataclasses.replace(stem_block(arch, L), name="stem"))
        lines.append("x = @stem(x)")
        stages, stage_lines = stage_children(arch, L)
        children += stages
        lines += stage_lines
    if arch.net == "convnet":
        last = arch.stages[-1]
        c = width(len(arch.stages) - 1)
        if arch.head == "norm_pool":
            children.append(norm_leaf(last.norm, "head_norm", c))
            lines.append(f"x = {act(last.activation, norm_call(L, last.norm, 'head_norm', 'x'))}")
        reduce = "jnp.max" if arch.pool == "max" else "jnp.mean"
        lines.append(f"pooled = {reduce}(x.astype(jnp.float32), axis={L.spatial}).astype(x.dtype)")
        if arch.head == "pool_norm":
            children.append(Norm("head_norm", "layer", c, rank=1))
            lines.append("pooled = @head_norm(pooled)")
        children.append(Dense("head", c, "config.num_classes", (None, None), True, 1))
        lines.append("return @head(pooled)")
        return Block(cls, _net_doc(arch), ("images",), "\n".join(lines), (), tuple(children))
    if arch.net == "hybrid":
        children.append(Conv("proj", width(len(arch.stages) - 1), d, "1"))
        lines += ["x = @proj(x)", f"h = {L.tokens('x')}"]
        k = _hybrid_stride(arch)
        tokens = f"(config.image_size // 2**{k}) ** 2" if k else "config.image_size**2"
    elif arch.patch == "conv":
        children.append(Conv("patch_embed", "config.in_channels", d, "config.patch_size", "config.patch_size"))
        lines += ["x = @patch_embed(x)", f"h = {L.tokens('x')}"]
        tokens = "(config.image_size // config.patch_size) ** 2"
    else:
        p = "config.patch_size"
        children.append(Dense("patch_embed", f"{p} * {p} * config.in_channels", d, (None, None), True))
        lines.append("n = config.image_size // config.patch_size")
        if L.last:
            lines += [
                f"patches = x.reshape(-1, n, {p}, n, {p}, config.in_channels).transpose(0, 1, 3, 2, 4, 5)",
                "patches = patches.reshape(x.shape[0], n * n, -1)",
            ]
        else:
            lines += [
                f"patches = x.reshape(config.in_channels, n, {p}, n, {p}).transpose(1, 3, 2, 4, 0)",
                "patches = patches.reshape(n * n, -1)",
            ]
        lines.append("h = @patch_embed(patches)")
        tokens = "(config.image_size // config.patch_size) ** 2"
    if arch.pool == "cls":
        params.append(Param("cls_token", ("1", d), "normal", d))
        lines += [
            "cls = jnp.broadcast_to($cls_token, (*h.shape[:-2], 1, h.shape[-1]))",
            "h = jnp.concatenate([cls, h], axis=-2)",
        ]
        tokens += " + 1"
    params.append(Param("pos_embed", (tokens, d), "normal", d))
    lines += ["h = h + $pos_embed", "h = @layers*(h)", "h = @final_norm(h)"]
    children += encoder_children(arch)
    lines.append("pooled = h[..., 0, :]" if arch.pool == "cls" else "pooled = jnp.mean(h, axis=-2)")
    children.append(Dense("head", d, "config.num_classes", (None, None), True, 1))
    lines.append("return @head(pooled)")
    return Block(cls, _net_doc(arch), ("images",), "\n".join(lines), tuple(params), tuple(children))


def _hybrid_stride(arch: VisionArch) -> int:
    """log2 of the hybrid's total stride: its stem's and one per later stage."""
    return {"conv": 0, "conv_pool": 2, "deep": 2, "patchify": 2}[arch.stem] + len(arch.stages) - 1


def _net_doc(arch: VisionArch) -> str:
    if arch.net == "vit":
        patches = "a strided convolution" if arch.patch == "conv" else "reshaped into patches and projected"
        pool = "the class token" if arch.pool == "cls" else "mean pooling"
        return f"Vision Transformer: patches by {patches}, learned positions, an encoder, {pool}, a classifier head."
    kinds = " then ".join(dict.fromkeys(BLOCK_NAMES[b.kind] for b in arch.stages))
    if arch.net == "hybrid":
        return (
            f"Hybrid ViT: a convolutional stem and {kinds} stages, then a transformer encoder over the map's positions."
        )
    return f"Convolutional classifier: a stem, {len(arch.stages)} stages of {kinds} blocks, global pooling, a classifier head."


# --- the diffusion U-Net --------------------------------------------------------------------


def unet_res_block(unet: UNet, L: Layout, project: bool) -> Block:
    a = lambda x: act(unet.activation, x)  # noqa: E731
    out = "2 * dim" if unet.scale_shift else "dim"
    children: list = [
        GroupNorm("norm1", "dim_in"),
        Conv("conv1", "dim_in", "dim"),
        Dense("time_proj", "config.time_embed_dim", out, (None, None), True, 1),
        GroupNorm("norm2", "dim"),
        Conv("conv2", "dim", "dim"),
    ]
    lines = [f"h = @conv1({a('@norm1(x)')})", f"t = @time_proj({a('temb')})"]
    if unet.scale_shift:
        lines += [
            "scale, shift = jnp.split(t, 2, axis=-1)",
            f"h = @norm2(h) * (1 + {L.bcast('scale')}) + {L.bcast('shift')}",
            f"h = @conv2({a('h')})",
        ]
    else:
        lines += [f"h = h + {L.bcast('t')}", f"h = @conv2({a('@norm2(h)')})"]
    if project:
        children.append(Conv("skip", "dim_in", "dim", "1"))
        lines.append("return @skip(x) + h")
    else:
        lines.append("return x + h")
    how = "scale and shift of its second norm" if unet.scale_shift else "added after its first convolution"
    doc = f"Diffusion residual block: GroupNorm, activation, 3x3 convolution, twice; the timestep embedding {how}."
    cls = "ResBlockProj" if project else "ResBlock"
    if project:
        doc = doc.replace("twice;", "twice, a 1x1 convolution on the shortcut;")
    return Block(cls, doc, ("x", "temb"), "\n".join(lines), (), tuple(children), init_args=("dim_in", "dim"))


def unet_attention(unet: UNet, L: Layout) -> Block:
    children = (GroupNorm("norm", "dim"),) + tuple(
        Dense(p, "dim", "dim", (None, None), True) for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    lines = ["h = @norm(x)", f"h = {L.tokens('h')}"]
    lines += [f"{p} = @{p}_proj(h).reshape(*h.shape[:-1], config.num_heads, -1)" for p in "qkv"]
    if unet.attention == "dpa":
        lines.append(
            "out = jax.nn.dot_product_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)).astype(h.dtype)"
        )
    else:
        lines += [
            'logits = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5',
            "weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)",
            'out = jnp.einsum("...hqk,...khd->...qhd", weights, v)',
        ]
    lines += ["out = @o_proj(out.reshape(h.shape))", f"return x + {L.untokens('out', 'x')}"]
    doc = "Self-attention over the positions of a feature map (GroupNorm first), added to its input."
    return Block("AttentionBlock", doc, ("x",), "\n".join(lines), (), children, init_args=("dim",))


def unet_block(arch: VisionArch, L: Layout, cls: str) -> Block:
    unet = arch.unet
    w = [width_of(m) for m in unet.mults]
    a = lambda x: act(unet.activation, x)  # noqa: E731
    children: list = [
        Dense("time_in", "config.channels", "config.time_embed_dim", (None, None), True, 1),
        Dense("time_out", "config.time_embed_dim", "config.time_embed_dim", (None, None), True, 1),
        Conv("stem", "config.in_channels", w[0]),
    ]
    lines = [
        "x = images.astype(config.dtype)",
        "temb = timestep_embedding(timesteps, config.channels).astype(x.dtype)",
        f"temb = @time_out({a('@time_in(temb)')})",
        "h = @stem(x)",
    ]

    def res(name: str, d_in: str, d: str) -> Block:
        return dataclasses.replace(unet_res_block(unet, L, d_in != d), name=name, bind=(d_in, d))

    prev = w[0]
    last = len(w) - 1
    for i, d in enumerate(w):
        children.append(res(f"down_{i}", prev, d))
        lines += [f"h = @down_{i}(h, temb)", f"skip_{i} = h"]
        if i < last:
            if unet.down == "conv":
                children.append(Conv(f"downsample_{i}", d, d, "3", "2"))
                lines.append(f"h = @downsample_{i}(h)")
            else:
                lines.append(f"h = {L.avg_pool('h')}")
        prev = d
    children.append(res("mid_1", w[-1], w[-1]))
    lines.append("h = @mid_1(h, temb)")
    if unet.attention != "none":
        children.append(dataclasses.replace(unet_attention(unet, L), name="mid_attn", bind=(w[-1],)))
        lines.append("h = @mid_attn(h)")
    children.append(res("mid_2", w[-1], w[-1]))
    lines.append("h = @mid_2(h, temb)")
    for i in reversed(range(len(w))):
        children.append(res(f"up_{i}", f"2 * {_paren(w[i])}", w[i]))
        lines.append(f"h = @up_{i}(jnp.concatenate([h, skip_{i}], axis={L.ch}), temb)")
        if i > 0:
            children.append(Conv(f"upsample_{i}", w[i], w[i - 1]))
            lines.append(f"h = @upsample_{i}({L.upsample('h', unet.up)})")
    children += [GroupNorm("out_norm", w[0]), Conv("out_conv", w[0], "config.in_channels")]
    lines.append(f"return @out_conv({a('@out_norm(h)')})")
    attn = ", self-attention at the lowest resolution" if unet.attention != "none" else ""
    doc = f"Diffusion U-Net: {len(w)} resolutions down and up with skip connections, timestep-conditioned residual blocks{attn}."
    return Block(cls, doc, ("images", "timesteps"), "\n".join(lines), (), tuple(children))


def width_of(mult: int) -> str:
    return "config.channels" if mult == 1 else f"{mult} * config.channels"
