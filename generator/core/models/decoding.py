"""decoding: autoregressive inference code of decoder-only language models, composed from blocks.

The programs are what serving code jits: a single-token decode step over a KV cache, the
prefill of a prompt into the cache (ragged prompts, a cache it allocates itself), a generation
loop (``lax.fori_loop``, ``lax.while_loop`` or ``lax.scan``; the prompt prefilled or fed token by
token; a key split per step or folded with it) and the samplers they end in (greedy,
temperature, top-k, top-p, min-p, a repetition penalty), or a sampler alone. The model is the
transformer grammar's language model (``compose.grammar``: attention variants, MLPs, norms and
their placement, RoPE or learned positions, local/global layers, unrolled or ``lax.scan``
layers) with cache-aware attention (``compose.decoding``): caches ``[batch, max_seq_len,
num_kv_heads, head_dim]`` per layer (stacked under scan), written with
``lax.dynamic_update_slice`` or ``.at[rows, positions].set``, float32 scores and softmax. Written
by the one emitter in plain JAX, Flax NNX and Equinox; sampling-only programs are plain
functions.
"""

from __future__ import annotations

import random

from .base import Family
from .compose import decoding
from .compose.decoding import ENTRY_NAMES, VARIANTS, DecodingSpec, render

CATEGORY = "decoding"


def sample(rng: random.Random) -> DecodingSpec:
    return decoding.sample(rng)


FAMILY = Family(category=CATEGORY, sample=sample, render=render)

__all__ = ["ENTRY_NAMES", "FAMILY", "VARIANTS", "DecodingSpec", "render", "sample"]
