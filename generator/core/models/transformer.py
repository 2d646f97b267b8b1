"""transformer: transformer models as JAX users write them, composed from blocks.

The grammar (``compose.grammar``) draws the task (a decoder-only language model, an encoder
classifier, or one layer), the layer (attention: grouped, repeated-KV or
``jax.nn.dot_product_attention``; half-split, interleaved or no rotary embeddings; QK-norm,
soft-capping, biases; SwiGLU, GeGLU, GELU or squared-ReLU MLPs; RMSNorm or LayerNorm placed
pre, post, sandwich or parallel), how layers repeat (causal, sliding-window, or local/global
periods as in Gemma 2 and 3; a Python loop or ``lax.scan``, optionally rematerialized), the
heads, and a sharding layout (data, FSDP, tensor or FSDP + tensor parallel on a mesh of 8
devices). Each block is written once (``compose.blocks``) and rendered in plain JAX, Flax NNX
or Equinox by one emitter (``compose.emit``).
"""

from __future__ import annotations

import random

from .base import Family
from .compose import ModelSpec, grammar, render

CATEGORY = "transformer"


def sample(rng: random.Random) -> ModelSpec:
    return grammar.sample(rng, CATEGORY)


FAMILY = Family(category=CATEGORY, sample=sample, render=render.render)
