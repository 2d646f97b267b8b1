"""Train steps of composed models: a model drawn by the grammars (``grammar``, ``vision``) and,
independently, how it trains (``Training``): the objective its task implies, an optax chain on a
schedule (``optim``), gradient accumulation, label smoothing, masked losses, mixed precision and
a guard that skips a non-finite update. A plain JAX step of a sequence model may train on
the grammar's mesh (data parallel or FSDP): parameters, the optimizer moments shaped like them
and batches are placed with ``NamedSharding``, activations pinned by the blocks' constraints.

The model is written by the one emitter (``emit``) from the block library; the step around it
(loss, ``value_and_grad`` with metrics, accumulation, update, guard) is one template of lines
with a few style-specific ones: plain JAX steps ``(params, opt_state)`` with
``jax.value_and_grad`` and ``optax.apply_updates``; Flax NNX merges ``(graphdef, state)`` into
the model and its ``nnx.Optimizer``; Equinox combines ``(params, static)`` and steps with
``eqx.filter_value_and_grad`` and ``eqx.apply_updates``.

The guard matters for the validator too: it runs the step on arbitrary optimizer states, and
Adam's or Adafactor's second moments drawn below zero give a NaN update, which real training
code keeps out of its weights the same way (``jnp.where`` on the update's finiteness).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass

from ..base import ModelProgram, pick
from . import grammar, optim, render, vision
from .conv import VisionSpec
from .emit import Block, reads_config
from .moe import DROPPING
from .spec import ModelSpec

KINDS = ("transformer", "transformer", "moe", "recurrent", "vision", "vision")
ACCUMULATIONS = ("none", "scan", "multisteps")
OBJECTIVES = ("next_token", "classify", "token_classify", "denoise")
MIN_BATCH = 4
MIN_CLASSES = 5
# Sharded training (plain JAX): a batch split over the mesh, parameters replicated or sharded (FSDP).
TRAIN_LAYOUTS = ("data", "fsdp")
FUNCTION_NAMES = ("train_step", "train_step", "training_step", "update_step")


@dataclass(frozen=True)
class Training:
    """How a model trains. ``objective``: next-token prediction, classification (one label per
    example or per token) or diffusion noise prediction; ``accumulation``: none, a ``lax.scan``
    over microbatches or ``optax.MultiSteps``; ``smoothing``: none, ``optax.smooth_labels`` or
    by hand (one computation: ``structure`` does not tell them apart); ``mixed_precision``:
    float32 master weights, a bfloat16 forward pass, a float32 loss; ``config_arg``: the config
    is a static argument rather than a module-level value (an idiom)."""

    objective: str
    optimizer: str
    schedule: str
    accumulation: str
    clip: bool
    smoothing: str
    mixed_precision: bool
    skip_nonfinite: bool
    nesterov: bool = False
    lr_metric: bool = False
    logits_stats: bool = False
    config_arg: bool = False

    @property
    def masked(self) -> bool:
        return self.objective in ("next_token", "token_classify")


@dataclass(frozen=True)
class Hyper:
    """Training constants (0 where the step has no use for one)."""

    learning_rate: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    max_grad_norm: float = 0.0
    label_smoothing: float = 0.0
    num_microbatches: int = 0
    aux_loss_coef: float = 0.0
    z_loss_coef: float = 0.0
    num_timesteps: int = 0


@dataclass(frozen=True)
class TrainSpec:
    """A train-step program: a composed model, how it trains, and the step's name."""

    category: str
    model: ModelSpec | VisionSpec
    training: Training
    hyper: Hyper
    function_name: str

    @property
    def style(self) -> str:
        return self.model.style

    def structure(self) -> str:
        """What the program computes: the model's structure and the training choices, without
        constants, names or idioms."""
        training = dataclasses.replace(
            self.training, smoothing="smooth" * bool(self.training.smoothing), config_arg=False
        )
        return f"{self.category}\n{self.model.structure()}\n{training!r}"

    def digest(self) -> bytes:
        """A hash of every choice: a program's shard follows from it."""
        return hashlib.sha256(repr(self).encode()).digest()


# --- sampling ---------------------------------------------------------------------------------


def sample_model(rng: random.Random, kind: str) -> ModelSpec | VisionSpec:
    """A whole model of ``kind`` to train, on one device, with float32 (master) weights, on a
    batch of at least ``MIN_BATCH`` examples (so microbatches and reduced sizes keep a batch)."""
    while True:
        if kind == "vision":
            spec = vision.sample(rng, kind)
            if spec.sizes.batch_size >= MIN_BATCH:
                return dataclasses.replace(spec, dtype="float32")
            continue
        spec = grammar.sample(rng, kind)
        # (a classifier trains on at least MIN_CLASSES classes: label ids 0-4 are valid for it)
        if (
            spec.arch.task in ("lm", "classifier")
            and spec.sizes.batch_size >= MIN_BATCH
            and not (0 < spec.sizes.num_classes < MIN_CLASSES)
        ):
            sharding = spec.arch.sharding
            if not (spec.style == "jax" and sharding in TRAIN_LAYOUTS):  # the same model on one device
                sharding, spec = "none", dataclasses.replace(spec, sizes=dataclasses.replace(spec.sizes, mesh_shape=()))
            arch = dataclasses.replace(spec.arch, return_hidden=False, sharding=sharding)
            return dataclasses.replace(spec, arch=arch, dtype="float32")


def _objective(model: ModelSpec | VisionSpec) -> str:
    if isinstance(model, VisionSpec):
        return "denoise" if model.arch.net == "unet" else "classify"
    if model.arch.task == "lm":
        return "next_token"
    return "token_classify" if model.arch.pooling == "none" else "classify"


def _moe(model: ModelSpec | VisionSpec):
    return model.arch.layer.moe if isinstance(model, ModelSpec) else None


def _casts_to_bfloat16(model: ModelSpec | VisionSpec) -> bool:
    """Whether the model runs in bfloat16 when its parameters do. Not: image models (their stems
    cast images to the config's dtype), Flax library layers (their ``dtype`` fixes the compute
    dtype) and mixtures of experts (near-tied router logits in bfloat16 move across the top-k
    boundary between compilers)."""
    if isinstance(model, VisionSpec):
        return False
    return _moe(model) is None and not (model.style == "flax_nnx" and model.library_layers)


def _nnx_reads_config(t: Training, moe) -> bool:
    """Whether a Flax NNX step reads the config (the model and its optimizer carry the rest)."""
    return (
        bool(t.smoothing) or t.lr_metric or t.objective == "denoise" or (moe is not None and moe.aux_output == "dict")
    )


def sample(rng: random.Random, category: str = "train_step") -> TrainSpec:
    model = sample_model(rng, pick(rng, KINDS))
    objective = _objective(model)
    sharded = isinstance(model, ModelSpec) and model.arch.sharding != "none"
    # (Adafactor's factored moments have no parameter's shape to be laid out by)
    optimizer = pick(rng, [o for o in optim.OPTIMIZERS if not (sharded and o == "adafactor")])
    schedule = pick(rng, optim.SCHEDULES)
    batch = model.sizes.batch_size
    splits = [m for m in (2, 4, 8) if batch % m == 0 and batch // m >= 2]  # microbatches of one: see reduce
    accumulation = "none"
    if splits:
        accumulation = pick(rng, ACCUMULATIONS if model.style != "flax_nnx" else ("none", "multisteps"))
    moe = _moe(model)
    classifies = objective != "denoise"
    smoothing = pick(rng, ("", "", "optax", "manual")) if classifies else ""
    clip = rng.random() < 0.7
    training = Training(
        objective=objective,
        optimizer=optimizer,
        schedule=schedule,
        accumulation=accumulation,
        clip=clip,
        smoothing=smoothing,
        mixed_precision=_casts_to_bfloat16(model) and rng.random() < 0.6,
        skip_nonfinite=rng.random() < 0.3,
        nesterov=optimizer == "sgd" and rng.random() < 0.5,
        lr_metric=schedule != "constant" and rng.random() < 0.5,
        logits_stats=classifies and rng.random() < 0.4,
        config_arg=False,
    )
    if model.style != "flax_nnx" or _nnx_reads_config(training, moe):
        training = dataclasses.replace(training, config_arg=rng.random() < 0.5)
    lr = optim.LEARNING_RATES.get(optimizer, optim.SGD_LEARNING_RATES)
    decays = (0.1, 0.05, 0.01) if optimizer != "sgd" else (1e-4, 5e-4)
    hyper = Hyper(
        learning_rate=pick(rng, lr),
        weight_decay=pick(rng, decays) if optimizer != "adafactor" else 0.0,
        momentum=pick(rng, (0.9, 0.95)) if optimizer == "sgd" else 0.0,
        max_grad_norm=pick(rng, (1.0, 0.5, 5.0)) if clip else 0.0,
        label_smoothing=pick(rng, (0.1, 0.05, 0.2)) if smoothing else 0.0,
        num_microbatches=pick(rng, splits) if accumulation != "none" else 0,
        aux_loss_coef=pick(rng, (0.01, 0.001, 0.02)) if moe is not None and moe.aux_output == "dict" else 0.0,
        z_loss_coef=pick(rng, (0.001, 0.0001)) if moe is not None and moe.aux_output == "dict" and moe.z_loss else 0.0,
        num_timesteps=1000 if objective == "denoise" else 0,
    )
    return TrainSpec(category, model, training, hyper, pick(rng, FUNCTION_NAMES))


# --- the model, written by the block library ----------------------------------------------------


# An optimizer state's layout on the mesh (after the parameters' layouts of a sharded model).
STATE_SHARDING = (
    "def state_sharding(path, x) -> NamedSharding:\n"
    '    """An optimizer state\'s layout: a moment shaped like its parameter is laid out like it."""\n'
    '    name = getattr(path[-1], "key", None) if path else None\n'
    "    if name in PARAM_SPECS and x.ndim >= len(PARAM_SPECS[name]):\n"
    "        return param_sharding(path, x)\n"
    "    return NamedSharding(MESH, P())\n"
)


def _model_parts(model: ModelSpec | VisionSpec) -> tuple[str, str, list[str], Block]:
    """The model's module docstring text, config class, helpers and blocks (no entry point);
    a sharded model's mesh and layouts first, optimizer states' included (counters and
    factored moments are replicated)."""
    code = vision.model_code(model) if isinstance(model, VisionSpec) else render.model_code(model)
    # Only plain-JAX train steps are sharded (``sample``), and their layout defines PARAM_SPECS.
    parts = [*code.layout, STATE_SHARDING, *code.code] if code.layout else list(code.code)
    return code.doc.strip().strip('"').rstrip("."), code.config, parts, code.top


def _config(spec: TrainSpec, model_config: str) -> str:
    """The model's config with the training constants the step reads."""
    h, t = spec.hyper, spec.training
    fields: list[tuple[str, str, object]] = [("learning_rate", "float", h.learning_rate)]
    if h.weight_decay:
        fields.append(("weight_decay", "float", h.weight_decay))
    if h.momentum:
        fields.append(("momentum", "float", h.momentum))
    if t.clip:
        fields.append(("max_grad_norm", "float", h.max_grad_norm))
    if t.smoothing:
        fields.append(("label_smoothing", "float", h.label_smoothing))
    if h.num_microbatches:
        fields.append(("num_microbatches", "int", h.num_microbatches))
    if h.aux_loss_coef:
        fields.append(("aux_loss_coef", "float", h.aux_loss_coef))
    if h.z_loss_coef:
        fields.append(("router_z_loss_coef", "float", h.z_loss_coef))
    if h.num_timesteps:
        fields.append(("num_timesteps", "int", h.num_timesteps))
    text = model_config.rstrip("\n").replace('."""', ', and how it trains."""', 1)
    return text + "\n" + "".join(f"    {n}: {a} = {v!r}\n" for n, a, v in fields)


# --- the step ------------------------------------------------------------------------------------


def _batch(spec: TrainSpec) -> list[tuple[str, str, str]]:
    """``(key, shape, dtype)`` of the batch dict."""
    t = spec.training
    lead = "config.global_batch_size" if _sharded(spec) else "config.batch_size"
    if isinstance(spec.model, VisionSpec):
        c, s = "config.in_channels", "config.image_size"
        shape = f"({lead}, {c}, {s}, {s})" if spec.style == "equinox" else f"({lead}, {s}, {s}, {c})"
        images = ("images", shape, "jnp.float32")
        return [images] if t.objective == "denoise" else [images, ("labels", f"({lead},)", "jnp.int32")]
    tokens = f"({lead}, config.seq_len)"
    if t.objective == "next_token":
        return [("tokens", tokens, "jnp.int32"), ("targets", tokens, "jnp.int32"), ("loss_mask", tokens, "jnp.bool_")]
    if t.objective == "token_classify":
        return [("tokens", tokens, "jnp.int32"), ("labels", tokens, "jnp.int32"), ("loss_mask", tokens, "jnp.bool_")]
    return [("tokens", tokens, "jnp.int32"), ("labels", f"({lead},)", "jnp.int32")]


def _sharded(spec: TrainSpec) -> bool:
    return isinstance(spec.model, ModelSpec) and spec.model.arch.sharding != "none"


def _forward(spec: TrainSpec, needs_config: bool, x: str) -> str:
    """The model applied to ``x`` (and the timesteps of a denoiser)."""
    args = x + (", timesteps" if spec.training.objective == "denoise" else "")
    if spec.style == "jax":
        return f"{spec.model.function_name}(params, {args}{', config' * needs_config})"
    return f"model({args})" if spec.style == "flax_nnx" else f"jax.vmap(model)({args})"


def _loss_lines(spec: TrainSpec, needs_config: bool) -> list[str]:
    """The body of ``loss_fn``: the forward pass, the loss and its metrics."""
    t, style = spec.training, spec.style
    moe = _moe(spec.model)
    out = []
    if t.mixed_precision:
        out.append("# float32 master weights, a bfloat16 forward pass, a float32 loss")
        out.append(
            {
                "jax": "params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)",
                "flax_nnx": "definition, params = nnx.split(model)\n"
                "model = nnx.merge(definition, jax.tree.map(lambda p: p.astype(jnp.bfloat16), params))",
                "equinox": "model = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if eqx.is_inexact_array(x) else x, model)",
            }[style]
        )
    x = f'batch["{_batch(spec)[0][0]}"]'
    if isinstance(spec.model, VisionSpec) and t.mixed_precision:
        x += ".astype(jnp.bfloat16)"
    if t.objective == "denoise":
        return out + _denoise_lines(spec, needs_config, x)
    outputs = "logits, aux" if moe is not None else "logits"
    call = _forward(spec, needs_config, x)
    out.append(f"{outputs} = {call}" + ".astype(jnp.float32)" * t.mixed_precision)
    if moe is not None and style == "equinox":  # one value per example: averaged as batched code does
        out.append("aux = jax.tree.map(jnp.mean, aux)")
    labels = 'batch["targets"]' if t.objective == "next_token" else 'batch["labels"]'
    classes = "config.vocab_size" if t.objective == "next_token" else "config.num_classes"
    if t.smoothing == "optax":
        out.append(f"targets = optax.smooth_labels(jax.nn.one_hot({labels}, {classes}), config.label_smoothing)")
        out.append("losses = optax.softmax_cross_entropy(logits, targets)")
    elif t.smoothing == "manual":
        out += [
            "log_probs = jax.nn.log_softmax(logits, axis=-1)",
            f"nll = -jnp.take_along_axis(log_probs, {labels}[..., None], axis=-1)[..., 0]",
            "smooth_loss = -jnp.mean(log_probs, axis=-1)",
            "losses = (1.0 - config.label_smoothing) * nll + config.label_smoothing * smooth_loss",
        ]
    else:
        out.append(f"losses = optax.softmax_cross_entropy_with_integer_labels(logits, {labels})")
    correct = f"jnp.argmax(logits, axis=-1) == {labels}"
    loss = "cross_entropy" if moe is not None else "loss"
    if t.masked:
        out += [
            'mask = batch["loss_mask"].astype(jnp.float32)',
            "num_tokens = jnp.maximum(jnp.sum(mask), 1.0)",
            f"{loss} = jnp.sum(losses * mask) / num_tokens",
            f"accuracy = jnp.sum(({correct}) * mask) / num_tokens",
        ]
    else:
        out += [f"{loss} = jnp.mean(losses)", f"accuracy = jnp.mean({correct})"]
    metrics = ['"loss": loss', '"accuracy": accuracy']
    if moe is not None:
        out += _router_loss_lines(spec)
        metrics.insert(1, '"cross_entropy": cross_entropy')
        metrics.append('"aux_loss": aux' if moe.aux_output == "weighted" and moe.dispatch not in DROPPING else "**aux")
    if t.logits_stats:
        metrics += ['"logits_mean": jnp.mean(logits)', '"logits_max": jnp.max(jnp.abs(logits))']
    if t.masked:
        metrics.append('"num_tokens": num_tokens')
    return out + ["metrics = {" + ", ".join(metrics) + "}", "return loss, metrics"]


def _router_loss_lines(spec: TrainSpec) -> list[str]:
    """The router's auxiliary losses join the loss."""
    moe = spec.model.arch.layer.moe
    if moe.aux_output == "dict":
        z = ' + config.router_z_loss_coef * aux["router_z_loss"]' if moe.z_loss else ""
        return [f'loss = cross_entropy + config.aux_loss_coef * aux["load_balancing_loss"]{z}']
    return ['loss = cross_entropy + aux["aux_loss"]' if moe.dispatch in DROPPING else "loss = cross_entropy + aux"]


def _denoise_lines(spec: TrainSpec, needs_config: bool, x: str) -> list[str]:
    """DDPM's noise-prediction loss at random timesteps of a cosine noise schedule."""
    return [
        "noise_key, time_key = jax.random.split(key)",
        f"images = {x}",
        "noise = jax.random.normal(noise_key, images.shape, images.dtype)",
        "timesteps = jax.random.randint(time_key, (images.shape[0],), 0, config.num_timesteps)",
        "# the cosine schedule's signal level (Nichol & Dhariwal, 2021)",
        "alpha_bar = jnp.cos((timesteps / config.num_timesteps + 0.008) / 1.008 * jnp.pi / 2) ** 2",
        "alpha_bar = alpha_bar[:, None, None, None].astype(images.dtype)",
        "noisy = jnp.sqrt(alpha_bar) * images + jnp.sqrt(1.0 - alpha_bar) * noise",
        f"predicted = {_forward(spec, needs_config, 'noisy')}.astype(jnp.float32)",
        "loss = jnp.mean((predicted - noise.astype(jnp.float32)) ** 2)",
        'metrics = {"loss": loss}',
        "return loss, metrics",
    ]


def _accumulate(spec: TrainSpec, call: str) -> list[str]:
    """Lines giving ``metrics`` and ``grads`` (``call`` formats ``{mb}`` and ``{key}``)."""
    keyed = spec.training.objective == "denoise"
    if spec.training.accumulation != "scan":
        return [f"(_, metrics), grads = {call.format(mb='batch', key=', key' * keyed)}"]
    out = [
        "microbatches = jax.tree.map(lambda x: x.reshape(config.num_microbatches, -1, *x.shape[1:]), batch)",
        "",
    ]
    if keyed:
        out += ["def accumulate(grad_sum, xs):", "    microbatch, index = xs"]
        out.append("    microbatch_key = jax.random.fold_in(key, index)")
    else:
        out.append("def accumulate(grad_sum, microbatch):")
    out += [
        f"    (_, metrics), grads = {call.format(mb='microbatch', key=', microbatch_key' * keyed)}",
        "    return jax.tree.map(jnp.add, grad_sum, grads), metrics",
        "",
        "zeros = jax.tree.map(jnp.zeros_like, params)",
        *(["xs = (microbatches, jnp.arange(config.num_microbatches))"] if keyed else []),
        f"grad_sum, metrics = lax.scan(accumulate, zeros, {'xs' if keyed else 'microbatches'})",
        "grads = jax.tree.map(lambda g: g / config.num_microbatches, grad_sum)",
        "metrics = jax.tree.map(jnp.mean, metrics)",
    ]
    return out


def _step_doc(spec: TrainSpec) -> str:
    what = {
        "none": "One optimizer step on a batch",
        "scan": "One optimizer step, gradients averaged over microbatches",
        "multisteps": "One microbatch of gradient accumulation (the optimizer steps every num_microbatches calls)",
    }[spec.training.accumulation]
    return f"{what}; returns the new state and metrics."


def _step(spec: TrainSpec, top: Block, needs_config: bool) -> tuple[str, str]:
    """The jitted step and ``example_args()``, in the spec's style."""
    t, style, cfg = spec.training, spec.style, spec.model.config_name
    keyed = t.objective == "denoise"
    takes_step = style != "flax_nnx" and (keyed or t.lr_metric)
    loss_args = {
        "jax": "params: dict, batch: dict",
        "flax_nnx": f"model: {top.cls}",
        "equinox": f"model: {top.cls}, batch: dict",
    }
    loss_sig = loss_args[style] + (", key: jax.Array" if keyed and style != "flax_nnx" else "")
    loss_fn = [f"def loss_fn({loss_sig}) -> tuple[jax.Array, dict]:"]
    loss_fn += ["    " + line for text in _loss_lines(spec, needs_config) for line in text.split("\n")]
    if style == "flax_nnx":
        args = ["graphdef: nnx.GraphDef", "state: nnx.State", "batch: dict"]
        returns = "tuple[nnx.State, dict]"
        head = ["model, optimizer = nnx.merge(graphdef, state)"]
        if keyed:
            head.append("key = jax.random.fold_in(key, optimizer.step[...])")
        grads = ["(_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)"]
    else:
        args = ["params: dict", "opt_state: optax.OptState", "batch: dict"]
        if style == "equinox":
            args[0:1] = [f"params: {top.cls}", f"static: {top.cls}"]
        returns = f"tuple[{args[0].split(': ')[1]}, optax.OptState, dict]"
        head = ["optimizer = make_optimizer(config)"] if t.config_arg else []
        if style == "equinox":
            head.append("model = eqx.combine(params, static)")
        if keyed:
            head.append("key = jax.random.fold_in(key, step)")
        grad_fn = "jax.value_and_grad" if style == "jax" else "eqx.filter_value_and_grad"
        grads = [f"grad_fn = {grad_fn}(loss_fn, has_aux=True)"]
        grads += _accumulate(spec, "grad_fn(params, {mb}{key})" if style == "jax" else "grad_fn(model, {mb}{key})")
    args += ["key: jax.Array"] * keyed + ["step: jax.Array"] * takes_step + [f"config: {cfg}"] * t.config_arg
    body = [*head, "", *loss_fn, "", *grads, *_update(spec)]
    step = "\n".join(
        [f"def {spec.function_name}({', '.join(args)}) -> {returns}:", f'    """{_step_doc(spec)}"""']
        + [("    " + line) if line else "" for line in body]
    )
    # example arguments
    example = ["def example_args():", f"    config = {cfg}()"]
    if style == "flax_nnx":
        example += [
            "",
            "    def create():",
            f"        model = {top.cls}(config, rngs=nnx.Rngs(0))",
            "        return model, nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)",
            "",
            "    graphdef, state = nnx.split(nnx.eval_shape(create))",
        ]
        returned = ["graphdef", "state", "batch"]
    else:
        example.append("    optimizer = make_optimizer(config)")
        if style == "jax":
            example.append("    params = jax.eval_shape(lambda key: init_params(key, config), jax.random.key(0))")
            returned = ["params", "opt_state", "batch"]
        else:
            example += [
                f"    model = eqx.filter_eval_shape({top.cls}, config, jax.random.key(0))",
                "    params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))",
            ]
            returned = ["params", "static", "opt_state", "batch"]
        example.append("    opt_state = jax.eval_shape(optimizer.init, params)")
    placed = ""
    if _sharded(spec):
        batch_axis = render.LAYOUTS[spec.model.arch.sharding][1]["batch"]
        example += [
            "    params = jax.tree_util.tree_map_with_path(",
            "        lambda path, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=param_sharding(path, x)), params",
            "    )",
            "    opt_state = jax.tree_util.tree_map_with_path(",
            "        lambda path, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=state_sharding(path, x)), opt_state",
            "    )",
            f'    batch_sharding = NamedSharding(MESH, P("{batch_axis}"))',
        ]
        placed = ", sharding=batch_sharding"
    example.append("    batch = {")
    example += [f'        "{k}": jax.ShapeDtypeStruct({shape}, {dtype}{placed}),' for k, shape, dtype in _batch(spec)]
    example.append("    }")
    returned += ["jax.eval_shape(jax.random.key, 0)"] * keyed + ["jax.ShapeDtypeStruct((), jnp.int32)"] * takes_step
    returned += ["config"] * t.config_arg
    example.append(f"    return {', '.join(returned)}")
    return step + "\n", "\n".join(example) + "\n"


def _update(spec: TrainSpec) -> list[str]:
    """The optimizer update, the guard, the metrics and the return."""
    t, style = spec.training, spec.style
    out = []
    if style == "flax_nnx":
        if t.lr_metric:
            out.append("step = optimizer.step[...]")
        if t.skip_nonfinite:
            out += [
                "# The update is in place: keep the arrays it replaces, to skip a non-finite update.",
                "previous = nnx.as_pure(nnx.state((model, optimizer)))",
                "updates = optimizer.update(model, grads)",
                "update_ok = jnp.isfinite(optax.tree.norm(updates))",
                "new_state = jax.tree.map(",
                "    functools.partial(jnp.where, update_ok), nnx.as_pure(nnx.state((model, optimizer))), previous",
                ")",
            ]
        else:
            out.append("optimizer.update(model, grads)")
    else:
        apply = "optax.apply_updates" if style == "jax" else "eqx.apply_updates"
        out += [
            "updates, new_opt_state = optimizer.update(grads, opt_state, params)",
            f"new_params = {apply}(params, updates)",
        ]
        if t.skip_nonfinite:
            out += [
                "# Skip a non-finite update (a loss spike), keeping the previous weights and state.",
                "update_ok = jnp.isfinite(optax.tree.norm(updates))",
                "params, opt_state = jax.tree.map(",
                "    functools.partial(jnp.where, update_ok), (new_params, new_opt_state), (params, opt_state)",
                ")",
            ]
        else:
            out.append("params, opt_state = new_params, new_opt_state")
    out.append('metrics["grad_norm"] = optax.tree.norm(grads)')
    if t.skip_nonfinite:
        out.append('metrics["skipped"] = ~update_ok')
    if t.lr_metric:
        out.append('metrics["learning_rate"] = make_schedule(config)(step)')
    if style == "flax_nnx":
        out.append("return " + ("new_state" if t.skip_nonfinite else "nnx.state((model, optimizer))") + ", metrics")
    else:
        out.append("return params, opt_state, metrics")
    return out


def _module_doc(spec: TrainSpec, model_doc: str) -> str:
    t = spec.training
    loss = {
        "next_token": "a masked next-token cross-entropy",
        "classify": "a cross-entropy over classes",
        "token_classify": "a masked per-token cross-entropy",
        "denoise": "a noise-prediction loss at random diffusion timesteps",
    }[t.objective]
    parts = [loss + (" with label smoothing" if t.smoothing else "")]
    if _moe(spec.model) is not None:
        parts.append("the router's losses added")
    schedule = {
        "constant": "a constant learning rate",
        "warmup_cosine": "a warmup-cosine schedule",
        "warmup_linear": "a warmup-linear schedule",
        "join_cosine": "joined warmup and cosine schedules",
    }[t.schedule]
    parts.append(f"{optim.optimizer_doc(t.optimizer, t.nesterov, False)} on {schedule}")
    if t.clip:
        parts.append("gradients clipped by their global norm")
    if t.accumulation != "none":
        how = "lax.scan" if t.accumulation == "scan" else "optax.MultiSteps"
        parts.append(f"gradients accumulated over microbatches by {how}")
    if t.mixed_precision:
        parts.append("a bfloat16 forward pass over float32 master weights")
    if t.skip_nonfinite:
        parts.append("a non-finite update skipped")
    what = model_doc[0].lower() + model_doc[1:]
    return f'"""One training step of {what}.\n\nThe step: {", ".join(parts)}.\n"""\n'


def render_train_step(spec: TrainSpec) -> ModelProgram:
    """The program of ``spec`` (no random draws)."""
    model_doc, model_config, parts, top = _model_parts(spec.model)
    needs_config = reads_config(top)
    t = spec.training
    b2 = 0.95 if t.objective == "next_token" else 0.999
    parts.append(
        optim.optimizer_code(
            spec.model.config_name,
            t.optimizer,
            t.schedule,
            clip=t.clip,
            nesterov=t.nesterov,
            multisteps=t.accumulation == "multisteps",
            b2=b2,
        )
    )
    step, example = _step(spec, top, needs_config)
    if not t.config_arg and (spec.style != "flax_nnx" or _nnx_reads_config(t, _moe(spec.model))):
        optimizer = "\noptimizer = make_optimizer(config)" if spec.style != "flax_nnx" else ""
        parts.append(f"config = {spec.model.config_name}(){optimizer}\n")
    parts += [step, example]
    body = "\n\n".join(p.rstrip("\n") + "\n" for p in [_config(spec, model_config), *parts])
    imports = render.module_imports(body, spec.model.style).replace(
        "import jax.numpy as jnp\n", "import jax.numpy as jnp\nimport optax\n"
    )
    source = _module_doc(spec, model_doc) + "\n" + imports + "\n\n" + body
    transforms = ["value_and_grad"]
    for name, marks in (
        ("scan", ("lax.scan",)),
        ("checkpoint", ("jax.checkpoint",)),
        ("vmap", ("jax.vmap", "eqx.filter_vmap", "nnx.vmap")),
    ):
        if any(mark in source for mark in marks):
            transforms.append(name)
    if not _sharded(spec):
        return ModelProgram(spec.category, spec.style, spec.function_name, source, tuple(transforms))
    axes = render.LAYOUTS[spec.model.arch.sharding][0]
    mesh = ",".join(f"{a}={n}" for a, n in zip(axes, spec.model.sizes.mesh_shape))
    return ModelProgram(
        spec.category,
        spec.style,
        spec.function_name,
        source,
        tuple(transforms),
        host_devices=render.HOST_DEVICES,
        mesh=mesh,
    )
