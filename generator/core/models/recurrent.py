"""recurrent: recurrent and state-space sequence models, composed from blocks.

Token mixers (``compose.recurrent``): LSTM and GRU cells scanned over time (a classic stack
of cells, or cells inside pre-norm residual layers), Griffin's real-gated LRU and a
Mamba-style selective state space, computed with ``lax.associative_scan`` or a sequential
``lax.scan`` after a short causal convolution; hybrids with attention as published
(Griffin/RecurrentGemma: two recurrent blocks per local-attention layer; Jamba-like periods).
Language models, sequence classifiers and single layers, drawn by the same grammar and written
by the same emitter as ``transformer`` in plain JAX, Flax NNX and Equinox. Recurrences run in
float32.
"""

from __future__ import annotations

import random

from .base import Family
from .compose import ModelSpec, grammar, render

CATEGORY = "recurrent"


def sample(rng: random.Random) -> ModelSpec:
    return grammar.sample(rng, CATEGORY)


FAMILY = Family(category=CATEGORY, sample=sample, render=render.render)
