"""moe: mixture-of-experts layers, blocks and language models, composed from blocks.

Every program routes tokens with a float32 router (softmax and ``lax.top_k`` in either order)
over stacked expert weights ``[num_experts, d_model, expert_d_ff]`` (SwiGLU or GELU experts)
and returns the router's auxiliary losses (Switch load balancing, ST-MoE z-loss) with its
output. Dispatches (``compose.moe``): Mixtral-style dense, Switch/GShard capacity slots,
sort-and-scatter into capacity buffers, or dropless ``lax.ragged_dot``; optional DeepSeek/Qwen
shared experts. The MoE layer alone, a transformer layer around it, or a whole language model
(the layers' losses averaged), drawn by the same grammar as ``transformer`` (attention,
norms, placements, layouts, sharding) and written by the same emitter in every style.
"""

from __future__ import annotations

import random

from .base import Family
from .compose import ModelSpec, grammar, render

CATEGORY = "moe"


def sample(rng: random.Random) -> ModelSpec:
    return grammar.sample(rng, CATEGORY)


FAMILY = Family(category=CATEGORY, sample=sample, render=render.render)
