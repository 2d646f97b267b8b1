"""train_step: one optimizer step of a composed model, the way JAX users write training loops.

A program is ``train_step(params, opt_state, batch, ...) -> (params, opt_state, metrics)`` (in
Flax NNX, ``(graphdef, state, batch, ...) -> (state, metrics)``). The model is any whole model
the grammars draw (``compose.grammar``, ``compose.vision``): decoder language models and
encoder classifiers, mixture-of-experts language models whose router losses join the loss,
recurrent and state-space models, ResNet/ConvNeXt/EfficientNet/ViT/hybrid image classifiers,
and diffusion U-Nets trained to predict noise. How it trains is drawn independently
(``compose.training``): a loss with metrics as ``has_aux`` output of ``value_and_grad``, an
optax chain (global-norm clipping; AdamW, Lion, Adafactor or SGD with (Nesterov) momentum; a
constant, warmup-cosine, warmup-linear or joined schedule, ``compose.optim``), gradient
accumulation (``lax.scan`` over microbatches or ``optax.MultiSteps``), label smoothing, masked
losses, mixed precision (float32 master weights, a bfloat16 forward pass, a float32 loss) and a
guard that skips a non-finite update. Plain JAX steps of sequence models also train data
parallel or fully sharded (FSDP) on a mesh of 8 devices: parameters, optimizer moments and
batches placed with ``NamedSharding``. Blocks are written once (``compose.blocks``) and rendered
in plain JAX, Flax NNX or Equinox by one emitter (``compose.emit``).
"""

from __future__ import annotations

import random

from .base import Family
from .compose.training import TrainSpec, render_train_step
from .compose.training import sample as sample_train_step

CATEGORY = "train_step"


def sample(rng: random.Random) -> TrainSpec:
    return sample_train_step(rng, CATEGORY)


FAMILY = Family(category=CATEGORY, sample=sample, render=render_train_step)
