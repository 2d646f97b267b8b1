"""train_step: one optimizer step of a small model, the way JAX users write their training loops.

A program is ``train_step(params, opt_state, batch, ...) -> (params, opt_state, metrics)``
(or, in Flax NNX, ``(graphdef, state, batch, ...) -> (state, metrics)``): a loss with metrics
as ``has_aux`` output, ``value_and_grad``, an optax chain (global-norm clipping, AdamW, Lion,
Adafactor or SGD with momentum, on a learning-rate schedule), ``apply_updates``. Around that:
gradient accumulation (``lax.scan`` over microbatches or ``optax.MultiSteps``), dropout keyed
by ``fold_in(key, step)``, label smoothing, masked losses, mixed precision (float32 master
weights, bfloat16 forward, float32 loss), and a guard that skips a non-finite update.

Models trained: a decoder LM (RoPE optional, GQA, gated or GELU MLP, RMSNorm or LayerNorm,
layers unrolled or under ``lax.scan``), an MLP classifier and a small ResNet-style CNN.

The guard matters for the validator too: it runs the step on arbitrary optimizer states, and
Adam's or Adafactor's second moments drawn below zero give a NaN update, which real training
code keeps out of its weights the same way (``jnp.where`` on the update's finiteness).
"""

from __future__ import annotations

import random
import re
import textwrap
from dataclasses import dataclass

from .base import (
    CHANNELS,
    D_MODELS,
    IMAGE_SIZES,
    VOCAB_SIZES,
    Family,
    ModelProgram,
    attention_heads,
    config_class,
    ffn_dim,
    pick,
)

CATEGORY = "train_step"
STYLES = ("jax", "flax_nnx", "equinox")
MODELS = ("lm", "mlp", "cnn")
OPTIMIZERS = ("adamw", "lion", "adafactor", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear", "join_cosine")
ACCUMULATIONS = ("none", "scan", "multisteps")
TOKENS_CAP = 1 << 17


@dataclass(frozen=True)
class Spec:
    """Every choice of one train-step program.

    Attributes:
      style: ``"jax"``, ``"flax_nnx"`` or ``"equinox"``.
      model: ``"lm"`` (decoder LM), ``"mlp"`` or ``"cnn"`` (classifiers).
      optimizer: ``OPTIMIZERS``; schedule: ``SCHEDULES``; accumulation: ``ACCUMULATIONS``.
      sizes: the config's int fields, ``(name, value)`` in order.
      floats: the config's float fields, ``(name, value)`` in order.
      config_name: the config class name.
      clip: clip gradients by global norm (``max_grad_norm`` in the config).
      dropout: dropout with a key argument folded with the step.
      smoothing: ``""`` (none), ``"optax"`` (``optax.smooth_labels``) or ``"manual"``.
      mixed_precision: float32 master weights, bfloat16 forward; else all float32.
      skip_nonfinite: keep the old state when the update is not finite.
      config_arg: (plain JAX, Equinox) the config is a static argument of ``train_step``;
        else a module-level ``config``.
      lr_metric: report the scheduled learning rate (needs a step).
      nesterov: SGD with Nesterov momentum.
      rope, gated, rms_norm, scan_layers, remat, fused_attention, tied: decoder LM choices.
      image_input: the MLP classifier flattens images (else takes feature vectors).
      activation: the classifier's activation (``"relu"``, ``"gelu"``, ``"silu"``).
      logits_stats: add logit statistics to the metrics.
    """

    style: str
    model: str
    optimizer: str
    schedule: str
    accumulation: str
    sizes: tuple[tuple[str, int], ...]
    floats: tuple[tuple[str, float], ...]
    config_name: str
    clip: bool
    dropout: bool
    smoothing: str
    mixed_precision: bool
    skip_nonfinite: bool
    config_arg: bool
    lr_metric: bool
    nesterov: bool = False
    rope: bool = False
    gated: bool = False
    rms_norm: bool = False
    scan_layers: bool = False
    remat: bool = False
    fused_attention: bool = False
    tied: bool = False
    image_input: bool = False
    activation: str = "gelu"
    logits_stats: bool = False

    @property
    def size(self) -> dict[str, int]:
        return dict(self.sizes)


# --- sampling -------------------------------------------------------------------------------


def sample(rng: random.Random) -> Spec:
    """Draw one train-step spec."""
    style = pick(rng, STYLES)
    model = pick(rng, MODELS)
    optimizer = pick(rng, OPTIMIZERS)
    accumulation = pick(rng, ACCUMULATIONS if style != "flax_nnx" else ("none", "multisteps"))
    flags: dict[str, object] = {}
    mixed_precision = rng.random() < 0.6
    if model == "lm":
        sizes, flags = _sample_lm(rng, style, mixed_precision)
    elif model == "mlp":
        sizes, flags = _sample_mlp(rng)
    else:
        sizes = _sample_cnn(rng)
        flags = {"activation": pick(rng, ("relu", "gelu", "silu"))}
    batch = sizes.pop("batch_size")
    if accumulation != "none":
        sizes["num_microbatches"] = pick(rng, [m for m in (2, 4, 8) if batch % m == 0 and batch // m >= 2])
    sizes["batch_size"] = batch
    dropout = rng.random() < 0.5
    smoothing = pick(rng, ("", "", "optax", "manual"))
    clip = rng.random() < 0.7
    floats = _sample_floats(rng, optimizer, clip=clip, dropout=dropout, smoothing=bool(smoothing), flags=flags)
    schedule = pick(rng, SCHEDULES)
    config_name = pick(rng, ("TrainConfig", "Config", {"lm": "LMConfig"}.get(model, "ClassifierConfig")))
    return Spec(
        style=style,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        accumulation=accumulation,
        sizes=tuple(sizes.items()),
        floats=floats,
        config_name=config_name,
        clip=clip,
        dropout=dropout,
        smoothing=smoothing,
        mixed_precision=mixed_precision,
        skip_nonfinite=rng.random() < 0.25,
        config_arg=style != "flax_nnx" and rng.random() < 0.5,
        lr_metric=schedule != "constant" and rng.random() < 0.5,
        nesterov=optimizer == "sgd" and rng.random() < 0.5,
        logits_stats=rng.random() < 0.4,
        **flags,
    )


def _sample_lm(rng: random.Random, style: str, mixed_precision: bool) -> tuple[dict[str, int], dict[str, object]]:
    d_model = pick(rng, [d for d in D_MODELS if d <= 2048])
    num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model)
    gated = rng.random() < 0.6
    seq = pick(rng, (128, 256, 512, 1024, 2048, 4096))
    batch = pick(rng, [b for b in (8, 16, 32, 64) if b * seq <= TOKENS_CAP] or [8])
    scan_layers = style == "jax" and rng.random() < 0.5
    sizes = {
        "vocab_size": pick(rng, VOCAB_SIZES),
        "d_model": d_model,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "d_ff": ffn_dim(rng, d_model, gated),
        "num_layers": pick(rng, (2, 4, 6, 8, 12)) if scan_layers else pick(rng, (1, 2)),
        "seq_len": seq,
        "batch_size": batch,
    }
    flags = {
        "rope": rng.random() < 0.7,
        "gated": gated,
        "rms_norm": rng.random() < 0.7,
        "scan_layers": scan_layers,
        "remat": scan_layers and rng.random() < 0.5,
        # jax.nn.dot_product_attention on bfloat16 lowers to a dot_general with an `algorithm`
        # attribute (float32 accumulation) that IREE's frontend refuses; float32 models use it.
        "fused_attention": not mixed_precision and rng.random() < 0.6,
        "tied": rng.random() < 0.4,
    }
    return sizes, flags


def _sample_mlp(rng: random.Random) -> tuple[dict[str, int], dict[str, object]]:
    image_input = rng.random() < 0.5
    sizes: dict[str, int] = {}
    if image_input:
        sizes["image_size"] = pick(rng, (28, 32, 64))
        sizes["in_channels"] = pick(rng, (1, 3))
    else:
        sizes["input_size"] = pick(rng, (128, 256, 512, 784, 1024))
    sizes["hidden_size"] = pick(rng, (256, 512, 1024, 2048))
    sizes["num_layers"] = pick(rng, (1, 2, 3, 4))
    sizes["num_classes"] = pick(rng, (10, 100, 1000))
    sizes["batch_size"] = pick(rng, (16, 32, 64))
    return sizes, {"image_input": image_input, "activation": pick(rng, ("relu", "gelu", "silu"))}


def _sample_cnn(rng: random.Random) -> dict[str, int]:
    image_size = pick(rng, [s for s in IMAGE_SIZES if s >= 32])
    num_blocks = pick(rng, (2, 3, 4))
    channels = pick(rng, [c for c in CHANNELS if c <= 256 and c << (num_blocks - 1) <= 1024])
    return {
        "image_size": image_size,
        "in_channels": 3,
        "channels": channels,
        "num_blocks": num_blocks,
        "num_groups": pick(rng, [g for g in (8, 16, 32) if channels % g == 0]),
        "num_classes": pick(rng, (10, 100, 1000)),
        "batch_size": pick(rng, (8, 16, 32) if image_size >= 160 else (16, 32, 64)),
    }


def _sample_floats(
    rng: random.Random, optimizer: str, *, clip: bool, dropout: bool, smoothing: bool, flags: dict[str, object]
) -> tuple[tuple[str, float], ...]:
    lr = {"adamw": (1e-4, 3e-4, 6e-4, 1e-3), "lion": (3e-5, 1e-4, 3e-4), "adafactor": (1e-3, 1e-2)}
    floats: list[tuple[str, float]] = [("learning_rate", pick(rng, lr.get(optimizer, (0.01, 0.05, 0.1))))]
    if optimizer != "adafactor":
        floats.append(("weight_decay", pick(rng, (0.1, 0.05, 0.01) if optimizer != "sgd" else (1e-4, 5e-4))))
    if optimizer == "sgd":
        floats.append(("momentum", pick(rng, (0.9, 0.95))))
    if clip:
        floats.append(("max_grad_norm", pick(rng, (1.0, 0.5, 5.0))))
    if dropout:
        floats.append(("dropout_rate", pick(rng, (0.1, 0.2, 0.05))))
    if smoothing:
        floats.append(("label_smoothing", pick(rng, (0.1, 0.05, 0.2))))
    if flags.get("rope"):
        floats.append(("rope_theta", pick(rng, (10_000.0, 500_000.0, 1_000_000.0))))
    return tuple(floats)


# --- rendering --------------------------------------------------------------------------------


def render(spec: Spec) -> ModelProgram:
    """The program of ``spec`` (no random draws)."""
    body = {"jax": _render_jax, "flax_nnx": _render_nnx, "equinox": _render_eqx}[spec.style](spec)
    config = config_class(
        spec.config_name,
        [(k, "int", v) for k, v in spec.sizes] + [(k, "float", v) for k, v in spec.floats],
        doc=_config_doc(spec),
    )
    parts = [_imports(spec, body), config, *body]
    source = "\n\n".join(part.strip("\n") + "\n" for part in parts)
    source = source.replace("\n\n@dataclasses", "\n\n\n@dataclasses").replace("\n\ndef ", "\n\n\ndef ")
    source = source.replace("\n\nclass ", "\n\n\nclass ").replace("\n\n\n\n", "\n\n\n")
    return ModelProgram(CATEGORY, spec.style, "train_step", source, _transforms(spec))


def _config_doc(spec: Spec) -> str:
    what = {"lm": "decoder language model", "mlp": "MLP classifier", "cnn": "ResNet-style classifier"}[spec.model]
    return f"Model, data and optimizer hyperparameters of the {what}."


def _transforms(spec: Spec) -> tuple[str, ...]:
    out = ["value_and_grad"]
    if spec.accumulation == "scan":
        out.insert(0, "scan")
    if spec.scan_layers:
        out.append("scan")
        if spec.remat:
            out.append("checkpoint")
    if spec.style == "equinox":
        out.append("vmap")
    return tuple(dict.fromkeys(out))


def _imports(spec: Spec, body: list[str]) -> str:
    text = "\n".join(body)
    lines = ["import dataclasses"]
    if "functools." in text:
        lines.append("import functools")
    if "math." in text:
        lines.append("import math")
    lines += ["", "import jax", "import jax.numpy as jnp"]
    if "lax." in text.replace("jax.lax.", ""):
        lines.append("from jax import lax")
    if "eqx." in text:
        lines.append("import equinox as eqx")
    if "nnx." in text:
        lines.append("from flax import nnx")
    lines.append("import optax")
    return "\n".join(lines) + "\n"


def _block(text: str, indent: int = 0) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * indent) + "\n"


def _cfg(spec: Spec) -> dict[str, str]:
    """Expressions that differ by dtype policy."""
    compute = "jnp.bfloat16" if spec.mixed_precision else "jnp.float32"
    return {"compute": compute}


# --- the optimizer (shared by every style) ----------------------------------------------------


def _optimizer_code(spec: Spec) -> str:
    """``make_schedule`` (unless constant) and ``make_optimizer``."""
    c = "config"
    parts = []
    if spec.schedule != "constant":
        sched = {
            "warmup_cosine": f"""
                return optax.warmup_cosine_decay_schedule(
                    init_value=0.0,
                    peak_value={c}.learning_rate,
                    warmup_steps=2_000,
                    decay_steps=100_000,
                    end_value={c}.learning_rate * 0.1,
                )""",
            "warmup_linear": f"""
                warmup = optax.linear_schedule(0.0, {c}.learning_rate, transition_steps=1_000)
                decay = optax.linear_schedule({c}.learning_rate, 0.0, transition_steps=49_000)
                return optax.join_schedules([warmup, decay], boundaries=[1_000])""",
            "join_cosine": f"""
                warmup = optax.linear_schedule(0.0, {c}.learning_rate, transition_steps=500)
                decay = optax.cosine_decay_schedule({c}.learning_rate, decay_steps=20_000, alpha=0.05)
                return optax.join_schedules([warmup, decay], boundaries=[500])""",
        }[spec.schedule]
        parts.append(
            f"def make_schedule(config: {spec.config_name}) -> optax.Schedule:\n"
            '    """Learning rate by step: linear warmup, then decay."""\n' + _block(sched, 4)
        )
    lr = "make_schedule(config)" if spec.schedule != "constant" else "config.learning_rate"
    decay_mask = spec.optimizer in ("adamw", "lion", "sgd")
    lines = [f"def make_optimizer(config: {spec.config_name}) -> optax.GradientTransformation:"]
    lines.append(f'    """{_optimizer_doc(spec)}"""')
    if decay_mask:
        lines.append("")
        lines.append("    def decay_mask(params):")
        lines.append("        # No weight decay on biases and norm scales.")
        lines.append("        return jax.tree.map(lambda p: p.ndim > 1, params)")
        lines.append("")
    transforms = []
    if spec.clip:
        transforms.append("optax.clip_by_global_norm(config.max_grad_norm)")
    if spec.optimizer == "adamw":
        b2 = 0.95 if spec.model == "lm" else 0.999
        transforms.append(
            f"optax.adamw({lr}, b1=0.9, b2={b2}, eps=1e-8, weight_decay=config.weight_decay, mask=decay_mask)"
        )
    elif spec.optimizer == "lion":
        transforms.append(f"optax.lion({lr}, b1=0.9, b2=0.99, weight_decay=config.weight_decay, mask=decay_mask)")
    elif spec.optimizer == "adafactor":
        transforms.append(f"optax.adafactor({lr}, decay_rate=0.8, clipping_threshold=1.0, momentum=None)")
    else:
        transforms.append("optax.add_decayed_weights(config.weight_decay, mask=decay_mask)")
        nesterov = ", nesterov=True" if spec.nesterov else ""
        transforms.append(f"optax.sgd({lr}, momentum=config.momentum{nesterov})")
    if len(transforms) == 1:
        tx = transforms[0]
    else:
        tx = "optax.chain(\n" + "".join(f"        {t},\n" for t in transforms) + "    )"
    if spec.accumulation == "multisteps":
        lines.append(f"    tx = {tx}")
        lines.append("    # Accumulate gradients over num_microbatches calls, then step.")
        lines.append("    return optax.MultiSteps(tx, every_k_schedule=config.num_microbatches)")
    else:
        lines.append(f"    return {tx}")
    parts.append("\n".join(lines) + "\n")
    return "\n\n".join(parts)


def _optimizer_doc(spec: Spec) -> str:
    name = {
        "adamw": "AdamW",
        "lion": "Lion",
        "adafactor": "Adafactor",
        "sgd": "SGD with Nesterov momentum" if spec.nesterov else "SGD with momentum",
    }[spec.optimizer]
    return f"{name}{' with global-norm gradient clipping' if spec.clip else ''}."


# --- loss lines (shared) ---------------------------------------------------------------------


def _loss_lines(spec: Spec, logits: str, labels: str, mask: str | None) -> list[str]:
    """Lines computing ``loss`` and ``metrics`` from float32 ``logits`` (inside ``loss_fn``)."""
    num = "config.vocab_size" if spec.model == "lm" else "config.num_classes"
    out = []
    if spec.smoothing == "optax":
        out.append(f"targets = optax.smooth_labels(jax.nn.one_hot({labels}, {num}), config.label_smoothing)")
        out.append(f"losses = optax.softmax_cross_entropy({logits}, targets)")
    elif spec.smoothing == "manual":
        out.append(f"log_probs = jax.nn.log_softmax({logits}, axis=-1)")
        out.append(f"nll = -jnp.take_along_axis(log_probs, {labels}[..., None], axis=-1)[..., 0]")
        out.append("smooth_loss = -jnp.mean(log_probs, axis=-1)")
        out.append("losses = (1.0 - config.label_smoothing) * nll + config.label_smoothing * smooth_loss")
    else:
        out.append(f"losses = optax.softmax_cross_entropy_with_integer_labels({logits}, {labels})")
    correct = f"jnp.argmax({logits}, axis=-1) == {labels}"
    if mask:
        out.append(f"mask = {mask}.astype(jnp.float32)")
        out.append("num_tokens = jnp.maximum(jnp.sum(mask), 1.0)")
        out.append("loss = jnp.sum(losses * mask) / num_tokens")
        out.append(f"accuracy = jnp.sum(({correct}) * mask) / num_tokens")
    else:
        out.append("loss = jnp.mean(losses)")
        out.append(f"accuracy = jnp.mean({correct})")
    metrics = '{"loss": loss, "accuracy": accuracy'
    if spec.logits_stats:
        metrics += f', "logits_mean": jnp.mean({logits}), "logits_max": jnp.max(jnp.abs({logits}))'
    if mask:
        metrics += ', "num_tokens": num_tokens'
    out.append(f"metrics = {metrics}}}")
    out.append("return loss, metrics")
    return out


def _batch_specs(spec: Spec, lead: str = "config.batch_size") -> list[tuple[str, str, str]]:
    """``(key, shape expression, dtype)`` of the batch dict."""
    if spec.model == "lm":
        shape = f"({lead}, config.seq_len)"
        return [("inputs", shape, "jnp.int32"), ("targets", shape, "jnp.int32"), ("loss_mask", shape, "jnp.bool_")]
    if spec.model == "cnn" or spec.image_input:
        images = f"({lead}, config.image_size, config.image_size, config.in_channels)"
        return [("images", images, "jnp.float32"), ("labels", f"({lead},)", "jnp.int32")]
    return [("features", f"({lead}, config.input_size)", "jnp.float32"), ("labels", f"({lead},)", "jnp.int32")]


def _inputs_key(spec: Spec) -> str:
    return _batch_specs(spec)[0][0]


def _example_batch(spec: Spec) -> list[str]:
    lines = ["    batch = {"]
    for key, shape, dtype in _batch_specs(spec):
        lines.append(f'        "{key}": jax.ShapeDtypeStruct({shape}, {dtype}),')
    lines.append("    }")
    return lines


def _mask_expr(spec: Spec, batch: str) -> str | None:
    return f'{batch}["loss_mask"]' if spec.model == "lm" else None


def _labels_key(spec: Spec) -> str:
    return "targets" if spec.model == "lm" else "labels"


def _step_args(spec: Spec) -> tuple[bool, bool]:
    """(takes a dropout key, takes an int32 step) for the plain JAX and Equinox steps."""
    return spec.dropout, spec.dropout or spec.lr_metric


# --- plain JAX -------------------------------------------------------------------------------

_ACT = {"relu": "jax.nn.relu", "gelu": "jax.nn.gelu", "silu": "jax.nn.silu"}


def _jax_common(spec: Spec) -> str:
    out = []
    if spec.dropout:
        out.append(
            _block("""
            def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
                keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
                return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)
            """)
        )
    return "\n\n".join(out)


def _jax_norm_code(spec: Spec) -> str:
    if spec.rms_norm:
        return _block("""
            def rms_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-6) -> jax.Array:
                x32 = x.astype(jnp.float32)
                normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
                return (normed * scale).astype(x.dtype)
            """)
    return _block("""
        def layer_norm(x: jax.Array, params: dict, eps: float = 1e-5) -> jax.Array:
            x32 = x.astype(jnp.float32)
            mean = jnp.mean(x32, axis=-1, keepdims=True)
            var = jnp.var(x32, axis=-1, keepdims=True)
            normed = (x32 - mean) * lax.rsqrt(var + eps)
            return (normed * params["scale"] + params["bias"]).astype(x.dtype)
        """)


def _rope_code() -> str:
    return _block('''
        def apply_rope(x: jax.Array, theta: float) -> jax.Array:
            """Rotary position embeddings on (batch, seq, heads, head_dim)."""
            seq, head_dim = x.shape[1], x.shape[-1]
            inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
            angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]
            sin, cos = jnp.sin(angles)[:, None, :], jnp.cos(angles)[:, None, :]
            x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
            rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
            return rotated.astype(x.dtype)
        ''')


def _attention_core(spec: Spec, indent: int, cfg: str = "config") -> str:
    """From ``q`` (b, s, h, d), ``k``, ``v`` (b, s, kv, d) to ``out`` (b, s, h, d)."""
    lines = []
    if spec.rope:
        lines += [f"q = apply_rope(q, {cfg}.rope_theta)", f"k = apply_rope(k, {cfg}.rope_theta)"]
    if spec.fused_attention:
        lines.append("out = jax.nn.dot_product_attention(q, k, v, is_causal=True)")
    else:
        lines += [
            f"groups = {cfg}.num_heads // {cfg}.num_kv_heads",
            "k = jnp.repeat(k, groups, axis=2)",
            "v = jnp.repeat(v, groups, axis=2)",
            'scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)',
            f"scores = scores / math.sqrt({cfg}.head_dim)",
            "causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), dtype=jnp.bool_))",
            "scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)",
            "attn_weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)",
            'out = jnp.einsum("bhqk,bkhd->bqhd", attn_weights, v)',
        ]
    return "".join(" " * indent + line + "\n" for line in lines)


def _render_jax(spec: Spec) -> list[str]:
    model = {"lm": _jax_lm, "mlp": _jax_mlp, "cnn": _jax_cnn}[spec.model](spec)
    parts = [p for p in (_jax_common(spec), *model) if p]
    parts.append(_optimizer_code(spec))
    parts += _jax_step(spec)
    return parts


def _norm_init(spec: Spec, dim: str) -> str:
    if spec.rms_norm:
        return f"jnp.ones(({dim},), jnp.float32)"
    return f'{{"scale": jnp.ones(({dim},), jnp.float32), "bias": jnp.zeros(({dim},), jnp.float32)}}'


def _jax_lm(spec: Spec) -> list[str]:
    norm = "rms_norm" if spec.rms_norm else "layer_norm"
    mlp_params = (
        '"w_gate": dense(keys[4], config.d_model, config.d_ff),\n'
        '            "w_up": dense(keys[5], config.d_model, config.d_ff),\n'
        '            "w_down": dense(keys[6], config.d_ff, config.d_model),'
        if spec.gated
        else '"w_in": dense(keys[4], config.d_model, config.d_ff),\n'
        '            "b_in": jnp.zeros((config.d_ff,), jnp.float32),\n'
        '            "w_out": dense(keys[5], config.d_ff, config.d_model),\n'
        '            "b_out": jnp.zeros((config.d_model,), jnp.float32),'
    )
    n_keys = 7 if spec.gated else 6
    top_keys = "embed_key, layers_key, head_key" if not spec.tied else "embed_key, layers_key"
    n_top = 2 if spec.tied else 3
    if spec.scan_layers:
        layers = "jax.vmap(init_layer)(jax.random.split(layers_key, config.num_layers))"
    else:
        layers = "[init_layer(k) for k in jax.random.split(layers_key, config.num_layers)]"
    head = "" if spec.tied else '\n        "lm_head": dense(head_key, config.d_model, config.vocab_size),'
    init = f'''
def init_params(config: {spec.config_name}, key: jax.Array) -> dict:
    """Decoder parameters as float32 master weights{", layers stacked for lax.scan" if spec.scan_layers else ""}."""
    {top_keys} = jax.random.split(key, {n_top})

    def dense(key, fan_in, fan_out):
        return jax.random.normal(key, (fan_in, fan_out), jnp.float32) / math.sqrt(fan_in)

    def init_layer(key):
        keys = jax.random.split(key, {n_keys})
        q_dim = config.num_heads * config.head_dim
        kv_dim = config.num_kv_heads * config.head_dim
        return {{
            "attn_norm": {_norm_init(spec, "config.d_model")},
            "wq": dense(keys[0], config.d_model, q_dim),
            "wk": dense(keys[1], config.d_model, kv_dim),
            "wv": dense(keys[2], config.d_model, kv_dim),
            "wo": dense(keys[3], q_dim, config.d_model),
            "mlp_norm": {_norm_init(spec, "config.d_model")},
            {mlp_params}
        }}

    return {{
        "embed": jax.random.normal(embed_key, (config.vocab_size, config.d_model), jnp.float32) * 0.02,
        "layers": {layers},
        "final_norm": {_norm_init(spec, "config.d_model")},{head}
    }}
'''
    if spec.gated:
        mlp = 'jax.nn.silu(x @ layer["w_gate"]) * (x @ layer["w_up"])\n    return hidden @ layer["w_down"]'
        mlp = "hidden = " + mlp
    else:
        mlp = 'hidden = jax.nn.gelu(x @ layer["w_in"] + layer["b_in"])\n    return hidden @ layer["w_out"] + layer["b_out"]'
    key_param = ", key: jax.Array" if spec.dropout else ""
    block = f'''
def attention(layer: dict, x: jax.Array, config: {spec.config_name}) -> jax.Array:
    batch, seq, _ = x.shape
    q = (x @ layer["wq"]).reshape(batch, seq, config.num_heads, config.head_dim)
    k = (x @ layer["wk"]).reshape(batch, seq, config.num_kv_heads, config.head_dim)
    v = (x @ layer["wv"]).reshape(batch, seq, config.num_kv_heads, config.head_dim)
{_attention_core(spec, 4)}    return out.reshape(batch, seq, -1) @ layer["wo"]


def mlp(layer: dict, x: jax.Array) -> jax.Array:
    {mlp}


def decoder_block(layer: dict, hidden: jax.Array, config: {spec.config_name}{key_param}) -> jax.Array:
    """Pre-norm residual block: attention, then MLP."""
'''
    if spec.dropout:
        block += f"""    attn_key, mlp_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    attn_out = attention(layer, {norm}(hidden, layer["attn_norm"]), config)
    hidden = hidden + dropout(attn_out, config.dropout_rate, attn_key)
    mlp_out = mlp(layer, {norm}(hidden, layer["mlp_norm"]))
    return hidden + dropout(mlp_out, config.dropout_rate, mlp_key)
"""
    else:
        block += f"""    hidden = hidden + attention(layer, {norm}(hidden, layer["attn_norm"]), config)
    return hidden + mlp(layer, {norm}(hidden, layer["mlp_norm"]))
"""
    fwd = [f"def forward(params: dict, tokens: jax.Array, config: {spec.config_name}{key_param}) -> jax.Array:"]
    fwd.append('    """Next-token logits, (batch, seq, vocab)."""')
    fwd.append('    hidden = jnp.take(params["embed"], tokens, axis=0)')
    if spec.scan_layers:
        if spec.dropout:
            fwd.append("")
            fwd.append("    def body(hidden, xs):")
            fwd.append("        layer, index = xs")
            fwd.append("        return decoder_block(layer, hidden, config, jax.random.fold_in(key, index)), None")
            fwd.append("")
            xs = '(params["layers"], jnp.arange(config.num_layers))'
        else:
            fwd.append("")
            fwd.append("    def body(hidden, layer):")
            fwd.append("        return decoder_block(layer, hidden, config), None")
            fwd.append("")
            xs = 'params["layers"]'
        if spec.remat:
            fwd.append("    # Recompute activations in the backward pass instead of storing them per layer.")
            fwd.append("    body = jax.checkpoint(body)")
        fwd.append(f"    hidden, _ = lax.scan(body, hidden, {xs})")
    elif spec.dropout:
        fwd.append('    for i, layer in enumerate(params["layers"]):')
        fwd.append("        hidden = decoder_block(layer, hidden, config, jax.random.fold_in(key, i))")
    else:
        fwd.append('    for layer in params["layers"]:')
        fwd.append("        hidden = decoder_block(layer, hidden, config)")
    fwd.append(f'    hidden = {norm}(hidden, params["final_norm"])')
    if spec.tied:
        fwd.append('    return hidden @ params["embed"].T')
    else:
        fwd.append('    return hidden @ params["lm_head"]')
    parts = [init, _jax_norm_code(spec)]
    if spec.rope:
        parts.append(_rope_code())
    parts += [block, "\n".join(fwd) + "\n"]
    return parts


def _jax_mlp(spec: Spec) -> list[str]:
    in_dim = "config.image_size * config.image_size * config.in_channels" if spec.image_input else "config.input_size"
    key_param = ", key: jax.Array" if spec.dropout else ""
    init = f'''
def init_params(config: {spec.config_name}, key: jax.Array) -> dict:
    """He-initialized dense layers and a classifier head."""
    keys = jax.random.split(key, config.num_layers + 1)
    dims = [{in_dim}] + [config.hidden_size] * config.num_layers

    def dense(key, fan_in, fan_out):
        w = jax.random.normal(key, (fan_in, fan_out), jnp.float32) * math.sqrt(2.0 / fan_in)
        return {{"w": w, "b": jnp.zeros((fan_out,), jnp.float32)}}

    layers = [dense(k, d_in, d_out) for k, d_in, d_out in zip(keys[:-1], dims[:-1], dims[1:])]
    return {{"layers": layers, "head": dense(keys[-1], config.hidden_size, config.num_classes)}}
'''
    fwd = [f"def forward(params: dict, inputs: jax.Array, config: {spec.config_name}{key_param}) -> jax.Array:"]
    fwd.append('    """Class logits, (batch, num_classes)."""')
    fwd.append("    hidden = inputs.reshape(inputs.shape[0], -1)" if spec.image_input else "    hidden = inputs")
    act = _ACT[spec.activation]
    if spec.dropout:
        fwd.append('    for i, layer in enumerate(params["layers"]):')
        fwd.append(f'        hidden = {act}(hidden @ layer["w"] + layer["b"])')
        fwd.append("        hidden = dropout(hidden, config.dropout_rate, jax.random.fold_in(key, i))")
    else:
        fwd.append('    for layer in params["layers"]:')
        fwd.append(f'        hidden = {act}(hidden @ layer["w"] + layer["b"])')
    fwd.append('    return hidden @ params["head"]["w"] + params["head"]["b"]')
    return [init, "\n".join(fwd) + "\n"]


def _jax_cnn(spec: Spec) -> list[str]:
    act = _ACT[spec.activation]
    key_param = ", key: jax.Array" if spec.dropout else ""
    init = f'''
def init_params(config: {spec.config_name}, key: jax.Array) -> dict:
    """A conv stem, residual blocks (channels doubling, stride 2 after the first) and a head."""
    keys = jax.random.split(key, config.num_blocks + 2)

    def conv_init(key, size, c_in, c_out):
        fan_in = size * size * c_in
        return jax.random.normal(key, (size, size, c_in, c_out), jnp.float32) * math.sqrt(2.0 / fan_in)

    def norm_init(c):
        return {{"scale": jnp.ones((c,), jnp.float32), "bias": jnp.zeros((c,), jnp.float32)}}

    blocks = []
    c_in = config.channels
    for i in range(config.num_blocks):
        c_out = config.channels * 2**i
        k1, k2, k3 = jax.random.split(keys[i + 1], 3)
        block = {{
            "conv1": conv_init(k1, 3, c_in, c_out),
            "norm1": norm_init(c_out),
            "conv2": conv_init(k2, 3, c_out, c_out),
            "norm2": norm_init(c_out),
        }}
        if c_in != c_out:
            block["proj"] = conv_init(k3, 1, c_in, c_out)
        blocks.append(block)
        c_in = c_out
    head = jax.random.normal(keys[-1], (c_in, config.num_classes), jnp.float32) / math.sqrt(c_in)
    return {{
        "stem": conv_init(keys[0], 3, config.in_channels, config.channels),
        "stem_norm": norm_init(config.channels),
        "blocks": blocks,
        "head": {{"w": head, "b": jnp.zeros((config.num_classes,), jnp.float32)}},
    }}


def conv(x: jax.Array, w: jax.Array, stride: int = 1) -> jax.Array:
    return lax.conv_general_dilated(
        x, w.astype(x.dtype), (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def group_norm(x: jax.Array, params: dict, num_groups: int, eps: float = 1e-5) -> jax.Array:
    batch, height, width, channels = x.shape
    x32 = x.astype(jnp.float32).reshape(batch, height, width, num_groups, channels // num_groups)
    mean = jnp.mean(x32, axis=(1, 2, 4), keepdims=True)
    var = jnp.var(x32, axis=(1, 2, 4), keepdims=True)
    normed = ((x32 - mean) * lax.rsqrt(var + eps)).reshape(x.shape)
    return (normed * params["scale"] + params["bias"]).astype(x.dtype)


def forward(params: dict, images: jax.Array, config: {spec.config_name}{key_param}) -> jax.Array:
    """Class logits, (batch, num_classes), from NHWC images."""
    hidden = {act}(group_norm(conv(images, params["stem"]), params["stem_norm"], config.num_groups))
    for i, block in enumerate(params["blocks"]):
        stride = 1 if i == 0 else 2
        residual = conv(hidden, block["proj"], stride) if "proj" in block else hidden
        hidden = {act}(group_norm(conv(hidden, block["conv1"], stride), block["norm1"], config.num_groups))
        hidden = group_norm(conv(hidden, block["conv2"]), block["norm2"], config.num_groups)
        hidden = {act}(hidden + residual)
    pooled = jnp.mean(hidden, axis=(1, 2))
'''
    if spec.dropout:
        init += "    pooled = dropout(pooled, config.dropout_rate, key)\n"
    init += '    return pooled @ params["head"]["w"] + params["head"]["b"]\n'
    return [init]


def _jax_step(spec: Spec) -> list[str]:
    takes_key, takes_step = _step_args(spec)
    cfg_param = f", config: {spec.config_name}" if spec.config_arg else ""
    inputs, labels = _inputs_key(spec), _labels_key(spec)
    key_arg = ", key" if spec.dropout else ""
    loss = [f"def loss_fn(params: dict, batch: dict{', key: jax.Array' if spec.dropout else ''}):"]
    if spec.mixed_precision:
        loss.append("    # float32 master weights, bfloat16 forward pass, float32 loss.")
        loss.append("    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)")
    x = f'batch["{inputs}"]'
    if spec.mixed_precision and spec.model != "lm":
        x += ".astype(jnp.bfloat16)"
    loss.append(f"    logits = forward(params, {x}, config{key_arg}).astype(jnp.float32)")
    loss += ["    " + line for line in _loss_lines(spec, "logits", f'batch["{labels}"]', _mask_expr(spec, "batch"))]
    loss_text = "\n".join(loss)

    params_sig = ["params: dict", "opt_state: optax.OptState", "batch: dict"]
    if takes_key:
        params_sig.append("key: jax.Array")
    if takes_step:
        params_sig.append("step: jax.Array")
    sig = ", ".join(params_sig) + cfg_param
    lines = [f"def train_step({sig}):"]
    lines.append(f'    """{_step_doc(spec)}"""')
    if spec.config_arg:
        lines.append("    optimizer = make_optimizer(config)")
    if spec.dropout:
        lines.append("    key = jax.random.fold_in(key, step)")
    lines.append("")
    lines += ["    " + line for line in loss_text.splitlines()]
    lines.append("")
    lines.append("    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)")
    lines += _accumulate_lines(spec, "grad_fn(params, {mb}{key})", "params")
    lines.append("    updates, new_opt_state = optimizer.update(grads, opt_state, params)")
    lines.append("    new_params = optax.apply_updates(params, updates)")
    lines += _guard_and_metrics(spec, "params", "opt_state")
    lines.append("    return params, opt_state, metrics")
    step = "\n".join(lines) + "\n"

    ex = ["def example_args():"]
    if spec.config_arg:
        ex.append(f"    config = {spec.config_name}()")
        ex.append("    optimizer = make_optimizer(config)")
    ex.append("    params = jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))")
    ex.append("    opt_state = jax.eval_shape(optimizer.init, params)")
    ex += _example_batch(spec)
    args = ["params", "opt_state", "batch"]
    if takes_key:
        args.append("jax.eval_shape(jax.random.key, 0)")
    if takes_step:
        args.append("jax.ShapeDtypeStruct((), jnp.int32)")
    if spec.config_arg:
        args.append("config")
    ex.append(f"    return ({', '.join(args)})")
    out = []
    if not spec.config_arg:
        out.append(f"config = {spec.config_name}()\noptimizer = make_optimizer(config)\n")
    out += [step, "\n".join(ex) + "\n"]
    return out


def _step_doc(spec: Spec) -> str:
    what = {
        "none": "One optimizer step on a batch",
        "scan": "One optimizer step, gradients averaged over microbatches",
        "multisteps": "One microbatch of gradient accumulation (the optimizer steps every num_microbatches calls)",
    }[spec.accumulation]
    return f"{what}; returns the new state and metrics."


def _accumulate_lines(spec: Spec, call: str, params: str) -> list[str]:
    """Lines giving ``metrics`` and ``grads`` (``call`` formats ``{mb}`` and ``{key}``)."""
    key = ", key" if spec.dropout else ""
    if spec.accumulation != "scan":
        return [f"    (_, metrics), grads = {call.format(mb='batch', key=key)}"]
    out = [
        "    microbatches = jax.tree.map(",
        "        lambda x: x.reshape(config.num_microbatches, -1, *x.shape[1:]), batch",
        "    )",
        "",
    ]
    mb_key = ", microbatch_key" if spec.dropout else ""
    if spec.dropout:
        out.append("    def accumulate(grad_sum, xs):")
        out.append("        microbatch, index = xs")
        out.append("        microbatch_key = jax.random.fold_in(key, index)")
    else:
        out.append("    def accumulate(grad_sum, microbatch):")
    out.append(f"        (_, metrics), grads = {call.format(mb='microbatch', key=mb_key)}")
    out.append("        return jax.tree.map(jnp.add, grad_sum, grads), metrics")
    out.append("")
    xs = "(microbatches, jnp.arange(config.num_microbatches))" if spec.dropout else "microbatches"
    out.append(f"    zeros = jax.tree.map(jnp.zeros_like, {params})")
    out.append(f"    grad_sum, metrics = lax.scan(accumulate, zeros, {xs})")
    out.append("    grads = jax.tree.map(lambda g: g / config.num_microbatches, grad_sum)")
    out.append("    metrics = jax.tree.map(jnp.mean, metrics)")
    return out


def _guard_and_metrics(spec: Spec, params: str, opt_state: str) -> list[str]:
    out = []
    if spec.skip_nonfinite:
        out.append("    # Skip a non-finite update (a loss spike), keeping the previous weights and state.")
        out.append("    update_ok = jnp.isfinite(optax.tree.norm(updates))")
        out.append(f"    {params}, {opt_state} = jax.tree.map(")
        out.append("        functools.partial(jnp.where, update_ok),")
        out.append("        (new_params, new_opt_state),")
        out.append(f"        ({params}, {opt_state}),")
        out.append("    )")
    else:
        out.append(f"    {params}, {opt_state} = new_params, new_opt_state")
    out += _metric_lines(spec, "step")
    return out


def _metric_lines(spec: Spec, step: str) -> list[str]:
    out = ['    metrics["grad_norm"] = optax.tree.norm(grads)']
    if spec.skip_nonfinite and spec.style != "flax_nnx":
        out.append('    metrics["skipped"] = ~update_ok')
    if spec.lr_metric:
        out.append(f'    metrics["learning_rate"] = make_schedule(config)({step})')
    return out


# --- Flax NNX ----------------------------------------------------------------------------------


def _render_nnx(spec: Spec) -> list[str]:
    model = {"lm": _nnx_lm, "mlp": _nnx_mlp, "cnn": _nnx_cnn}[spec.model](spec)
    return [*model, _optimizer_code(spec), *_nnx_step(spec)]


def _nnx_linear(spec: Spec) -> str:
    dtype = "jnp.bfloat16" if spec.mixed_precision else "jnp.float32"
    return f"functools.partial(nnx.Linear, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs)"


def _nnx_lm(spec: Spec) -> list[str]:
    dtype = _cfg(spec)["compute"]
    norm = (
        f"nnx.RMSNorm(config.d_model, epsilon=1e-6, dtype={dtype}, rngs=rngs)"
        if spec.rms_norm
        else f"nnx.LayerNorm(config.d_model, epsilon=1e-5, dtype={dtype}, rngs=rngs)"
    )
    parts = []
    if spec.rope:
        parts.append(_rope_code())
    attn = f'''
class Attention(nnx.Module):
    """Causal self-attention with grouped key/value heads{" and rotary embeddings" if spec.rope else ""}."""

    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        self.config = config
        linear = functools.partial(nnx.Linear, use_bias=False, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs)
        self.q_proj = linear(config.d_model, config.num_heads * config.head_dim)
        self.k_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)
        self.v_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)
        self.o_proj = linear(config.num_heads * config.head_dim, config.d_model)

    def __call__(self, x: jax.Array) -> jax.Array:
        config = self.config
        batch, seq, _ = x.shape
        q = self.q_proj(x).reshape(batch, seq, config.num_heads, config.head_dim)
        k = self.k_proj(x).reshape(batch, seq, config.num_kv_heads, config.head_dim)
        v = self.v_proj(x).reshape(batch, seq, config.num_kv_heads, config.head_dim)
{_attention_core(spec, 8)}        return self.o_proj(out.reshape(batch, seq, -1))
'''
    if spec.gated:
        mlp_init = (
            "        self.gate_proj = linear(config.d_model, config.d_ff, use_bias=False)\n"
            "        self.up_proj = linear(config.d_model, config.d_ff, use_bias=False)\n"
            "        self.down_proj = linear(config.d_ff, config.d_model, use_bias=False)\n"
        )
        mlp_call = "        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))\n"
    else:
        mlp_init = (
            "        self.fc_in = linear(config.d_model, config.d_ff)\n"
            "        self.fc_out = linear(config.d_ff, config.d_model)\n"
        )
        mlp_call = "        return self.fc_out(jax.nn.gelu(self.fc_in(x)))\n"
    mlp = f"""
class MLP(nnx.Module):
    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        linear = {_nnx_linear(spec)}
{mlp_init}
    def __call__(self, x: jax.Array) -> jax.Array:
{mlp_call}"""
    drop_init = "        self.dropout = nnx.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    if spec.dropout:
        block_call = """    def __call__(self, hidden: jax.Array, key: jax.Array) -> jax.Array:
        attn_key, mlp_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        hidden = hidden + self.dropout(self.attn(self.attn_norm(hidden)), rngs=attn_key)
        return hidden + self.dropout(self.mlp(self.mlp_norm(hidden)), rngs=mlp_key)
"""
    else:
        block_call = """    def __call__(self, hidden: jax.Array) -> jax.Array:
        hidden = hidden + self.attn(self.attn_norm(hidden))
        return hidden + self.mlp(self.mlp_norm(hidden))
"""
    block = f'''
class DecoderBlock(nnx.Module):
    """Pre-norm residual block: attention, then MLP."""

    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        self.attn_norm = {norm}
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = {norm}
        self.mlp = MLP(config, rngs=rngs)
{drop_init}
{block_call}'''
    head_init = (
        ""
        if spec.tied
        else "        self.lm_head = nnx.Linear(\n"
        f"            config.d_model, config.vocab_size, use_bias=False, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs\n"
        "        )\n"
    )
    key_param = ", key: jax.Array" if spec.dropout else ""
    if spec.dropout:
        loop = (
            "        for i, block in enumerate(self.blocks):\n"
            "            hidden = block(hidden, jax.random.fold_in(key, i))\n"
        )
    else:
        loop = "        for block in self.blocks:\n            hidden = block(hidden)\n"
    out = "self.embed.attend(self.final_norm(hidden))" if spec.tied else "self.lm_head(self.final_norm(hidden))"
    lm = f'''
class DecoderLM(nnx.Module):
    """A decoder-only language model{" with tied input and output embeddings" if spec.tied else ""}."""

    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = nnx.Embed(
            config.vocab_size, config.d_model, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs
        )
        self.blocks = nnx.List([DecoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
        self.final_norm = {norm}
{head_init}
    def __call__(self, tokens: jax.Array{key_param}) -> jax.Array:
        hidden = self.embed(tokens)
{loop}        return {out}
'''
    return parts + [attn, mlp, block, lm]


def _nnx_mlp(spec: Spec) -> list[str]:
    in_dim = "config.image_size * config.image_size * config.in_channels" if spec.image_input else "config.input_size"
    act = _ACT[spec.activation]
    flatten = "        x = x.reshape(x.shape[0], -1)\n" if spec.image_input else ""
    key_param = ", key: jax.Array" if spec.dropout else ""
    drop_init = "        self.dropout = nnx.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    if spec.dropout:
        loop = (
            "        for i, layer in enumerate(self.layers):\n"
            f"            x = self.dropout({act}(layer(x)), rngs=jax.random.fold_in(key, i))\n"
        )
    else:
        loop = f"        for layer in self.layers:\n            x = {act}(layer(x))\n"
    return [
        f'''
class MLPClassifier(nnx.Module):
    """A multilayer perceptron with a linear classifier head."""

    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        self.config = config
        linear = {_nnx_linear(spec)}
        dims = [{in_dim}] + [config.hidden_size] * config.num_layers
        self.layers = nnx.List([linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:])])
        self.head = linear(config.hidden_size, config.num_classes)
{drop_init}
    def __call__(self, x: jax.Array{key_param}) -> jax.Array:
{flatten}{loop}        return self.head(x)
'''
    ]


def _nnx_cnn(spec: Spec) -> list[str]:
    dtype = _cfg(spec)["compute"]
    act = _ACT[spec.activation]
    key_param = ", key: jax.Array" if spec.dropout else ""
    drop_init = "        self.dropout = nnx.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    drop = "        pooled = self.dropout(pooled, rngs=key)\n" if spec.dropout else ""
    return [
        f'''
class ResidualBlock(nnx.Module):
    """Two 3x3 convolutions with group norm and a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, num_groups: int, *, rngs: nnx.Rngs):
        conv = functools.partial(nnx.Conv, use_bias=False, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs)
        norm = functools.partial(nnx.GroupNorm, num_groups=num_groups, dtype={dtype}, rngs=rngs)
        self.conv1 = conv(c_in, c_out, (3, 3), strides=stride)
        self.norm1 = norm(c_out)
        self.conv2 = conv(c_out, c_out, (3, 3))
        self.norm2 = norm(c_out)
        self.proj = conv(c_in, c_out, (1, 1), strides=stride) if c_in != c_out else None

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = self.proj(x) if self.proj is not None else x
        hidden = {act}(self.norm1(self.conv1(x)))
        hidden = self.norm2(self.conv2(hidden))
        return {act}(hidden + residual)


class ResNet(nnx.Module):
    """A small ResNet-style image classifier (NHWC)."""

    def __init__(self, config: {spec.config_name}, *, rngs: nnx.Rngs):
        self.config = config
        self.stem = nnx.Conv(
            config.in_channels, config.channels, (3, 3), use_bias=False, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs
        )
        self.stem_norm = nnx.GroupNorm(config.channels, num_groups=config.num_groups, dtype={dtype}, rngs=rngs)
        blocks = []
        c_in = config.channels
        for i in range(config.num_blocks):
            c_out = config.channels * 2**i
            blocks.append(ResidualBlock(c_in, c_out, 1 if i == 0 else 2, config.num_groups, rngs=rngs))
            c_in = c_out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, config.num_classes, dtype={dtype}, param_dtype=jnp.float32, rngs=rngs)
{drop_init}
    def __call__(self, images: jax.Array{key_param}) -> jax.Array:
        hidden = {act}(self.stem_norm(self.stem(images)))
        for block in self.blocks:
            hidden = block(hidden)
        pooled = jnp.mean(hidden, axis=(1, 2))
{drop}        return self.head(pooled)
'''
    ]


def _nnx_step(spec: Spec) -> list[str]:
    model_cls = {"lm": "DecoderLM", "mlp": "MLPClassifier", "cnn": "ResNet"}[spec.model]
    inputs, labels = _inputs_key(spec), _labels_key(spec)
    key_arg = ", dropout_key" if spec.dropout else ""
    params = ["graphdef: nnx.GraphDef", "state: nnx.State", "batch: dict"]
    if spec.dropout:
        params.append("key: jax.Array")
    lines = [f"def train_step({', '.join(params)}):"]
    lines.append(f'    """{_step_doc(spec)}"""')
    lines.append("    model, optimizer = nnx.merge(graphdef, state)")
    lines.append("    config = model.config")
    if spec.dropout:
        lines.append("    dropout_key = jax.random.fold_in(key, optimizer.step[...])")
    lines.append("")
    lines.append(f"    def loss_fn(model: {model_cls}):")
    fwd = f'model(batch["{inputs}"]{key_arg})'
    lines.append(f"        logits = {fwd}.astype(jnp.float32)")
    lines += [
        "        " + line for line in _loss_lines(spec, "logits", f'batch["{labels}"]', _mask_expr(spec, "batch"))
    ]
    lines.append("")
    lines.append("    (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)")
    if spec.lr_metric:
        lines.append("    step = optimizer.step[...]")
    if spec.skip_nonfinite:
        lines.append("    # The update is in place: keep the arrays it replaces, to skip a non-finite update.")
        lines.append("    previous = nnx.as_pure(nnx.state((model, optimizer)))")
        lines.append("    updates = optimizer.update(model, grads)")
        lines.append("    update_ok = jnp.isfinite(optax.tree.norm(updates))")
        lines.append("    new_state = jax.tree.map(")
        lines.append(
            "        functools.partial(jnp.where, update_ok), nnx.as_pure(nnx.state((model, optimizer))), previous"
        )
        lines.append("    )")
        lines.append('    metrics["skipped"] = ~update_ok')
    else:
        lines.append("    optimizer.update(model, grads)")
    lines += _metric_lines(spec, "step")
    if spec.skip_nonfinite:
        lines.append("    return new_state, metrics")
    else:
        lines.append("    return nnx.state((model, optimizer)), metrics")
    if not any(re.search(r"\bconfig\b", line) for line in lines if line != "    config = model.config"):
        lines.remove("    config = model.config")  # every value the step computes is used
    ex = [
        "def example_args():",
        f"    config = {spec.config_name}()",
        "",
        "    def create():",
        f"        model = {model_cls}(config, rngs=nnx.Rngs(0))",
        "        return model, nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)",
        "",
        "    graphdef, state = nnx.split(nnx.eval_shape(create))",
    ]
    ex += _example_batch(spec)
    args = ["graphdef", "state", "batch"]
    if spec.dropout:
        args.append("jax.eval_shape(jax.random.key, 0)")
    ex.append(f"    return ({', '.join(args)})")
    return ["\n".join(lines) + "\n", "\n".join(ex) + "\n"]


# --- Equinox -------------------------------------------------------------------------------------


def _render_eqx(spec: Spec) -> list[str]:
    model = {"lm": _eqx_lm, "mlp": _eqx_mlp, "cnn": _eqx_cnn}[spec.model](spec)
    return [*model, _optimizer_code(spec), *_eqx_step(spec)]


def _eqx_lm(spec: Spec) -> list[str]:
    norm_cls = "eqx.nn.RMSNorm" if spec.rms_norm else "eqx.nn.LayerNorm"
    norm_t = norm_cls
    parts = []
    if spec.rope:
        parts.append(_rope_code())
    attn = f'''
class Attention(eqx.Module):
    """Causal self-attention over one sequence (batch with jax.vmap)."""

    q_proj: eqx.nn.Linear
    k_proj: eqx.nn.Linear
    v_proj: eqx.nn.Linear
    o_proj: eqx.nn.Linear
    config: {spec.config_name} = eqx.field(static=True)

    def __init__(self, config: {spec.config_name}, *, key: jax.Array):
        q_key, k_key, v_key, o_key = jax.random.split(key, 4)
        q_dim, kv_dim = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
        self.q_proj = eqx.nn.Linear(config.d_model, q_dim, use_bias=False, key=q_key)
        self.k_proj = eqx.nn.Linear(config.d_model, kv_dim, use_bias=False, key=k_key)
        self.v_proj = eqx.nn.Linear(config.d_model, kv_dim, use_bias=False, key=v_key)
        self.o_proj = eqx.nn.Linear(q_dim, config.d_model, use_bias=False, key=o_key)
        self.config = config

    def __call__(self, x: jax.Array) -> jax.Array:
        config = self.config
        seq = x.shape[0]
        q = jax.vmap(self.q_proj)(x).reshape(1, seq, config.num_heads, config.head_dim)
        k = jax.vmap(self.k_proj)(x).reshape(1, seq, config.num_kv_heads, config.head_dim)
        v = jax.vmap(self.v_proj)(x).reshape(1, seq, config.num_kv_heads, config.head_dim)
{_attention_core(spec, 8)}        return jax.vmap(self.o_proj)(out.reshape(seq, -1))
'''
    if spec.gated:
        mlp = f"""
class MLP(eqx.Module):
    gate_proj: eqx.nn.Linear
    up_proj: eqx.nn.Linear
    down_proj: eqx.nn.Linear

    def __init__(self, config: {spec.config_name}, *, key: jax.Array):
        gate_key, up_key, down_key = jax.random.split(key, 3)
        self.gate_proj = eqx.nn.Linear(config.d_model, config.d_ff, use_bias=False, key=gate_key)
        self.up_proj = eqx.nn.Linear(config.d_model, config.d_ff, use_bias=False, key=up_key)
        self.down_proj = eqx.nn.Linear(config.d_ff, config.d_model, use_bias=False, key=down_key)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
"""
    else:
        mlp = f"""
class MLP(eqx.Module):
    fc_in: eqx.nn.Linear
    fc_out: eqx.nn.Linear

    def __init__(self, config: {spec.config_name}, *, key: jax.Array):
        in_key, out_key = jax.random.split(key)
        self.fc_in = eqx.nn.Linear(config.d_model, config.d_ff, key=in_key)
        self.fc_out = eqx.nn.Linear(config.d_ff, config.d_model, key=out_key)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc_out(jax.nn.gelu(self.fc_in(x)))
"""
    drop_field = "    dropout: eqx.nn.Dropout\n" if spec.dropout else ""
    drop_init = "        self.dropout = eqx.nn.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    if spec.dropout:
        call = """    def __call__(self, hidden: jax.Array, *, key: jax.Array) -> jax.Array:
        attn_key, mlp_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        attn_out = self.attn(jax.vmap(self.attn_norm)(hidden))
        hidden = hidden + self.dropout(attn_out, key=attn_key)
        mlp_out = jax.vmap(self.mlp)(jax.vmap(self.mlp_norm)(hidden))
        return hidden + self.dropout(mlp_out, key=mlp_key)
"""
    else:
        call = """    def __call__(self, hidden: jax.Array) -> jax.Array:
        hidden = hidden + self.attn(jax.vmap(self.attn_norm)(hidden))
        return hidden + jax.vmap(self.mlp)(jax.vmap(self.mlp_norm)(hidden))
"""
    block = f'''
class DecoderBlock(eqx.Module):
    """Pre-norm residual block: attention, then MLP."""

    attn_norm: {norm_t}
    attn: Attention
    mlp_norm: {norm_t}
    mlp: MLP
{drop_field}
    def __init__(self, config: {spec.config_name}, *, key: jax.Array):
        attn_key, mlp_key = jax.random.split(key)
        self.attn_norm = {norm_cls}(config.d_model)
        self.attn = Attention(config, key=attn_key)
        self.mlp_norm = {norm_cls}(config.d_model)
        self.mlp = MLP(config, key=mlp_key)
{drop_init}
{call}'''
    head_field = "" if spec.tied else "    lm_head: eqx.nn.Linear\n"
    n_keys = 2 if spec.tied else 3
    key_names = "embed_key, blocks_key" if spec.tied else "embed_key, blocks_key, head_key"
    head_init = (
        ""
        if spec.tied
        else "        self.lm_head = eqx.nn.Linear(config.d_model, config.vocab_size, use_bias=False, key=head_key)\n"
    )
    key_param = ", *, key: jax.Array" if spec.dropout else ""
    if spec.dropout:
        loop = (
            "        for i, block in enumerate(self.blocks):\n"
            "            hidden = block(hidden, key=jax.random.fold_in(key, i))\n"
        )
    else:
        loop = "        for block in self.blocks:\n            hidden = block(hidden)\n"
    out = "hidden @ self.embed.weight.T" if spec.tied else "jax.vmap(self.lm_head)(hidden)"
    lm = f'''
class DecoderLM(eqx.Module):
    """A decoder-only language model over one token sequence."""

    embed: eqx.nn.Embedding
    blocks: tuple[DecoderBlock, ...]
    final_norm: {norm_t}
{head_field}    config: {spec.config_name} = eqx.field(static=True)

    def __init__(self, config: {spec.config_name}, key: jax.Array):
        {key_names} = jax.random.split(key, {n_keys})
        self.embed = eqx.nn.Embedding(config.vocab_size, config.d_model, key=embed_key)
        self.blocks = tuple(DecoderBlock(config, key=k) for k in jax.random.split(blocks_key, config.num_layers))
        self.final_norm = {norm_cls}(config.d_model)
{head_init}        self.config = config

    def __call__(self, tokens: jax.Array{key_param}) -> jax.Array:
        hidden = jnp.take(self.embed.weight, tokens, axis=0)
{loop}        hidden = jax.vmap(self.final_norm)(hidden)
        return {out}
'''
    return parts + [attn, mlp, block, lm]


def _eqx_mlp(spec: Spec) -> list[str]:
    in_dim = "config.image_size * config.image_size * config.in_channels" if spec.image_input else "config.input_size"
    act = _ACT[spec.activation]
    key_param = ", *, key: jax.Array" if spec.dropout else ""
    flatten = "        x = jnp.ravel(x)\n" if spec.image_input else ""
    drop_field = "    dropout: eqx.nn.Dropout\n" if spec.dropout else ""
    drop_init = "        self.dropout = eqx.nn.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    if spec.dropout:
        loop = (
            "        for i, layer in enumerate(self.layers):\n"
            f"            x = self.dropout({act}(layer(x)), key=jax.random.fold_in(key, i))\n"
        )
    else:
        loop = f"        for layer in self.layers:\n            x = {act}(layer(x))\n"
    return [
        f'''
class MLPClassifier(eqx.Module):
    """A multilayer perceptron with a linear classifier head, on one example."""

    layers: tuple[eqx.nn.Linear, ...]
    head: eqx.nn.Linear
{drop_field}    config: {spec.config_name} = eqx.field(static=True)

    def __init__(self, config: {spec.config_name}, key: jax.Array):
        keys = jax.random.split(key, config.num_layers + 1)
        dims = [{in_dim}] + [config.hidden_size] * config.num_layers
        self.layers = tuple(
            eqx.nn.Linear(d_in, d_out, key=k) for k, d_in, d_out in zip(keys[:-1], dims[:-1], dims[1:])
        )
        self.head = eqx.nn.Linear(config.hidden_size, config.num_classes, key=keys[-1])
{drop_init}        self.config = config

    def __call__(self, x: jax.Array{key_param}) -> jax.Array:
{flatten}{loop}        return self.head(x)
'''
    ]


def _eqx_cnn(spec: Spec) -> list[str]:
    act = _ACT[spec.activation]
    key_param = ", *, key: jax.Array" if spec.dropout else ""
    drop_field = "    dropout: eqx.nn.Dropout\n" if spec.dropout else ""
    drop_init = "        self.dropout = eqx.nn.Dropout(config.dropout_rate)\n" if spec.dropout else ""
    drop = "        pooled = self.dropout(pooled, key=key)\n" if spec.dropout else ""
    return [
        f'''
class ResidualBlock(eqx.Module):
    """Two 3x3 convolutions with group norm and a (projected) shortcut, on one CHW image."""

    conv1: eqx.nn.Conv2d
    norm1: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    norm2: eqx.nn.GroupNorm
    proj: eqx.nn.Conv2d | None

    def __init__(self, c_in: int, c_out: int, stride: int, num_groups: int, *, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, use_bias=False, key=k1)
        self.norm1 = eqx.nn.GroupNorm(num_groups, c_out)
        self.conv2 = eqx.nn.Conv2d(c_out, c_out, 3, padding=1, use_bias=False, key=k2)
        self.norm2 = eqx.nn.GroupNorm(num_groups, c_out)
        self.proj = eqx.nn.Conv2d(c_in, c_out, 1, stride=stride, use_bias=False, key=k3) if c_in != c_out else None

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = self.proj(x) if self.proj is not None else x
        hidden = {act}(self.norm1(self.conv1(x)))
        hidden = self.norm2(self.conv2(hidden))
        return {act}(hidden + residual)


class ResNet(eqx.Module):
    """A small ResNet-style image classifier on one CHW image."""

    stem: eqx.nn.Conv2d
    stem_norm: eqx.nn.GroupNorm
    blocks: tuple[ResidualBlock, ...]
    head: eqx.nn.Linear
{drop_field}    config: {spec.config_name} = eqx.field(static=True)

    def __init__(self, config: {spec.config_name}, key: jax.Array):
        keys = jax.random.split(key, config.num_blocks + 2)
        self.stem = eqx.nn.Conv2d(config.in_channels, config.channels, 3, padding=1, use_bias=False, key=keys[0])
        self.stem_norm = eqx.nn.GroupNorm(config.num_groups, config.channels)
        blocks = []
        c_in = config.channels
        for i in range(config.num_blocks):
            c_out = config.channels * 2**i
            stride = 1 if i == 0 else 2
            blocks.append(ResidualBlock(c_in, c_out, stride, config.num_groups, key=keys[i + 1]))
            c_in = c_out
        self.blocks = tuple(blocks)
        self.head = eqx.nn.Linear(c_in, config.num_classes, key=keys[-1])
{drop_init}        self.config = config

    def __call__(self, image: jax.Array{key_param}) -> jax.Array:
        hidden = {act}(self.stem_norm(self.stem(image)))
        for block in self.blocks:
            hidden = block(hidden)
        pooled = jnp.mean(hidden, axis=(1, 2))
{drop}        return self.head(pooled)
'''
    ]


def _eqx_step(spec: Spec) -> list[str]:
    model_cls = {"lm": "DecoderLM", "mlp": "MLPClassifier", "cnn": "ResNet"}[spec.model]
    takes_key, takes_step = _step_args(spec)
    inputs, labels = _inputs_key(spec), _labels_key(spec)
    loss = [f"def loss_fn(model: {model_cls}, batch: dict{', key: jax.Array' if spec.dropout else ''}):"]
    if spec.mixed_precision:
        loss.append("    # float32 master weights, bfloat16 forward pass, float32 loss.")
        loss.append(
            "    model = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if eqx.is_inexact_array(x) else x, model)"
        )
    x = f'batch["{inputs}"]'
    if spec.model == "cnn":
        loss.append(f"    images = jnp.transpose({x}, (0, 3, 1, 2))")
        if spec.mixed_precision:
            loss.append("    images = images.astype(jnp.bfloat16)")
        x = "images"
    elif spec.mixed_precision and spec.model == "mlp":
        loss.append(f"    inputs = {x}.astype(jnp.bfloat16)")
        x = "inputs"
    if spec.dropout:
        loss.append(f"    indices = jnp.arange({x}.shape[0])")
        loss.append(
            f"    logits = jax.vmap(lambda x, i: model(x, key=jax.random.fold_in(key, i)))({x}, indices).astype(jnp.float32)"
        )
    else:
        loss.append(f"    logits = jax.vmap(model)({x}).astype(jnp.float32)")
    loss += ["    " + line for line in _loss_lines(spec, "logits", f'batch["{labels}"]', _mask_expr(spec, "batch"))]
    if any("config." in line for line in loss[1:]):
        loss.insert(1, "    config = model.config")
    cfg_param = f", config: {spec.config_name}" if spec.config_arg else ""
    sig = ["params", "static", "opt_state: optax.OptState", "batch: dict"]
    if takes_key:
        sig.append("key: jax.Array")
    if takes_step:
        sig.append("step: jax.Array")
    lines = [f"def train_step({', '.join(sig)}{cfg_param}):"]
    lines.append(f'    """{_step_doc(spec)}"""')
    if spec.config_arg:
        lines.append("    optimizer = make_optimizer(config)")
    lines.append("    model = eqx.combine(params, static)")
    if spec.dropout:
        lines.append("    key = jax.random.fold_in(key, step)")
    lines.append("    grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)")
    lines += _accumulate_lines(spec, "grad_fn(model, {mb}{key})", "params")
    lines.append("    updates, new_opt_state = optimizer.update(grads, opt_state, params)")
    lines.append("    new_params = eqx.apply_updates(params, updates)")
    lines += _guard_and_metrics(spec, "params", "opt_state")
    lines.append("    return params, opt_state, metrics")
    ex = ["def example_args():"]
    if spec.config_arg:
        ex.append(f"    config = {spec.config_name}()")
        ex.append("    optimizer = make_optimizer(config)")
    ex.append(f"    model = eqx.filter_eval_shape({model_cls}, config, jax.random.key(0))")
    ex.append("    # Abstract leaves are ShapeDtypeStructs, which eqx.is_array does not match.")
    ex.append("    params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))")
    ex.append("    opt_state = jax.eval_shape(optimizer.init, params)")
    ex += _example_batch(spec)
    args = ["params", "static", "opt_state", "batch"]
    if takes_key:
        args.append("jax.eval_shape(jax.random.key, 0)")
    if takes_step:
        args.append("jax.ShapeDtypeStruct((), jnp.int32)")
    if spec.config_arg:
        args.append("config")
    ex.append(f"    return ({', '.join(args)})")
    out = ["\n".join(loss) + "\n"]
    if not spec.config_arg:
        out.append(f"config = {spec.config_name}()\noptimizer = make_optimizer(config)\n")
    out += ["\n".join(lines) + "\n", "\n".join(ex) + "\n"]
    return out


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("cnn",): (
        "accumulation",
        "activation",
        "clip",
        "dropout",
        "floats",
        "logits_stats",
        "optimizer",
        "schedule",
        "sizes",
        "skip_nonfinite",
        "smoothing",
    ),
    ("lm",): (
        "accumulation",
        "clip",
        "dropout",
        "floats",
        "fused_attention",
        "gated",
        "logits_stats",
        "lr_metric",
        "mixed_precision",
        "nesterov",
        "optimizer",
        "remat",
        "rms_norm",
        "rope",
        "scan_layers",
        "schedule",
        "sizes",
        "skip_nonfinite",
        "smoothing",
        "tied",
    ),
    ("mlp",): (
        "accumulation",
        "activation",
        "floats",
        "logits_stats",
        "optimizer",
        "schedule",
        "skip_nonfinite",
        "smoothing",
    ),
}
FAMILY = Family(CATEGORY, sample, render, context=("model",), structure=STRUCTURE)
