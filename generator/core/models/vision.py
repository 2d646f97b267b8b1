"""vision: image models as JAX users write them, composed from blocks.

The grammar (``compose.vision``) draws one of four networks, each from blocks written once
(``compose.conv``) and rendered in plain JAX, Flax NNX or Equinox by one emitter
(``compose.emit``):

- convolutional classifiers: a stem (3x3; 7x7 + max pooling; a deep three-convolution stem; a
  4x4 patchify), 2-4 stages of residual blocks (ResNet basic or bottleneck blocks, pre- or
  post-activation, optional squeeze-excitation and layer scale; ConvNeXt blocks with layer
  scale or V2's global response normalization; MBConv and Fused-MBConv inverted bottlenecks as
  in EfficientNet and EfficientNetV2) joined by strided blocks, strided convolutions, norm +
  2x2 convolutions or pooling + 1x1 convolutions, then global pooling and a classifier head;
- Vision Transformers: patches by a strided convolution or reshape + linear, a class token or
  mean pooling, learned positions, and the transformer library's layers (pre-, post-,
  sandwich- or parallel-norm; einsum or ``jax.nn.dot_product_attention``; GELU or gated MLPs;
  QK-norm; a loop or ``lax.scan`` with remat);
- hybrids: a convolutional stem and stages, a 1x1 projection, then a transformer encoder over
  the feature map's positions (ViT-hybrid);
- diffusion U-Nets: sinusoidal timestep embeddings through an MLP into every residual block
  (added, or as a scale and shift), GroupNorm, SiLU, strided-convolution or average-pool
  downsampling, nearest upsampling (``jnp.repeat`` or ``jax.image.resize``), concatenated skips,
  optional self-attention at the lowest resolution.

Norms are GroupNorm or LayerNorm (as BiT's ResNets, ConvNeXt and diffusion U-Nets use): they
keep no running state, so every program is a pure function of parameters and images (the
former templates' BatchNorm, with its updated statistics, is not drawn). Plain JAX and Flax
take NHWC images; Equinox modules see one CHW image and the jitted function vmaps them.
"""

from __future__ import annotations

import random

from .base import Family
from .compose import vision
from .compose.conv import VisionSpec

CATEGORY = "vision"


def sample(rng: random.Random) -> VisionSpec:
    return vision.sample(rng, CATEGORY)


FAMILY = Family(category=CATEGORY, sample=sample, render=vision.render)
