"""Optax optimizer chains and learning-rate schedules as data, written once for every style.

``make_schedule(config)`` and ``make_optimizer(config)`` read the config's training fields
(``learning_rate``, ``weight_decay``, ``momentum``, ``max_grad_norm``, ``num_microbatches``),
so a train step's optimizer is the same text in plain JAX, Flax NNX and Equinox.
"""

from __future__ import annotations

OPTIMIZERS = ("adamw", "lion", "adafactor", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear", "join_cosine")
LEARNING_RATES = {"adamw": (1e-4, 3e-4, 6e-4, 1e-3), "lion": (3e-5, 1e-4, 3e-4), "adafactor": (1e-3, 1e-2)}
SGD_LEARNING_RATES = (0.01, 0.05, 0.1)

# schedule -> (docstring, body lines): linear warmup, then decay (the constant rate has none).
SCHEDULE_BODIES = {
    "warmup_cosine": (
        "Linear warmup over 2,000 steps, then cosine decay to a tenth of the peak.",
        (
            "return optax.warmup_cosine_decay_schedule(",
            "    init_value=0.0,",
            "    peak_value=config.learning_rate,",
            "    warmup_steps=2_000,",
            "    decay_steps=100_000,",
            "    end_value=config.learning_rate * 0.1,",
            ")",
        ),
    ),
    "warmup_linear": (
        "Linear warmup over 1,000 steps, then linear decay to zero.",
        (
            "warmup = optax.linear_schedule(0.0, config.learning_rate, transition_steps=1_000)",
            "decay = optax.linear_schedule(config.learning_rate, 0.0, transition_steps=49_000)",
            "return optax.join_schedules([warmup, decay], boundaries=[1_000])",
        ),
    ),
    "join_cosine": (
        "Linear warmup over 500 steps joined to a cosine decay.",
        (
            "warmup = optax.linear_schedule(0.0, config.learning_rate, transition_steps=500)",
            "decay = optax.cosine_decay_schedule(config.learning_rate, decay_steps=20_000, alpha=0.05)",
            "return optax.join_schedules([warmup, decay], boundaries=[500])",
        ),
    ),
}
# optimizer -> its transforms ({lr}: the rate or schedule; {b2}: Adam's second-moment decay)
TRANSFORMS = {
    "adamw": ("optax.adamw({lr}, b1=0.9, b2={b2}, eps=1e-8, weight_decay=config.weight_decay, mask=decay_mask)",),
    "lion": ("optax.lion({lr}, b1=0.9, b2=0.99, weight_decay=config.weight_decay, mask=decay_mask)",),
    "adafactor": ("optax.adafactor({lr}, decay_rate=0.8, clipping_threshold=1.0, momentum=None)",),
    "sgd": (
        "optax.add_decayed_weights(config.weight_decay, mask=decay_mask)",
        "optax.sgd({lr}, momentum=config.momentum{nesterov})",
    ),
}
NAMES = {"adamw": "AdamW", "lion": "Lion", "adafactor": "Adafactor", "sgd": "SGD with momentum"}


def optimizer_doc(optimizer: str, nesterov: bool, clip: bool) -> str:
    name = "SGD with Nesterov momentum" if nesterov else NAMES[optimizer]
    return name + (", gradients clipped by their global norm" if clip else "")


def optimizer_code(
    config_name: str, optimizer: str, schedule: str, *, clip: bool, nesterov: bool, multisteps: bool, b2: float
) -> str:
    """``make_schedule`` (unless the rate is constant) and ``make_optimizer``."""
    parts = []
    if schedule != "constant":
        doc, body = SCHEDULE_BODIES[schedule]
        parts.append(
            "\n".join(
                [f"def make_schedule(config: {config_name}) -> optax.Schedule:", f'    """{doc}"""']
                + ["    " + line for line in body]
            )
        )
    lr = "make_schedule(config)" if schedule != "constant" else "config.learning_rate"
    lines = [
        f"def make_optimizer(config: {config_name}) -> optax.GradientTransformation:",
        f'    """{optimizer_doc(optimizer, nesterov, clip)}."""',
    ]
    if optimizer != "adafactor":
        lines += [
            "",
            "    def decay_mask(params):",
            "        # No weight decay on biases and norm scales.",
            "        return jax.tree.map(lambda p: p.ndim > 1, params)",
            "",
        ]
    transforms = ["optax.clip_by_global_norm(config.max_grad_norm)"] * clip + [
        t.format(lr=lr, b2=b2, nesterov=", nesterov=True" if nesterov else "") for t in TRANSFORMS[optimizer]
    ]
    tx = (
        transforms[0]
        if len(transforms) == 1
        else "optax.chain(\n" + "".join(f"        {t},\n" for t in transforms) + "    )"
    )
    if multisteps:
        lines += [
            f"    tx = {tx}",
            "    # Accumulate gradients over num_microbatches calls, then step.",
            "    return optax.MultiSteps(tx, every_k_schedule=config.num_microbatches)",
        ]
    else:
        lines.append(f"    return {tx}")
    parts.append("\n".join(lines))
    return "\n\n\n".join(parts) + "\n"
