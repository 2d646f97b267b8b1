"""recurrent: LSTM/GRU networks and linear recurrences / state-space models.

Two kinds of programs, each in the three styles (plain JAX over parameter dicts, Flax NNX,
Equinox):

- gated RNNs (``lstm``, ``gru``): cells over a sequence with ``lax.scan`` (written by hand
  over parameter dicts; ``eqx.nn.LSTMCell``/``GRUCell`` scanned per example and vmapped over
  the batch; ``nnx.LSTMCell``/``OptimizedLSTMCell``/``GRUCell`` through ``nnx.RNN``), 1-4
  stacked layers, sometimes bidirectional (``reverse=True`` or ``jnp.flip``), with a
  sequence classifier, a per-step tagger or a language-model head;
- linear recurrences (``rglru``: Griffin's real-gated LRU; ``s4d``; ``s5``; ``mamba``: a
  selective scan with input-dependent discretization ``exp(delta * A)``), computed with
  ``lax.associative_scan`` over ``(a, b)`` pairs or a sequential ``lax.scan``, with Mamba's
  short causal depthwise convolution, gated outputs, and residual + norm around each block;
  layers unrolled (1-4) or under ``lax.scan`` over stacked parameters (optionally
  ``jax.checkpoint``).

Recurrences run in float32; embeddings, projections and heads are float32 or bfloat16.
``sample`` draws a ``Spec``; ``render`` writes the module text and draws nothing.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass
from string import Template

from .base import (
    BATCH_SIZES,
    D_MODELS,
    SEQ_LENS,
    VOCAB_SIZES,
    Family,
    ModelProgram,
    config_class,
    pick,
    round_up,
)

CATEGORY = "recurrent"

RNN_VARIANTS = ("lstm", "gru")
SSM_VARIANTS = ("rglru", "s4d", "s5", "mamba")
VARIANTS = RNN_VARIANTS + SSM_VARIANTS
HEADS = ("classifier", "tagger", "lm")
STATE_SIZES = (16, 32, 64, 128, 256)
# at least 5: the validator draws integer inputs (labels) in [0, 4]
NUM_CLASSES = (5, 10, 20, 35, 100, 1000)
TOKENS_CAP = 1 << 18

_CONFIG_NAMES = {
    "lstm": "LSTMConfig",
    "gru": "GRUConfig",
    "rglru": "GriffinConfig",
    "s4d": "S4DConfig",
    "s5": "S5Config",
    "mamba": "MambaConfig",
}
_TITLES = {
    "lstm": "LSTM",
    "gru": "GRU",
    "rglru": "Griffin-style (RG-LRU)",
    "s4d": "S4D (diagonal state-space)",
    "s5": "S5 (MIMO diagonal state-space)",
    "mamba": "Mamba (selective state-space)",
}


@dataclass(frozen=True)
class Spec:
    """Every choice of one recurrent program.

    Attributes:
      style: ``"jax"``, ``"flax_nnx"`` or ``"equinox"``.
      variant: one of ``VARIANTS``.
      cell: the library cell class of an RNN (``"LSTMCell"``, ``"OptimizedLSTMCell"``,
        ``"GRUCell"``); ``""`` for plain JAX and state-space variants.
      inputs: ``"tokens"`` (an embedding table) or ``"features"`` (real-valued frames).
      head: ``"classifier"`` (pooled, one label per sequence), ``"tagger"`` (a label per
        step) or ``"lm"`` (next-token logits; tokens only, never bidirectional).
      objective: ``"logits"`` (the function returns them) or ``"loss"`` (mean cross-entropy).
      pool: how a classifier pools over time: ``"last"``, ``"mean"``, ``"max"``; ``""`` otherwise.
      function_name: the jitted function.
      num_layers: stacked layers (1-4 unrolled; more only under ``lax.scan``).
      d_model: the residual width of a state-space model; the RNN hidden size for RNNs.
      hidden_size: the RNN hidden size, or Griffin's recurrence width; 0 when unused.
      input_size: the width of the first layer's input (embedding or feature size).
      state_size: the SSM state size (N, or P for S5); 0 for RNNs and Griffin.
      d_ff: Mamba's inner width or Griffin's MLP width; 0 when unused.
      vocab_size / num_classes: 0 when unused.
      seq_len / batch_size: the data shape.
      dtype: the dtype of embeddings, projections and heads (recurrences are float32).
      bidirectional: RNNs only.
      reverse_idiom: ``"reverse"`` (``lax.scan(..., reverse=True)``) or ``"flip"`` (``jnp.flip``).
      precompute_inputs: plain-JAX RNNs: project all steps' inputs before the scan.
      scan_impl: ``"associative"`` or ``"sequential"`` (state-space variants).
      layer_loop: ``"unrolled"`` or ``"scan"`` (over stacked layer parameters).
      remat: ``jax.checkpoint`` around the scanned layer.
      norm: ``"rms"`` or ``"layer"``.
      conv_impl: plain-JAX causal conv: ``"shift"`` (sum of shifted slices) or ``"lax"``.
      tie_embeddings: a language model's head reuses the embedding table.
    """

    style: str
    variant: str
    cell: str
    inputs: str
    head: str
    objective: str
    pool: str
    function_name: str
    num_layers: int
    d_model: int
    hidden_size: int
    input_size: int
    state_size: int
    d_ff: int
    vocab_size: int
    num_classes: int
    seq_len: int
    batch_size: int
    dtype: str
    bidirectional: bool
    reverse_idiom: str
    precompute_inputs: bool
    scan_impl: str
    layer_loop: str
    remat: bool
    norm: str
    conv_impl: str
    tie_embeddings: bool


# --- sampling -------------------------------------------------------------------------------


def sample(rng: random.Random) -> Spec:
    """Draw one recurrent program's spec."""
    style = pick(rng, ("jax", "flax_nnx", "equinox"))
    variant = pick(rng, VARIANTS)
    rnn = variant in RNN_VARIANTS
    inputs = "tokens" if rng.random() < 0.6 else "features"
    heads = ("classifier", "tagger", "lm") if inputs == "tokens" else ("classifier", "tagger")
    head = pick(rng, heads)
    objective = "loss" if rng.random() < 0.35 else "logits"
    bidirectional = rnn and head != "lm" and rng.random() < 0.4
    pool = ""
    if head == "classifier":
        pool = pick(rng, ("mean", "max") if bidirectional else ("last", "mean", "max"))
    cell = ""
    if rnn and style == "flax_nnx":
        cell = pick(rng, ("LSTMCell", "OptimizedLSTMCell")) if variant == "lstm" else "GRUCell"
    elif rnn and style == "equinox":
        cell = "LSTMCell" if variant == "lstm" else "GRUCell"
    if rnn:
        d_model = pick(rng, [d for d in D_MODELS if d <= 2048])
        hidden_size = d_model
        input_size = pick(rng, [d for d in D_MODELS if d <= 1024] + [80, 40, 13] * (inputs == "features"))
        longest = 2048
        num_layers = rng.randint(1, 4)
        layer_loop = "unrolled"
    else:
        d_model = pick(rng, D_MODELS)
        hidden_size = pick(rng, (d_model, d_model, round_up(4 * d_model // 3, 128))) if variant == "rglru" else 0
        input_size = pick(rng, (32, 64, 80, 128, 256, 512)) if inputs == "features" else 0
        longest = 8192
        # NNX layers stay a Python list (1-4 layers); plain JAX and Equinox also scan over stacked layers
        layer_loop = "scan" if style != "flax_nnx" and rng.random() < 0.5 else "unrolled"
        num_layers = pick(rng, (4, 6, 8, 12, 16, 24, 32, 48)) if layer_loop == "scan" else rng.randint(1, 4)
    state_size = 0
    if variant == "mamba":
        state_size = pick(rng, (16, 16, 32, 64))
    elif variant in ("s4d", "s5"):
        state_size = pick(rng, STATE_SIZES)
    d_ff = 0
    if variant == "mamba":
        d_ff = 2 * d_model
    elif variant == "rglru":
        d_ff = pick(rng, (3 * d_model, 4 * d_model, round_up(8 * d_model // 3, 256)))
    seq = pick(rng, [s for s in SEQ_LENS if s <= longest])
    cap = TOKENS_CAP >> 2 if variant == "mamba" else TOKENS_CAP
    batch = pick(rng, [b for b in BATCH_SIZES if b * seq <= cap] or [1])
    vocab_size = pick(rng, VOCAB_SIZES) if inputs == "tokens" else 0
    if inputs == "tokens" and rnn and rng.random() < 0.6:
        vocab_size = pick(rng, (8_000, 16_384, 32_000, 50_257))  # RNN taggers/classifiers use small vocabularies
    num_classes = pick(rng, NUM_CLASSES) if head != "lm" else 0
    if objective == "loss":
        function_name = pick(rng, ("loss_and_accuracy", "eval_step", "compute_loss")) if head != "lm" else "eval_step"
        if head == "lm":
            function_name = pick(rng, ("eval_step", "compute_loss", "lm_loss"))
    else:
        function_name = pick(rng, ("forward", "apply_model", "predict") if head != "lm" else ("forward", "apply_model"))
    if objective == "loss" and function_name == "loss_and_accuracy" and head == "lm":
        function_name = "eval_step"
    return Spec(
        style=style,
        variant=variant,
        cell=cell,
        inputs=inputs,
        head=head,
        objective=objective,
        pool=pool,
        function_name=function_name,
        num_layers=num_layers,
        d_model=d_model,
        hidden_size=hidden_size,
        input_size=input_size,
        state_size=state_size,
        d_ff=d_ff,
        vocab_size=vocab_size,
        num_classes=num_classes,
        seq_len=seq,
        batch_size=batch,
        dtype="bfloat16" if rng.random() < 0.5 else "float32",
        bidirectional=bidirectional,
        reverse_idiom=pick(rng, ("reverse", "flip")),
        precompute_inputs=rnn and style == "jax" and rng.random() < 0.5,
        scan_impl="" if rnn else pick(rng, ("associative", "sequential")),
        layer_loop=layer_loop,
        remat=layer_loop == "scan" and rng.random() < 0.5,
        norm=pick(rng, ("rms", "layer")),
        conv_impl=pick(rng, ("shift", "lax")) if variant in ("mamba", "rglru") and style == "jax" else "",
        tie_embeddings=head == "lm" and rng.random() < 0.4,
    )


# --- text helpers ---------------------------------------------------------------------------


def _t(text: str, **subs: object) -> str:
    """Dedented ``text`` with ``$name`` placeholders filled in (code keeps its braces)."""
    return Template(textwrap.dedent(text).strip("\n")).substitute(**subs) + "\n"


def _config(spec: Spec) -> str:
    rnn = spec.variant in RNN_VARIANTS
    fields: list[tuple[str, str, object]] = []
    if spec.inputs == "tokens":
        fields.append(("vocab_size", "int", spec.vocab_size))
    if rnn:
        fields.append(("input_size", "int", spec.input_size))
        fields.append(("hidden_size", "int", spec.hidden_size))
    else:
        if spec.inputs == "features":
            fields.append(("input_size", "int", spec.input_size))
        fields.append(("d_model", "int", spec.d_model))
        if spec.variant == "rglru":
            fields.append(("hidden_size", "int", spec.hidden_size))
        if spec.state_size:
            fields.append(("state_size", "int", spec.state_size))
        if spec.d_ff:
            fields.append(("d_ff", "int", spec.d_ff))
        if spec.variant in ("mamba", "rglru"):
            fields.append(("conv_width", "int", 4))
    fields.append(("num_layers", "int", spec.num_layers))
    if spec.head != "lm":
        fields.append(("num_classes", "int", spec.num_classes))
    fields.append(("seq_len", "int", spec.seq_len))
    fields.append(("batch_size", "int", spec.batch_size))
    if not rnn:
        fields.append(("norm_eps", "float", 1e-5 if spec.norm == "layer" else 1e-6))
    fields.append(("dtype", "str", spec.dtype))
    doc = f"Sizes of the {_TITLES[spec.variant]} model and its data."
    return config_class(_CONFIG_NAMES[spec.variant], fields, doc)


def _imports(body: str) -> str:
    """The imports ``body`` uses, sorted as isort/ruff sort them."""
    stdlib = [f"import {m}" for m in ("dataclasses", "functools", "math") if m == "dataclasses" or f"{m}." in body]
    third = []
    if "eqx." in body:
        third.append("import equinox as eqx")
    third += ["import jax", "import jax.numpy as jnp"]
    if "optax." in body:
        third.append("import optax")
    if "nnx." in body:
        third.append("from flax import nnx")
    if "lax." in body.replace("jax.lax.", ""):
        third.append("from jax import lax")
    return "\n".join(stdlib) + "\n\n" + "\n".join(third) + "\n"


def _join(blocks: list[str]) -> str:
    """Top-level definitions separated by two blank lines."""
    return "\n\n\n".join(b.strip("\n") for b in blocks if b.strip()) + "\n"


def _module(spec: Spec, parts: list[str]) -> str:
    body = _join(parts)
    doc = f'"""{_TITLES[spec.variant]} {_purpose(spec)} ({_style_name(spec.style)})."""\n'
    return doc + "\n" + _imports(body) + "\n\n" + _join([_config(spec), body])


def _purpose(spec: Spec) -> str:
    what = {"classifier": "sequence classifier", "tagger": "sequence tagger", "lm": "language model"}[spec.head]
    if spec.objective == "loss":
        return f"{what}: evaluation loss"
    return what


def _style_name(style: str) -> str:
    return {"jax": "plain JAX", "flax_nnx": "Flax NNX", "equinox": "Equinox"}[style]


def _cfg_name(spec: Spec) -> str:
    return _CONFIG_NAMES[spec.variant]


def _data_specs(spec: Spec, batched: bool = True) -> tuple[str, str, str]:
    """``(argument names, ShapeDtypeStruct lines, returned names)`` of the data arguments."""
    lines = []
    names = []
    if spec.inputs == "tokens":
        lines.append("tokens = jax.ShapeDtypeStruct((config.batch_size, config.seq_len), jnp.int32)")
        names.append("tokens")
    else:
        lines.append(
            "features = jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.input_size), "
            "jnp.dtype(config.dtype))"
        )
        names.append("features")
    if spec.objective == "loss" and spec.head != "lm":
        shape = "(config.batch_size,)" if spec.head == "classifier" else "(config.batch_size, config.seq_len)"
        lines.append(f"labels = jax.ShapeDtypeStruct({shape}, jnp.int32)")
        names.append("labels")
    return ", ".join(names), "\n".join(lines), ", ".join(names)


def _loss_lines(spec: Spec, indent: str = "    ") -> str:
    """Lines turning ``logits`` (float32) into the function's return value."""
    if spec.objective == "logits":
        return f"{indent}return logits\n"
    if spec.head == "lm":
        target = "tokens[:, 1:]"
        logits = "logits[:, :-1]"
    else:
        target = "labels"
        logits = "logits"
    use_optax = spec.style != "jax" or spec.function_name == "compute_loss"
    out = []
    if use_optax:
        out.append(f"loss = optax.softmax_cross_entropy_with_integer_labels({logits}, {target}).mean()")
    else:
        out.append(f"log_probs = jax.nn.log_softmax({logits}, axis=-1)")
        out.append(f"nll = -jnp.take_along_axis(log_probs, {target}[..., None], axis=-1)[..., 0]")
        out.append("loss = nll.mean()")
    if spec.function_name == "loss_and_accuracy":
        out.append(f"accuracy = jnp.mean(jnp.argmax({logits}, axis=-1) == {target})")
        out.append("return loss, accuracy")
    else:
        out.append("return loss")
    return "".join(f"{indent}{line}\n" for line in out)


def _pool(spec: Spec, hidden: str, axis: int) -> str:
    if spec.pool == "last":
        return f"{hidden}[-1]" if axis == 0 else f"{hidden}[:, -1]"
    fn = "jnp.mean" if spec.pool == "mean" else "jnp.max"
    return f"{fn}({hidden}, axis={axis})"


# --- plain JAX: gated RNNs ------------------------------------------------------------------


def _jax_rnn(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    lstm = spec.variant == "lstm"
    gates = 4 if lstm else 3
    directions = '("forward", "backward")' if spec.bidirectional else '("forward",)'
    emb = (
        '"embedding": jax.random.normal(next(keys), (config.vocab_size, config.input_size), dtype) * 0.02'
        if spec.inputs == "tokens"
        else ""
    )
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    mult = "2 * " if spec.bidirectional else ""
    if lstm:
        bias = '"bias": jnp.zeros((gates,)),'
    else:
        bias = '"b_ih": jnp.zeros((gates,)),\n                "b_hh": jnp.zeros((gates,)),'
    init = _t(
        '''
        def init_params(config: $cfg, key: jax.Array) -> dict:
            """Parameters: ${emb_doc}one $name per layer and direction (float32), and the output head."""
            dtype = jnp.dtype(config.dtype)
            keys = iter(jax.random.split(key, 2 + 2 * config.num_layers * $ndir))
            gates = $gates * config.hidden_size
            params = {$emb}
            in_size = config.input_size
            layers = []
            for _ in range(config.num_layers):
                layer = {}
                for direction in $directions:
                    layer[direction] = {
                        "w_ih": jax.random.normal(next(keys), (in_size, gates)) * in_size**-0.5,
                        "w_hh": jax.random.normal(next(keys), (config.hidden_size, gates)) * config.hidden_size**-0.5,
                        $bias
                    }
                layers.append(layer)
                in_size = ${mult}config.hidden_size
            params["layers"] = layers
            params["head"] = {
                "kernel": jax.random.normal(next(keys), (in_size, $out_dim), dtype) * in_size**-0.5,
                "bias": jnp.zeros(($out_dim,), dtype),
            }
            return params
        ''',
        cfg=cfg,
        emb_doc="the embedding, " if spec.inputs == "tokens" else "",
        name=spec.variant.upper(),
        ndir=2 if spec.bidirectional else 1,
        gates=gates,
        emb=emb,
        directions=directions,
        bias=bias,
        mult=mult,
        out_dim=out_dim,
    )
    pre = spec.precompute_inputs
    step_in = "gates_x" if pre else "x_t"
    if lstm:
        proj = 'gates_x + h @ params["w_hh"]' if pre else 'x_t @ params["w_ih"] + h @ params["w_hh"] + params["bias"]'
        step = _t(
            '''
            def lstm_step(params: dict, carry: tuple[jax.Array, jax.Array], $step_in: jax.Array):
                """One LSTM time step over a batch: gates i, f, g, o; returns the new (h, c) and h."""
                h, c = carry
                gates = $proj
                i, f, g, o = jnp.split(gates, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            ''',
            step_in=step_in,
            proj=proj,
        )
        init_carry = "(jnp.zeros((batch, hidden_size), jnp.float32), jnp.zeros((batch, hidden_size), jnp.float32))"
    else:
        gx = "gates_x" if pre else 'x_t @ params["w_ih"] + params["b_ih"]'
        step = _t(
            '''
            def gru_step(params: dict, h: jax.Array, $step_in: jax.Array):
                """One GRU time step over a batch (reset gate applied after the recurrent matmul)."""
                r_x, z_x, n_x = jnp.split($gx, 3, axis=-1)
                r_h, z_h, n_h = jnp.split(h @ params["w_hh"] + params["b_hh"], 3, axis=-1)
                r = jax.nn.sigmoid(r_x + r_h)
                z = jax.nn.sigmoid(z_x + z_h)
                n = jnp.tanh(n_x + r * n_h)
                h = (1.0 - z) * n + z * h
                return h, h
            ''',
            step_in=step_in,
            gx=gx,
        )
        init_carry = "jnp.zeros((batch, hidden_size), jnp.float32)"
    reverse_arg = spec.bidirectional and spec.reverse_idiom == "reverse"
    if pre:
        bias_add = '+ params["bias"]' if lstm else '+ params["b_ih"]'
        xs = "gates_x"
        proj_line = f'    gates_x = jnp.einsum("tbd,dg->tbg", inputs, params["w_ih"]) {bias_add}\n'
    else:
        xs = "inputs"
        proj_line = ""
    run = _t(
        '''
        def run_$v(params: dict, inputs: jax.Array$rev_sig) -> jax.Array:
            """Runs the $name over time-major ``inputs`` [seq, batch, features]; returns every hidden state."""
            batch = inputs.shape[1]
            hidden_size = params["w_hh"].shape[0]
        $proj_line    init = $init_carry
            _, outputs = lax.scan(functools.partial(${v}_step, params), init, $xs$rev_arg)
            return outputs
        ''',
        v=spec.variant,
        name=spec.variant.upper(),
        rev_sig=", reverse: bool = False" if reverse_arg else "",
        rev_arg=", reverse=reverse" if reverse_arg else "",
        proj_line=proj_line,
        init_carry=init_carry,
        xs=xs,
    )
    # the jitted function
    data_args, _, _ = _data_specs(spec)
    lines = []
    if spec.inputs == "tokens":
        lines.append('embedded = jnp.take(params["embedding"], tokens, axis=0)')
        lines.append("hidden = jnp.swapaxes(embedded, 0, 1).astype(jnp.float32)  # [seq, batch, features]")
    else:
        lines.append("hidden = jnp.swapaxes(features, 0, 1).astype(jnp.float32)  # [seq, batch, features]")
    lines.append('for layer in params["layers"]:')
    v = spec.variant
    if spec.bidirectional:
        lines.append(f'    forward_states = run_{v}(layer["forward"], hidden)')
        if spec.reverse_idiom == "reverse":
            lines.append(f'    backward_states = run_{v}(layer["backward"], hidden, reverse=True)')
        else:
            lines.append(f'    backward_states = jnp.flip(run_{v}(layer["backward"], jnp.flip(hidden, 0)), 0)')
        lines.append("    hidden = jnp.concatenate([forward_states, backward_states], axis=-1)")
    else:
        lines.append(f'    hidden = run_{v}(layer["forward"], hidden)')
    lines.append('head = params["head"]')
    if spec.head == "classifier":
        lines.append(f"pooled = {_pool(spec, 'hidden', 0)}")
        lines.append('pooled = pooled.astype(head["kernel"].dtype)')
        lines.append('logits = jnp.dot(pooled, head["kernel"], preferred_element_type=jnp.float32) + head["bias"]')
    else:
        lines.append('hidden = jnp.swapaxes(hidden, 0, 1).astype(head["kernel"].dtype)')
        lines.append('logits = jnp.dot(hidden, head["kernel"], preferred_element_type=jnp.float32) + head["bias"]')
    body = "".join(f"    {line}\n" for line in lines) + _loss_lines(spec)
    fn = f'def {spec.function_name}(params: dict, {data_args}, config: {cfg}):\n    """{_fn_doc(spec)}"""\n' + body
    return _join([init, step, run, fn])


def _fn_doc(spec: Spec) -> str:
    what = {
        "classifier": "class logits [batch, num_classes]",
        "tagger": "per-step class logits [batch, seq, num_classes]",
        "lm": "next-token logits [batch, seq, vocab]",
    }[spec.head]
    if spec.objective == "loss":
        extra = " and accuracy" if spec.function_name == "loss_and_accuracy" else ""
        return f"Mean cross-entropy{extra} of the model's {what.split(' [')[0]}."
    return f"The model's {what} (float32)."


def _example_args_jax(spec: Spec) -> str:
    data_args, data_lines, _ = _data_specs(spec)
    return _t(
        """
        def example_args():
            config = $cfg()
            params = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
        $data
            return params, $names, config
        """,
        cfg=_cfg_name(spec),
        data=textwrap.indent(data_lines, "    "),
        names=data_args,
    )


# --- plain JAX: state-space models -----------------------------------------------------------


def _norm_fn(spec: Spec) -> str:
    if spec.norm == "rms":
        return _t(
            """
            def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
                x32 = x.astype(jnp.float32)
                normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
                return (normed * weight).astype(x.dtype)
            """
        )
    return _t(
        """
        def layer_norm(x: jax.Array, params: dict, eps: float) -> jax.Array:
            x32 = x.astype(jnp.float32)
            mean = jnp.mean(x32, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
            normed = (x32 - mean) * lax.rsqrt(var + eps)
            return (normed * params["scale"] + params["bias"]).astype(x.dtype)
        """
    )


def _norm_params(spec: Spec, name: str, width: str = "config.d_model") -> str:
    if spec.norm == "rms":
        return f'"{name}": jnp.ones(({width},), jnp.float32),'
    return f'"{name}": {{"scale": jnp.ones(({width},), jnp.float32), "bias": jnp.zeros(({width},), jnp.float32)}},'


def _norm_call(spec: Spec, x: str, name: str) -> str:
    if spec.norm == "rms":
        return f"rms_norm({x}, {name}, config.norm_eps)"
    return f"layer_norm({x}, {name}, config.norm_eps)"


def _combine_fn() -> str:
    return _t(
        '''
        def combine(left: tuple[jax.Array, jax.Array], right: tuple[jax.Array, jax.Array]):
            """Composes two steps of h_t = a_t * h_{t-1} + b_t (the associative scan operator)."""
            a_left, b_left = left
            a_right, b_right = right
            return a_right * a_left, a_right * b_left + b_right
        '''
    )


def _linear_scan_fn(time_axis: int = 1) -> str:
    """``linear_scan(a, b)``: h_t = a_t * h_{t-1} + b_t along time, sequentially."""
    if time_axis == 1:
        return _t(
            '''
            def linear_scan(a: jax.Array, b: jax.Array) -> jax.Array:
                """h_t = a_t * h_{t-1} + b_t along axis 1 with a sequential scan; returns every h_t."""

                def step(h, inputs):
                    a_t, b_t = inputs
                    h = a_t * h + b_t
                    return h, h

                a_t, b_t = jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)
                _, states = lax.scan(step, jnp.zeros_like(b_t[0]), (a_t, b_t))
                return jnp.swapaxes(states, 0, 1)
            '''
        )
    return _t(
        '''
        def linear_scan(a: jax.Array, b: jax.Array) -> jax.Array:
            """h_t = a_t * h_{t-1} + b_t along axis 0 with a sequential scan; returns every h_t."""

            def step(h, inputs):
                a_t, b_t = inputs
                h = a_t * h + b_t
                return h, h

            _, states = lax.scan(step, jnp.zeros_like(b[0]), (a, b))
            return states
        '''
    )


def _causal_conv_jax(spec: Spec) -> str:
    if spec.conv_impl == "shift":
        return _t(
            '''
            def causal_conv1d(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
                """Depthwise causal convolution over time: x [batch, seq, channels], weight [width, channels]."""
                width, seq = weight.shape[0], x.shape[1]
                padded = jnp.pad(x, ((0, 0), (width - 1, 0), (0, 0)))
                out = sum(padded[:, k : k + seq] * weight[k] for k in range(width))
                return out + bias
            '''
        )
    return _t(
        '''
        def causal_conv1d(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
            """Depthwise causal convolution over time: x [batch, seq, channels], weight [width, channels]."""
            width = weight.shape[0]
            out = lax.conv_general_dilated(
                x,
                weight[:, None, :],
                window_strides=(1,),
                padding=[(width - 1, 0)],
                dimension_numbers=("NWC", "WIO", "NWC"),
                feature_group_count=x.shape[-1],
            )
            return out + bias
        '''
    )


def _jax_ssm_layer(spec: Spec) -> tuple[str, str, list[str]]:
    """``(init_layer source, block source, helper sources)`` of a plain-JAX SSM layer."""
    cfg = _cfg_name(spec)
    assoc = spec.scan_impl == "associative"
    helpers = [_norm_fn(spec)]
    v = spec.variant
    if v == "mamba":
        init = _t(
            '''
            def init_layer(config: $cfg, key: jax.Array) -> dict:
                """One Mamba block: in/out projections (config dtype), conv, and the float32 SSM parameters."""
                dtype = jnp.dtype(config.dtype)
                dt_rank = math.ceil(config.d_model / 16)
                k_in, k_conv, k_x, k_dt, k_out = jax.random.split(key, 5)
                a_init = jnp.broadcast_to(jnp.arange(1, config.state_size + 1, dtype=jnp.float32), (config.d_ff, config.state_size))
                return {
                    $norm
                    "in_proj": jax.random.normal(k_in, (config.d_model, 2 * config.d_ff), dtype) * config.d_model**-0.5,
                    "conv_weight": jax.random.normal(k_conv, (config.conv_width, config.d_ff), dtype) * config.conv_width**-0.5,
                    "conv_bias": jnp.zeros((config.d_ff,), dtype),
                    "x_proj": jax.random.normal(k_x, (config.d_ff, dt_rank + 2 * config.state_size), dtype) * config.d_ff**-0.5,
                    "dt_proj": jax.random.normal(k_dt, (dt_rank, config.d_ff), dtype) * dt_rank**-0.5,
                    "dt_bias": jnp.full((config.d_ff,), -4.0, jnp.float32),
                    "A_log": jnp.log(a_init),
                    "D": jnp.ones((config.d_ff,), jnp.float32),
                    "out_proj": jax.random.normal(k_out, (config.d_ff, config.d_model), dtype) * config.d_ff**-0.5,
                }
            ''',
            cfg=cfg,
            norm=_norm_params(spec, "norm"),
        )
        helpers.append(_causal_conv_jax(spec))
        if assoc:
            helpers.append(_combine_fn())
            scan = _t(
                '''
                def selective_scan(x, dt, A, B, C, D):
                    """Mamba's selective scan: h_t = exp(dt_t * A) h_{t-1} + dt_t B_t x_t, y_t = C_t h_t + D x_t.

                    x, dt: [batch, seq, d_inner]; A: [d_inner, state]; B, C: [batch, seq, state]; all float32.
                    """
                    dA = jnp.exp(dt[..., None] * A)  # [batch, seq, d_inner, state]
                    dBx = (dt * x)[..., None] * B[:, :, None, :]
                    _, states = lax.associative_scan(combine, (dA, dBx), axis=1)
                    y = jnp.einsum("bldn,bln->bld", states, C)
                    return y + x * D
                '''
            )
        else:
            scan = _t(
                '''
                def selective_scan(x, dt, A, B, C, D):
                    """Mamba's selective scan: h_t = exp(dt_t * A) h_{t-1} + dt_t B_t x_t, y_t = C_t h_t + D x_t.

                    x, dt: [batch, seq, d_inner]; A: [d_inner, state]; B, C: [batch, seq, state]; all float32.
                    The state [batch, d_inner, state] is carried step by step, never stored for all steps.
                    """

                    def step(h, inputs):
                        x_t, dt_t, B_t, C_t = inputs
                        dA = jnp.exp(dt_t[..., None] * A)
                        h = dA * h + (dt_t * x_t)[..., None] * B_t[:, None, :]
                        return h, jnp.einsum("bdn,bn->bd", h, C_t)

                    h0 = jnp.zeros((x.shape[0], x.shape[2], A.shape[-1]), jnp.float32)
                    xs = tuple(jnp.swapaxes(t, 0, 1) for t in (x, dt, B, C))
                    _, y = lax.scan(step, h0, xs)
                    return jnp.swapaxes(y, 0, 1) + x * D
                '''
            )
        helpers.append(scan)
        block = _t(
            '''
            def mamba_block(params: dict, hidden: jax.Array, config: $cfg) -> jax.Array:
                """Pre-norm Mamba block with a residual: in_proj, causal conv, selective SSM, SiLU gate, out_proj."""
                dt_rank = math.ceil(config.d_model / 16)
                x, z = jnp.split($norm_call @ params["in_proj"], 2, axis=-1)
                x = jax.nn.silu(causal_conv1d(x, params["conv_weight"], params["conv_bias"]))
                dt, B, C = jnp.split(x @ params["x_proj"], [dt_rank, dt_rank + config.state_size], axis=-1)
                dt = jax.nn.softplus((dt @ params["dt_proj"]).astype(jnp.float32) + params["dt_bias"])
                A = -jnp.exp(params["A_log"])
                y = selective_scan(
                    x.astype(jnp.float32), dt, A, B.astype(jnp.float32), C.astype(jnp.float32), params["D"]
                )
                y = y.astype(hidden.dtype) * jax.nn.silu(z)
                return hidden + y @ params["out_proj"]
            ''',
            cfg=cfg,
            norm_call=_norm_call(spec, "hidden", 'params["norm"]'),
        )
        return init, block, helpers
    if v == "rglru":
        init = _t(
            '''
            def init_layer(config: $cfg, key: jax.Array) -> dict:
                """One Griffin residual block: the RG-LRU temporal-mixing block and a gated MLP."""
                dtype = jnp.dtype(config.dtype)
                keys = jax.random.split(key, 8)
                d, w = config.d_model, config.hidden_size
                return {
                    $norm1
                    "linear_x": jax.random.normal(keys[0], (d, w), dtype) * d**-0.5,
                    "linear_y": jax.random.normal(keys[1], (d, w), dtype) * d**-0.5,
                    "conv_weight": jax.random.normal(keys[2], (config.conv_width, w), dtype) * config.conv_width**-0.5,
                    "conv_bias": jnp.zeros((w,), dtype),
                    "gate_x": jax.random.normal(keys[3], (w, w), dtype) * w**-0.5,
                    "gate_x_bias": jnp.zeros((w,), dtype),
                    "gate_a": jax.random.normal(keys[4], (w, w), dtype) * w**-0.5,
                    "gate_a_bias": jnp.zeros((w,), dtype),
                    "a_param": jnp.full((w,), 0.5, jnp.float32),
                    "linear_out": jax.random.normal(keys[5], (w, d), dtype) * w**-0.5,
                    $norm2
                    "mlp_up": jax.random.normal(keys[6], (d, 2, config.d_ff), dtype) * d**-0.5,
                    "mlp_down": jax.random.normal(keys[7], (config.d_ff, d), dtype) * config.d_ff**-0.5,
                }
            ''',
            cfg=cfg,
            norm1=_norm_params(spec, "temporal_norm"),
            norm2=_norm_params(spec, "mlp_norm"),
        )
        helpers.append(_causal_conv_jax(spec))
        if assoc:
            helpers.append(_combine_fn())
            run = "_, hidden = lax.associative_scan(combine, (a, normalized_x), axis=1)"
        else:
            helpers.append(_linear_scan_fn())
            run = "hidden = linear_scan(a, normalized_x)"
        helpers.append(
            _t(
                '''
                def rg_lru(params: dict, x: jax.Array) -> jax.Array:
                    """Real-Gated Linear Recurrent Unit: h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t).

                    The recurrence gate sets a_t = sigma(softplus(a_param))^(8 r_t), computed in log space.
                    """
                    x32 = x.astype(jnp.float32)  # the gates and the recurrence run in float32
                    gate_x = jax.nn.sigmoid(x32 @ params["gate_x"] + params["gate_x_bias"])
                    gate_a = jax.nn.sigmoid(x32 @ params["gate_a"] + params["gate_a_bias"])
                    log_a = -8.0 * gate_a * jax.nn.softplus(params["a_param"])
                    a = jnp.exp(log_a)
                    multiplier = jnp.sqrt(1.0 - jnp.exp(2.0 * log_a))
                    normalized_x = x32 * gate_x * multiplier
                    $run
                    return hidden.astype(x.dtype)
                ''',
                run=run,
            )
        )
        block = _t(
            '''
            def griffin_block(params: dict, hidden: jax.Array, config: $cfg) -> jax.Array:
                """Residual block: RG-LRU temporal mixing (GELU-gated branch), then a GeGLU MLP."""
                normed = $norm1
                y = jax.nn.gelu(normed @ params["linear_y"])
                x = causal_conv1d(normed @ params["linear_x"], params["conv_weight"], params["conv_bias"])
                hidden = hidden + (rg_lru(params, x) * y) @ params["linear_out"]
                normed = $norm2
                gate, up = jnp.unstack(jnp.einsum("bld,dkf->kblf", normed, params["mlp_up"]), axis=0)
                return hidden + (jax.nn.gelu(gate) * up) @ params["mlp_down"]
            ''',
            cfg=cfg,
            norm1=_norm_call(spec, "hidden", 'params["temporal_norm"]'),
            norm2=_norm_call(spec, "hidden", 'params["mlp_norm"]'),
        )
        return init, block, helpers
    # s4d / s5
    if assoc:
        helpers.append(_combine_fn())
    else:
        helpers.append(_linear_scan_fn())
    if v == "s4d":
        init = _t(
            '''
            def init_layer(config: $cfg, key: jax.Array) -> dict:
                """One S4D layer: per-channel diagonal SSMs (S4D-Lin init), float32, and an output projection."""
                k_b, k_c, k_out = jax.random.split(key, 3)
                n = config.state_size
                return {
                    $norm
                    "log_dt": jnp.linspace(math.log(1e-3), math.log(1e-1), config.d_model),
                    "A_log": jnp.log(jnp.full((config.d_model, n), 0.5)),
                    "A_imag": jnp.broadcast_to(math.pi * jnp.arange(n, dtype=jnp.float32), (config.d_model, n)),
                    "B": jax.random.normal(k_b, (config.d_model, n)) * n**-0.5,
                    "C": jax.random.normal(k_c, (config.d_model, n)) * n**-0.5,
                    "D": jnp.ones((config.d_model,), jnp.float32),
                    "out_proj": jax.random.normal(k_out, (config.d_model, 2 * config.d_model), jnp.dtype(config.dtype))
                    * config.d_model**-0.5,
                }
            ''',
            cfg=cfg,
            norm=_norm_params(spec, "norm"),
        )
        run = (
            "_, states = lax.associative_scan(combine, (dA, dBu), axis=1)" if assoc else "states = linear_scan(dA, dBu)"
        )
        helpers.append(
            _t(
                '''
                def s4d(params: dict, u: jax.Array) -> jax.Array:
                    """Diagonal SSM per channel, zero-order-hold discretized: u, y [batch, seq, d_model] float32.

                    A = -exp(A_log) + i A_imag is kept as its real part's decay and a rotation folded into C
                    (the real-valued S4D variant): dA = exp(dt A_re), dB = (dA - 1) / A_re * B.
                    """
                    dt = jnp.exp(params["log_dt"])[:, None]  # [d_model, 1]
                    A = -jnp.exp(params["A_log"])  # [d_model, state]
                    dA_step = jnp.exp(dt * A)
                    dB = (dA_step - 1.0) / A * params["B"]
                    C = params["C"] * jnp.cos(params["A_imag"] * dt)
                    dA = jnp.broadcast_to(dA_step, u.shape + dA_step.shape[-1:])
                    dBu = u[..., None] * dB
                    $run
                    return jnp.einsum("bldn,dn->bld", states, C) + u * params["D"]
                ''',
                run=run,
            )
        )
        block = _t(
            '''
            def s4d_block(params: dict, hidden: jax.Array, config: $cfg) -> jax.Array:
                """Pre-norm S4D block with a residual: SSM, GELU, then a GLU output projection."""
                u = $norm.astype(jnp.float32)
                y = jax.nn.gelu(s4d(params, u)).astype(hidden.dtype)
                y = jax.nn.glu(y @ params["out_proj"], axis=-1)
                return hidden + y
            ''',
            cfg=cfg,
            norm=_norm_call(spec, "hidden", 'params["norm"]'),
        )
        return init, block, helpers
    init = _t(
        '''
        def init_layer(config: $cfg, key: jax.Array) -> dict:
            """One S5 layer: a MIMO diagonal SSM with state_size states shared by all channels (float32)."""
            k_b, k_c, k_glu = jax.random.split(key, 3)
            p, h = config.state_size, config.d_model
            return {
                $norm
                "lambda_log": jnp.log(0.5 + jnp.arange(p, dtype=jnp.float32)),
                "log_step": jnp.full((p,), math.log(1e-2)),
                "B": jax.random.normal(k_b, (h, p)) * h**-0.5,
                "C": jax.random.normal(k_c, (p, h)) * p**-0.5,
                "D": jnp.ones((h,), jnp.float32),
                "glu": jax.random.normal(k_glu, (h, h), jnp.dtype(config.dtype)) * h**-0.5,
            }
        ''',
        cfg=cfg,
        norm=_norm_params(spec, "norm"),
    )
    run = (
        "_, states = lax.associative_scan(combine, (lambda_bar, bu), axis=1)"
        if assoc
        else "states = linear_scan(lambda_bar, bu)"
    )
    helpers.append(
        _t(
            '''
            def s5(params: dict, u: jax.Array) -> jax.Array:
                """S5 layer: x_t = Lambda_bar x_{t-1} + B_bar u_t, y_t = C x_t + D u_t (ZOH; u [batch, seq, d_model])."""
                lam = -jnp.exp(params["lambda_log"])  # [state]
                step = jnp.exp(params["log_step"])
                lambda_bar = jnp.exp(lam * step)
                b_bar = params["B"] * ((lambda_bar - 1.0) / lam)  # [d_model, state]
                bu = u @ b_bar  # [batch, seq, state]
                lambda_bar = jnp.broadcast_to(lambda_bar, bu.shape)
                $run
                return states @ params["C"] + u * params["D"]
            ''',
            run=run,
        )
    )
    block = _t(
        '''
        def s5_block(params: dict, hidden: jax.Array, config: $cfg) -> jax.Array:
            """Pre-norm S5 block with a residual: SSM, GELU, then a half-GLU gate."""
            u = $norm.astype(jnp.float32)
            y = jax.nn.gelu(s5(params, u)).astype(hidden.dtype)
            return hidden + y * jax.nn.sigmoid(y @ params["glu"])
        ''',
        cfg=cfg,
        norm=_norm_call(spec, "hidden", 'params["norm"]'),
    )
    return init, block, helpers


_BLOCK_NAMES = {"mamba": "mamba_block", "rglru": "griffin_block", "s4d": "s4d_block", "s5": "s5_block"}


def _jax_ssm(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    init_layer, block, helpers = _jax_ssm_layer(spec)
    stacked = spec.layer_loop == "scan"
    layers = (
        "jax.vmap(functools.partial(init_layer, config))(jax.random.split(k_layers, config.num_layers))"
        if stacked
        else "[init_layer(config, k) for k in jax.random.split(k_layers, config.num_layers)]"
    )
    if spec.inputs == "tokens":
        first = '"embedding": jax.random.normal(k_in, (config.vocab_size, config.d_model), dtype) * 0.02,'
    else:
        first = (
            '"encoder": jax.random.normal(k_in, (config.input_size, config.d_model), dtype) * config.input_size**-0.5,'
        )
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    head = (
        ""
        if spec.tie_embeddings
        else f'"head": jax.random.normal(k_head, (config.d_model, {out_dim}), dtype) * config.d_model**-0.5,'
    )
    init = _t(
        '''
        def init_params(config: $cfg, key: jax.Array) -> dict:
            """All parameters; the layers' are ${how}."""
            dtype = jnp.dtype(config.dtype)
            k_in, k_layers, k_head = jax.random.split(key, 3)
            params = {
                $first
                "layers": $layers,
                $final_norm
                $head
            }
            return params
        ''',
        cfg=cfg,
        how="stacked on a leading num_layers axis (for lax.scan)" if stacked else "a list, one dict per layer",
        first=first,
        layers=layers,
        final_norm=_norm_params(spec, "final_norm"),
        head=head,
    ).replace("\n        \n", "\n")
    init = "\n".join(line for line in init.splitlines() if line.strip()) + "\n"
    block_name = _BLOCK_NAMES[spec.variant]
    data_args, _, _ = _data_specs(spec)
    lines = []
    if spec.inputs == "tokens":
        lines.append('hidden = jnp.take(params["embedding"], tokens, axis=0)')
    else:
        lines.append('hidden = features.astype(jnp.dtype(config.dtype)) @ params["encoder"]')
    if stacked:
        lines.append("")
        lines.append("def body(hidden, layer_params):")
        lines.append(f"    return {block_name}(layer_params, hidden, config), None")
        lines.append("")
        if spec.remat:
            lines.append('hidden, _ = lax.scan(jax.checkpoint(body), hidden, params["layers"])')
        else:
            lines.append('hidden, _ = lax.scan(body, hidden, params["layers"])')
    else:
        lines.append('for layer_params in params["layers"]:')
        lines.append(f"    hidden = {block_name}(layer_params, hidden, config)")
    lines.append(f"hidden = {_norm_call(spec, 'hidden', 'params["final_norm"]')}")
    kernel = 'params["embedding"].T' if spec.tie_embeddings else 'params["head"]'
    if spec.head == "classifier":
        lines.append(f"pooled = {_pool(spec, 'hidden', 1)}")
        lines.append(f"logits = jnp.dot(pooled, {kernel}, preferred_element_type=jnp.float32)")
    else:
        lines.append(f"logits = jnp.dot(hidden, {kernel}, preferred_element_type=jnp.float32)")
    body = "".join(f"    {line}\n" if line else "\n" for line in lines) + _loss_lines(spec)
    fn = f'def {spec.function_name}(params: dict, {data_args}, config: {cfg}):\n    """{_fn_doc(spec)}"""\n' + body
    return _join(helpers + [init_layer, block, init, fn])


# --- Equinox ---------------------------------------------------------------------------------


def _eqx_rnn(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    lstm = spec.variant == "lstm"
    cell_cls = f"eqx.nn.{spec.cell}"
    mult = "2 * " if spec.bidirectional else ""
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    fields = []
    init_lines = []
    nkeys = "config.num_layers * 2 + 2" if spec.bidirectional else "config.num_layers + 2"
    init_lines.append(f"keys = iter(jax.random.split(key, {nkeys}))")
    init_lines.append("dtype = jnp.dtype(config.dtype)")
    if spec.inputs == "tokens":
        fields.append("embedding: eqx.nn.Embedding")
        init_lines.append(
            "self.embedding = eqx.nn.Embedding(config.vocab_size, config.input_size, dtype=dtype, key=next(keys))"
        )
    fields.append(f"cells: tuple[{cell_cls}, ...]")
    make = f"{cell_cls}(in_size, config.hidden_size, key=next(keys))"
    if spec.bidirectional:
        fields.append(f"backward_cells: tuple[{cell_cls}, ...]")
        init_lines += [
            "cells, backward_cells = [], []",
            "in_size = config.input_size",
            "for _ in range(config.num_layers):",
            f"    cells.append({make})",
            f"    backward_cells.append({make})",
            "    in_size = 2 * config.hidden_size",
            "self.cells = tuple(cells)",
            "self.backward_cells = tuple(backward_cells)",
        ]
    else:
        init_lines += [
            "sizes = [config.input_size] + [config.hidden_size] * (config.num_layers - 1)",
            f"self.cells = tuple({cell_cls}(n, config.hidden_size, key=next(keys)) for n in sizes)",
        ]
    fields.append("head: eqx.nn.Linear")
    init_lines.append(f"self.head = eqx.nn.Linear({mult}config.hidden_size, {out_dim}, dtype=dtype, key=next(keys))")
    if lstm:
        carry0 = "(jnp.zeros((cell.hidden_size,), jnp.float32), jnp.zeros((cell.hidden_size,), jnp.float32))"
        step_body = "            carry = cell(x_t, carry)\n            return carry, carry[0]\n"
    else:
        carry0 = "jnp.zeros((cell.hidden_size,), jnp.float32)"
        step_body = "            h = cell(x_t, h)\n            return h, h\n"
    carry_name = "carry" if lstm else "h"
    rev = spec.bidirectional and spec.reverse_idiom == "reverse"
    scan_fn = (
        f"    @staticmethod\n"
        f"    def _scan(cell: {cell_cls}, inputs: jax.Array{', reverse: bool = False' if rev else ''}) -> jax.Array:\n"
        f'        """Runs ``cell`` over ``inputs`` [seq, features]; returns every hidden state."""\n\n'
        f"        def step({carry_name}, x_t):\n"
        f"{step_body}\n"
        f"        _, states = lax.scan(step, {carry0}, inputs{', reverse=reverse' if rev else ''})\n"
        f"        return states\n"
    )
    call = []
    if spec.inputs == "tokens":
        call.append("hidden = jax.vmap(self.embedding)(tokens).astype(jnp.float32)")
    else:
        call.append("hidden = features.astype(jnp.float32)")
    if spec.bidirectional:
        call.append("for cell, backward_cell in zip(self.cells, self.backward_cells):")
        call.append("    forward_states = self._scan(cell, hidden)")
        if rev:
            call.append("    backward_states = self._scan(backward_cell, hidden, reverse=True)")
        else:
            call.append("    backward_states = jnp.flip(self._scan(backward_cell, jnp.flip(hidden, 0)), 0)")
        call.append("    hidden = jnp.concatenate([forward_states, backward_states], axis=-1)")
    else:
        call.append("for cell in self.cells:")
        call.append("    hidden = self._scan(cell, hidden)")
    if spec.head == "classifier":
        call.append(f"return self.head({_pool(spec, 'hidden', 0)})")
    else:
        call.append("return jax.vmap(self.head)(hidden)")
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    cls_name = {"classifier": "Classifier", "tagger": "Tagger", "lm": "LanguageModel"}[spec.head]
    cls_name = f"{spec.variant.upper()}{cls_name}"
    nl = "\n"
    cls = (
        f"class {cls_name}(eqx.Module):\n"
        f'    """{"Bidirectional " if spec.bidirectional else ""}{spec.variant.upper()} {_purpose(spec).split(":")[0]}'
        f' over one sequence (vmap it over a batch)."""\n\n'
        + "".join(f"    {f}\n" for f in fields)
        + f"\n    def __init__(self, config: {cfg}, key: jax.Array):\n"
        + "".join(f"        {line}\n" for line in init_lines)
        + "\n"
        + scan_fn
        + f"\n    def __call__(self, {data_in}: jax.Array) -> jax.Array:\n"
        + "".join(f"        {line}{nl}" for line in call)
    )
    fn = _eqx_fn(spec, cls_name)
    return _join([cls, fn, _eqx_example(spec, cls_name)])


def _eqx_fn(spec: Spec, cls_name: str) -> str:
    data_args, _, _ = _data_specs(spec)
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    return (
        f"def {spec.function_name}(params: {cls_name}, static: {cls_name}, {data_args}):\n"
        f'    """{_fn_doc(spec)}"""\n'
        f"    model = eqx.combine(params, static)\n"
        f"    logits = jax.vmap(model)({data_in}).astype(jnp.float32)\n" + _loss_lines(spec)
    )


def _eqx_example(spec: Spec, cls_name: str) -> str:
    data_args, data_lines, _ = _data_specs(spec)
    return _t(
        """
        def example_args():
            config = $cfg()
            model = eqx.filter_eval_shape($cls, config, jax.random.PRNGKey(0))
            params, static = eqx.partition(model, eqx.is_array)
        $data
            return params, static, $names
        """,
        cfg=_cfg_name(spec),
        cls=cls_name,
        data=textwrap.indent(data_lines, "    "),
        names=data_args,
    )


def _eqx_norm(spec: Spec, width: str = "config.d_model") -> str:
    if spec.norm == "rms":
        return f"eqx.nn.RMSNorm({width}, eps=config.norm_eps, use_bias=False)"
    return f"eqx.nn.LayerNorm({width}, eps=config.norm_eps)"


def _eqx_ssm(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    v = spec.variant
    assoc = spec.scan_impl == "associative"
    norm_t = "eqx.nn.RMSNorm" if spec.norm == "rms" else "eqx.nn.LayerNorm"
    helpers = []
    if assoc:
        helpers.append(_combine_fn())
    else:
        helpers.append(_linear_scan_fn(time_axis=0))
    run = "lax.associative_scan(combine, ({a}, {b}))[1]" if assoc else "linear_scan({a}, {b})"
    if v == "mamba":
        block_name = "MambaBlock"
        if assoc:
            ssm = _t(
                """
                dA = jnp.exp(dt[..., None] * A)  # [seq, d_inner, state]
                dBx = (dt * x)[..., None] * B[:, None, :]
                states = $run
                y = jnp.einsum("ldn,ln->ld", states, C) + x * self.D
                """,
                run=run.format(a="dA", b="dBx"),
            )
        else:
            ssm = _t(
                """
                def step(h, inputs):
                    x_t, dt_t, B_t, C_t = inputs
                    h = jnp.exp(dt_t[:, None] * A) * h + (dt_t * x_t)[:, None] * B_t[None, :]
                    return h, h @ C_t

                h0 = jnp.zeros((x.shape[-1], self.state_size), jnp.float32)
                _, y = lax.scan(step, h0, (x, dt, B, C))
                y = y + x * self.D
                """
            )
        block = _t(
            '''
            class MambaBlock(eqx.Module):
                """Pre-norm Mamba block with a residual, over one sequence [seq, d_model]."""

                norm: $norm_t
                in_proj: eqx.nn.Linear
                conv: eqx.nn.Conv1d
                x_proj: eqx.nn.Linear
                dt_proj: eqx.nn.Linear
                out_proj: eqx.nn.Linear
                A_log: jax.Array
                D: jax.Array
                state_size: int = eqx.field(static=True)
                dt_rank: int = eqx.field(static=True)

                def __init__(self, config: $cfg, key: jax.Array):
                    dtype = jnp.dtype(config.dtype)
                    k_in, k_conv, k_x, k_dt, k_out = jax.random.split(key, 5)
                    self.state_size = config.state_size
                    self.dt_rank = math.ceil(config.d_model / 16)
                    self.norm = $norm
                    self.in_proj = eqx.nn.Linear(config.d_model, 2 * config.d_ff, use_bias=False, dtype=dtype, key=k_in)
                    self.conv = eqx.nn.Conv1d(
                        config.d_ff,
                        config.d_ff,
                        config.conv_width,
                        padding=((config.conv_width - 1, 0),),
                        groups=config.d_ff,
                        dtype=dtype,
                        key=k_conv,
                    )
                    self.x_proj = eqx.nn.Linear(
                        config.d_ff, self.dt_rank + 2 * config.state_size, use_bias=False, dtype=dtype, key=k_x
                    )
                    self.dt_proj = eqx.nn.Linear(self.dt_rank, config.d_ff, dtype=jnp.float32, key=k_dt)
                    self.out_proj = eqx.nn.Linear(config.d_ff, config.d_model, use_bias=False, dtype=dtype, key=k_out)
                    self.A_log = jnp.log(
                        jnp.broadcast_to(jnp.arange(1, config.state_size + 1, dtype=jnp.float32), (config.d_ff, config.state_size))
                    )
                    self.D = jnp.ones((config.d_ff,), jnp.float32)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    x, z = jnp.split(jax.vmap(self.in_proj)(jax.vmap(self.norm)(hidden)), 2, axis=-1)
                    x = jax.nn.silu(self.conv(x.T).T)  # Conv1d takes [channels, seq]
                    dt, B, C = jnp.split(jax.vmap(self.x_proj)(x), [self.dt_rank, self.dt_rank + self.state_size], axis=-1)
                    dt = jax.nn.softplus(jax.vmap(self.dt_proj)(dt.astype(jnp.float32)))
                    A = -jnp.exp(self.A_log)
                    x, B, C = x.astype(jnp.float32), B.astype(jnp.float32), C.astype(jnp.float32)
            $ssm
                    y = y.astype(hidden.dtype) * jax.nn.silu(z)
                    return hidden + jax.vmap(self.out_proj)(y)
            ''',
            cfg=cfg,
            norm_t=norm_t,
            norm=_eqx_norm(spec),
            ssm=textwrap.indent(ssm, "        ").rstrip("\n"),
        )
    elif v == "rglru":
        block_name = "GriffinBlock"
        block = _t(
            '''
            class GriffinBlock(eqx.Module):
                """Griffin residual block over one sequence: RG-LRU temporal mixing, then a GeGLU MLP."""

                temporal_norm: $norm_t
                linear_x: eqx.nn.Linear
                linear_y: eqx.nn.Linear
                conv: eqx.nn.Conv1d
                gate_x: eqx.nn.Linear
                gate_a: eqx.nn.Linear
                a_param: jax.Array
                linear_out: eqx.nn.Linear
                mlp_norm: $norm_t
                mlp_gate: eqx.nn.Linear
                mlp_up: eqx.nn.Linear
                mlp_down: eqx.nn.Linear

                def __init__(self, config: $cfg, key: jax.Array):
                    dtype = jnp.dtype(config.dtype)
                    keys = jax.random.split(key, 9)
                    d, w = config.d_model, config.hidden_size
                    self.temporal_norm = $norm
                    self.linear_x = eqx.nn.Linear(d, w, dtype=dtype, key=keys[0])
                    self.linear_y = eqx.nn.Linear(d, w, dtype=dtype, key=keys[1])
                    self.conv = eqx.nn.Conv1d(
                        w, w, config.conv_width, padding=((config.conv_width - 1, 0),), groups=w, dtype=dtype, key=keys[2]
                    )
                    self.gate_x = eqx.nn.Linear(w, w, dtype=dtype, key=keys[3])
                    self.gate_a = eqx.nn.Linear(w, w, dtype=dtype, key=keys[4])
                    self.a_param = jnp.full((w,), 0.5, jnp.float32)
                    self.linear_out = eqx.nn.Linear(w, d, dtype=dtype, key=keys[5])
                    self.mlp_norm = $norm
                    self.mlp_gate = eqx.nn.Linear(d, config.d_ff, dtype=dtype, key=keys[6])
                    self.mlp_up = eqx.nn.Linear(d, config.d_ff, dtype=dtype, key=keys[7])
                    self.mlp_down = eqx.nn.Linear(config.d_ff, d, dtype=dtype, key=keys[8])

                def rg_lru(self, x: jax.Array) -> jax.Array:
                    """h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t), a_t = sigma(softplus(a))^(8 r_t)."""
                    x32 = x.astype(jnp.float32)  # the gates and the recurrence run in float32
                    gate_x = jax.nn.sigmoid(jax.vmap(self.gate_x)(x32))
                    gate_a = jax.nn.sigmoid(jax.vmap(self.gate_a)(x32))
                    log_a = -8.0 * gate_a * jax.nn.softplus(self.a_param)
                    a = jnp.exp(log_a)
                    normalized_x = x32 * gate_x * jnp.sqrt(1.0 - jnp.exp(2.0 * log_a))
                    return $run.astype(x.dtype)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    normed = jax.vmap(self.temporal_norm)(hidden)
                    y = jax.nn.gelu(jax.vmap(self.linear_y)(normed))
                    x = self.conv(jax.vmap(self.linear_x)(normed).T).T  # Conv1d takes [channels, seq]
                    hidden = hidden + jax.vmap(self.linear_out)(self.rg_lru(x) * y)
                    normed = jax.vmap(self.mlp_norm)(hidden)
                    mlp = jax.nn.gelu(jax.vmap(self.mlp_gate)(normed)) * jax.vmap(self.mlp_up)(normed)
                    return hidden + jax.vmap(self.mlp_down)(mlp)
            ''',
            cfg=cfg,
            norm_t=norm_t,
            norm=_eqx_norm(spec),
            run=run.format(a="a", b="normalized_x"),
        )
    elif v == "s4d":
        block_name = "S4DBlock"
        block = _t(
            '''
            class S4DBlock(eqx.Module):
                """Pre-norm S4D block over one sequence: diagonal SSM per channel, GELU, GLU projection."""

                norm: $norm_t
                log_dt: jax.Array
                A_log: jax.Array
                B: jax.Array
                C: jax.Array
                D: jax.Array
                out_proj: eqx.nn.Linear

                def __init__(self, config: $cfg, key: jax.Array):
                    k_b, k_c, k_out = jax.random.split(key, 3)
                    d, n = config.d_model, config.state_size
                    self.norm = $norm
                    self.log_dt = jnp.linspace(math.log(1e-3), math.log(1e-1), d)
                    self.A_log = jnp.log(jnp.full((d, n), 0.5))
                    self.B = jax.random.normal(k_b, (d, n)) * n**-0.5
                    self.C = jax.random.normal(k_c, (d, n)) * n**-0.5
                    self.D = jnp.ones((d,), jnp.float32)
                    self.out_proj = eqx.nn.Linear(d, 2 * d, dtype=jnp.dtype(config.dtype), key=k_out)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    u = jax.vmap(self.norm)(hidden).astype(jnp.float32)  # [seq, d_model]
                    dt = jnp.exp(self.log_dt)[:, None]
                    A = -jnp.exp(self.A_log)
                    dA = jnp.exp(dt * A)  # zero-order hold
                    dB = (dA - 1.0) / A * self.B
                    states = $run  # [seq, d_model, state]
                    y = jnp.einsum("ldn,dn->ld", states, self.C) + u * self.D
                    y = jax.nn.gelu(y).astype(hidden.dtype)
                    return hidden + jax.nn.glu(jax.vmap(self.out_proj)(y), axis=-1)
            ''',
            cfg=cfg,
            norm_t=norm_t,
            norm=_eqx_norm(spec),
            run=run.format(a="jnp.broadcast_to(dA, u.shape + dA.shape[-1:])", b="u[..., None] * dB"),
        )
    else:
        block_name = "S5Block"
        block = _t(
            '''
            class S5Block(eqx.Module):
                """Pre-norm S5 block over one sequence: MIMO diagonal SSM, GELU, half-GLU gate."""

                norm: $norm_t
                lambda_log: jax.Array
                log_step: jax.Array
                B: jax.Array
                C: jax.Array
                D: jax.Array
                glu: eqx.nn.Linear

                def __init__(self, config: $cfg, key: jax.Array):
                    k_b, k_c, k_glu = jax.random.split(key, 3)
                    p, h = config.state_size, config.d_model
                    self.norm = $norm
                    self.lambda_log = jnp.log(0.5 + jnp.arange(p, dtype=jnp.float32))
                    self.log_step = jnp.full((p,), math.log(1e-2))
                    self.B = jax.random.normal(k_b, (h, p)) * h**-0.5
                    self.C = jax.random.normal(k_c, (p, h)) * p**-0.5
                    self.D = jnp.ones((h,), jnp.float32)
                    self.glu = eqx.nn.Linear(h, h, use_bias=False, dtype=jnp.dtype(config.dtype), key=k_glu)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    u = jax.vmap(self.norm)(hidden).astype(jnp.float32)
                    lam = -jnp.exp(self.lambda_log)
                    lambda_bar = jnp.exp(lam * jnp.exp(self.log_step))
                    bu = u @ (self.B * ((lambda_bar - 1.0) / lam))  # [seq, state]
                    states = $run
                    y = jax.nn.gelu(states @ self.C + u * self.D).astype(hidden.dtype)
                    return hidden + y * jax.nn.sigmoid(jax.vmap(self.glu)(y))
            ''',
            cfg=cfg,
            norm_t=norm_t,
            norm=_eqx_norm(spec),
            run=run.format(a="jnp.broadcast_to(lambda_bar, bu.shape)", b="bu"),
        )
    # the model
    stacked = spec.layer_loop == "scan"
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    fields = []
    init_lines = ["dtype = jnp.dtype(config.dtype)", "k_in, k_layers, k_head = jax.random.split(key, 3)"]
    if spec.inputs == "tokens":
        fields.append("embedding: eqx.nn.Embedding")
        init_lines.append("self.embedding = eqx.nn.Embedding(config.vocab_size, config.d_model, dtype=dtype, key=k_in)")
    else:
        fields.append("encoder: eqx.nn.Linear")
        init_lines.append("self.encoder = eqx.nn.Linear(config.input_size, config.d_model, dtype=dtype, key=k_in)")
    if stacked:
        fields.append(f"layers: {block_name}  # stacked: every array has a leading num_layers axis")
        init_lines.append("layer_keys = jax.random.split(k_layers, config.num_layers)")
        init_lines.append(f"self.layers = eqx.filter_vmap(lambda k: {block_name}(config, k))(layer_keys)")
    else:
        fields.append(f"layers: tuple[{block_name}, ...]")
        init_lines.append(
            f"self.layers = tuple({block_name}(config, k) for k in jax.random.split(k_layers, config.num_layers))"
        )
    fields.append(f"final_norm: {norm_t}")
    init_lines.append(f"self.final_norm = {_eqx_norm(spec)}")
    if not spec.tie_embeddings:
        fields.append("head: eqx.nn.Linear")
        init_lines.append(
            f"self.head = eqx.nn.Linear(config.d_model, {out_dim}, use_bias=False, dtype=dtype, key=k_head)"
        )
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    call = []
    if spec.inputs == "tokens":
        call.append("hidden = jax.vmap(self.embedding)(tokens)")
    else:
        call.append("hidden = jax.vmap(self.encoder)(features)")
    if stacked:
        call += [
            "dynamic, static = eqx.partition(self.layers, eqx.is_array)",
            "",
            "def body(hidden, layer_params):",
            "    layer = eqx.combine(layer_params, static)",
            "    return layer(hidden), None",
            "",
            f"hidden, _ = lax.scan({'jax.checkpoint(body)' if spec.remat else 'body'}, hidden, dynamic)",
        ]
    else:
        call += ["for layer in self.layers:", "    hidden = layer(hidden)"]
    call.append("hidden = jax.vmap(self.final_norm)(hidden)")
    if spec.head == "classifier":
        call.append(f"hidden = {_pool(spec, 'hidden', 0)}")
        call.append("return self.head(hidden)" if not spec.tie_embeddings else "return self.embedding.weight @ hidden")
    elif spec.tie_embeddings:
        call.append("return hidden @ self.embedding.weight.T")
    else:
        call.append("return jax.vmap(self.head)(hidden)")
    cls_name = {"classifier": "Classifier", "tagger": "Tagger", "lm": "LM"}[spec.head]
    cls_name = {"mamba": "Mamba", "rglru": "Griffin", "s4d": "S4D", "s5": "S5"}[v] + cls_name
    cls = (
        f"class {cls_name}(eqx.Module):\n"
        f'    """{_TITLES[v]} {_purpose(spec).split(":")[0]} over one sequence (vmap it over a batch)."""\n\n'
        + "".join(f"    {f}\n" for f in fields)
        + f"\n    def __init__(self, config: {cfg}, key: jax.Array):\n"
        + "".join(f"        {line}\n" for line in init_lines)
        + f"\n    def __call__(self, {data_in}: jax.Array) -> jax.Array:\n"
        + "".join(f"        {line}\n" if line else "\n" for line in call)
    )
    return _join(helpers + [block, cls, _eqx_fn(spec, cls_name), _eqx_example(spec, cls_name)])


# --- Flax NNX ---------------------------------------------------------------------------------


def _nnx_fn(spec: Spec, cls_name: str) -> str:
    data_args, _, _ = _data_specs(spec)
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    return (
        f"def {spec.function_name}(graphdef: nnx.GraphDef, state: nnx.State, {data_args}):\n"
        f'    """{_fn_doc(spec)}"""\n'
        f"    model = nnx.merge(graphdef, state)\n"
        f"    logits = model({data_in}).astype(jnp.float32)\n" + _loss_lines(spec)
    )


def _nnx_example(spec: Spec, cls_name: str) -> str:
    data_args, data_lines, _ = _data_specs(spec)
    return _t(
        """
        def example_args():
            config = $cfg()
            graphdef, state = nnx.split(nnx.eval_shape(lambda: $cls(config, rngs=nnx.Rngs(0))))
        $data
            return graphdef, state, $names
        """,
        cfg=_cfg_name(spec),
        cls=cls_name,
        data=textwrap.indent(data_lines, "    "),
        names=data_args,
    )


def _nnx_rnn(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    lstm = spec.variant == "lstm"
    cell = f"nnx.{spec.cell}"
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    mult = "2 * " if spec.bidirectional else ""
    init = ["dtype = jnp.dtype(config.dtype)"]
    if spec.inputs == "tokens":
        init.append(
            "self.embedding = nnx.Embed(config.vocab_size, config.input_size, dtype=dtype, param_dtype=dtype, rngs=rngs)"
        )
    init.append("self.hidden_size = config.hidden_size")
    init.append("sizes = [config.input_size] + [" + mult + "config.hidden_size] * (config.num_layers - 1)")
    init.append(
        f"self.layers = nnx.List([nnx.RNN({cell}(n, config.hidden_size, rngs=rngs), rngs=False) for n in sizes])"
    )
    if spec.bidirectional:
        if spec.reverse_idiom == "reverse":
            bwd = f"nnx.RNN({cell}(n, config.hidden_size, rngs=rngs), reverse=True, keep_order=True, rngs=False)"
        else:
            bwd = f"nnx.RNN({cell}(n, config.hidden_size, rngs=rngs), rngs=False)"
        init.append(f"self.backward_layers = nnx.List([{bwd} for n in sizes])")
    init.append(
        f"self.head = nnx.Linear({mult}config.hidden_size, {out_dim}, dtype=dtype, param_dtype=dtype, "
        "preferred_element_type=jnp.float32, rngs=rngs)"
    )
    call = []
    if spec.inputs == "tokens":
        call.append("hidden = self.embedding(tokens).astype(jnp.float32)")
    else:
        call.append("hidden = features.astype(jnp.float32)")
    call.append("zeros = jnp.zeros((hidden.shape[0], self.hidden_size), jnp.float32)")
    carry = "(zeros, zeros)" if lstm else "zeros"
    if spec.bidirectional:
        call.append("for rnn, backward_rnn in zip(self.layers, self.backward_layers):")
        call.append(f"    forward_states = rnn(hidden, initial_carry={carry})")
        if spec.reverse_idiom == "reverse":
            call.append(f"    backward_states = backward_rnn(hidden, initial_carry={carry})")
        else:
            call.append(f"    backward_states = jnp.flip(backward_rnn(jnp.flip(hidden, 1), initial_carry={carry}), 1)")
        call.append("    hidden = jnp.concatenate([forward_states, backward_states], axis=-1)")
    else:
        call.append("for rnn in self.layers:")
        call.append(f"    hidden = rnn(hidden, initial_carry={carry})")
    if spec.head == "classifier":
        call.append(f"return self.head({_pool(spec, 'hidden', 1)})")
    else:
        call.append("return self.head(hidden)")
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    cls_name = {"classifier": "Classifier", "tagger": "Tagger", "lm": "LanguageModel"}[spec.head]
    cls_name = f"{spec.variant.upper()}{cls_name}"
    doc = f"{'Bidirectional' if spec.bidirectional else 'Stacked'} {spec.variant.upper()} "
    cls = (
        f"class {cls_name}(nnx.Module):\n"
        f'    """{doc}{_purpose(spec).split(":")[0]}: nnx.RNN layers over [batch, seq, features]."""\n\n'
        f"    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):\n"
        + "".join(f"        {line}\n" for line in init)
        + f"\n    def __call__(self, {data_in}: jax.Array) -> jax.Array:\n"
        + "".join(f"        {line}\n" for line in call)
    )
    return _join([cls, _nnx_fn(spec, cls_name), _nnx_example(spec, cls_name)])


def _nnx_norm(spec: Spec, width: str = "config.d_model") -> str:
    if spec.norm == "rms":
        return f"nnx.RMSNorm({width}, epsilon=config.norm_eps, rngs=rngs)"
    return f"nnx.LayerNorm({width}, epsilon=config.norm_eps, rngs=rngs)"


def _nnx_ssm(spec: Spec) -> str:
    cfg = _cfg_name(spec)
    v = spec.variant
    assoc = spec.scan_impl == "associative"
    helpers = [_combine_fn() if assoc else _linear_scan_fn(time_axis=1)]
    run = "lax.associative_scan(combine, ({a}, {b}), axis=1)[1]" if assoc else "linear_scan({a}, {b})"
    lin = "dtype=dtype, param_dtype=dtype, rngs=rngs"
    if v == "mamba":
        block_name = "MambaBlock"
        if assoc:
            ssm = _t(
                """
                dA = jnp.exp(dt[..., None] * A)  # [batch, seq, d_inner, state]
                dBx = (dt * x)[..., None] * B[:, :, None, :]
                states = $run
                y = jnp.einsum("bldn,bln->bld", states, C) + x * self.D[...]
                """,
                run=run.format(a="dA", b="dBx"),
            )
        else:
            ssm = _t(
                """
                def step(h, inputs):
                    x_t, dt_t, B_t, C_t = inputs
                    h = jnp.exp(dt_t[..., None] * A) * h + (dt_t * x_t)[..., None] * B_t[:, None, :]
                    return h, jnp.einsum("bdn,bn->bd", h, C_t)

                h0 = jnp.zeros((x.shape[0], x.shape[-1], self.state_size), jnp.float32)
                _, y = lax.scan(step, h0, tuple(jnp.swapaxes(t, 0, 1) for t in (x, dt, B, C)))
                y = jnp.swapaxes(y, 0, 1) + x * self.D[...]
                """
            )
        block = _t(
            '''
            class MambaBlock(nnx.Module):
                """Pre-norm Mamba block with a residual: in_proj, causal conv, selective SSM, SiLU gate."""

                def __init__(self, config: $cfg, *, rngs: nnx.Rngs):
                    dtype = jnp.dtype(config.dtype)
                    self.state_size = config.state_size
                    self.dt_rank = math.ceil(config.d_model / 16)
                    self.norm = $norm
                    self.in_proj = nnx.Linear(config.d_model, 2 * config.d_ff, use_bias=False, $lin)
                    self.conv = nnx.Conv(
                        config.d_ff,
                        config.d_ff,
                        kernel_size=(config.conv_width,),
                        padding=((config.conv_width - 1, 0),),
                        feature_group_count=config.d_ff,
                        $lin,
                    )
                    self.x_proj = nnx.Linear(config.d_ff, self.dt_rank + 2 * config.state_size, use_bias=False, $lin)
                    self.dt_proj = nnx.Linear(self.dt_rank, config.d_ff, rngs=rngs)
                    self.out_proj = nnx.Linear(config.d_ff, config.d_model, use_bias=False, $lin)
                    a_init = jnp.arange(1, config.state_size + 1, dtype=jnp.float32)
                    self.A_log = nnx.Param(jnp.log(jnp.broadcast_to(a_init, (config.d_ff, config.state_size))))
                    self.D = nnx.Param(jnp.ones((config.d_ff,), jnp.float32))

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    x, z = jnp.split(self.in_proj(self.norm(hidden)), 2, axis=-1)
                    x = jax.nn.silu(self.conv(x))
                    dt, B, C = jnp.split(self.x_proj(x), [self.dt_rank, self.dt_rank + self.state_size], axis=-1)
                    dt = jax.nn.softplus(self.dt_proj(dt.astype(jnp.float32)))
                    A = -jnp.exp(self.A_log[...])
                    x, B, C = x.astype(jnp.float32), B.astype(jnp.float32), C.astype(jnp.float32)
            $ssm
                    y = y.astype(hidden.dtype) * jax.nn.silu(z)
                    return hidden + self.out_proj(y)
            ''',
            cfg=cfg,
            norm=_nnx_norm(spec),
            lin=lin,
            ssm=textwrap.indent(ssm, "        ").rstrip("\n"),
        )
    elif v == "rglru":
        block_name = "GriffinBlock"
        block = _t(
            '''
            class GriffinBlock(nnx.Module):
                """Griffin residual block: RG-LRU temporal mixing (GELU-gated branch), then a GeGLU MLP."""

                def __init__(self, config: $cfg, *, rngs: nnx.Rngs):
                    dtype = jnp.dtype(config.dtype)
                    d, w = config.d_model, config.hidden_size
                    self.temporal_norm = $norm
                    self.linear_x = nnx.Linear(d, w, $lin)
                    self.linear_y = nnx.Linear(d, w, $lin)
                    self.conv = nnx.Conv(
                        w, w, kernel_size=(config.conv_width,), padding=((config.conv_width - 1, 0),), feature_group_count=w, $lin
                    )
                    # the gates compute in float32 (bfloat16 parameters are promoted)
                    self.gate_x = nnx.Linear(w, w, dtype=jnp.float32, param_dtype=dtype, rngs=rngs)
                    self.gate_a = nnx.Linear(w, w, dtype=jnp.float32, param_dtype=dtype, rngs=rngs)
                    self.a_param = nnx.Param(jnp.full((w,), 0.5, jnp.float32))
                    self.linear_out = nnx.Linear(w, d, $lin)
                    self.mlp_norm = $norm
                    self.mlp_gate = nnx.Linear(d, config.d_ff, $lin)
                    self.mlp_up = nnx.Linear(d, config.d_ff, $lin)
                    self.mlp_down = nnx.Linear(config.d_ff, d, $lin)

                def rg_lru(self, x: jax.Array) -> jax.Array:
                    """h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t), a_t = sigma(softplus(a))^(8 r_t)."""
                    x32 = x.astype(jnp.float32)
                    gate_x = jax.nn.sigmoid(self.gate_x(x32))
                    gate_a = jax.nn.sigmoid(self.gate_a(x32))
                    log_a = -8.0 * gate_a * jax.nn.softplus(self.a_param[...])
                    a = jnp.exp(log_a)
                    normalized_x = x32 * gate_x * jnp.sqrt(1.0 - jnp.exp(2.0 * log_a))
                    return $run.astype(x.dtype)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    normed = self.temporal_norm(hidden)
                    y = jax.nn.gelu(self.linear_y(normed))
                    x = self.conv(self.linear_x(normed))
                    hidden = hidden + self.linear_out(self.rg_lru(x) * y)
                    normed = self.mlp_norm(hidden)
                    return hidden + self.mlp_down(jax.nn.gelu(self.mlp_gate(normed)) * self.mlp_up(normed))
            ''',
            cfg=cfg,
            norm=_nnx_norm(spec),
            lin=lin,
            run=run.format(a="a", b="normalized_x"),
        )
    elif v == "s4d":
        block_name = "S4DBlock"
        block = _t(
            '''
            class S4DBlock(nnx.Module):
                """Pre-norm S4D block: per-channel diagonal SSM (ZOH), GELU, GLU output projection."""

                def __init__(self, config: $cfg, *, rngs: nnx.Rngs):
                    d, n = config.d_model, config.state_size
                    self.norm = $norm
                    self.log_dt = nnx.Param(jnp.linspace(math.log(1e-3), math.log(1e-1), d))
                    self.A_log = nnx.Param(jnp.log(jnp.full((d, n), 0.5)))
                    self.B = nnx.Param(jax.random.normal(rngs.params(), (d, n)) * n**-0.5)
                    self.C = nnx.Param(jax.random.normal(rngs.params(), (d, n)) * n**-0.5)
                    self.D = nnx.Param(jnp.ones((d,), jnp.float32))
                    dtype = jnp.dtype(config.dtype)
                    self.out_proj = nnx.Linear(d, 2 * d, $lin)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    u = self.norm(hidden).astype(jnp.float32)  # [batch, seq, d_model]
                    dt = jnp.exp(self.log_dt[...])[:, None]
                    A = -jnp.exp(self.A_log[...])
                    dA = jnp.exp(dt * A)
                    dB = (dA - 1.0) / A * self.B[...]
                    states = $run
                    y = jnp.einsum("bldn,dn->bld", states, self.C[...]) + u * self.D[...]
                    y = jax.nn.gelu(y).astype(hidden.dtype)
                    return hidden + jax.nn.glu(self.out_proj(y), axis=-1)
            ''',
            cfg=cfg,
            norm=_nnx_norm(spec),
            lin=lin,
            run=run.format(a="jnp.broadcast_to(dA, u.shape + dA.shape[-1:])", b="u[..., None] * dB"),
        )
    else:
        block_name = "S5Block"
        block = _t(
            '''
            class S5Block(nnx.Module):
                """Pre-norm S5 block: MIMO diagonal SSM (ZOH) with shared states, GELU, half-GLU gate."""

                def __init__(self, config: $cfg, *, rngs: nnx.Rngs):
                    p, h = config.state_size, config.d_model
                    self.norm = $norm
                    self.lambda_log = nnx.Param(jnp.log(0.5 + jnp.arange(p, dtype=jnp.float32)))
                    self.log_step = nnx.Param(jnp.full((p,), math.log(1e-2)))
                    self.B = nnx.Param(jax.random.normal(rngs.params(), (h, p)) * h**-0.5)
                    self.C = nnx.Param(jax.random.normal(rngs.params(), (p, h)) * p**-0.5)
                    self.D = nnx.Param(jnp.ones((h,), jnp.float32))
                    dtype = jnp.dtype(config.dtype)
                    self.glu = nnx.Linear(h, h, use_bias=False, $lin)

                def __call__(self, hidden: jax.Array) -> jax.Array:
                    u = self.norm(hidden).astype(jnp.float32)
                    lam = -jnp.exp(self.lambda_log[...])
                    lambda_bar = jnp.exp(lam * jnp.exp(self.log_step[...]))
                    bu = u @ (self.B[...] * ((lambda_bar - 1.0) / lam))  # [batch, seq, state]
                    states = $run
                    y = jax.nn.gelu(states @ self.C[...] + u * self.D[...]).astype(hidden.dtype)
                    return hidden + y * jax.nn.sigmoid(self.glu(y))
            ''',
            cfg=cfg,
            norm=_nnx_norm(spec),
            lin=lin,
            run=run.format(a="jnp.broadcast_to(lambda_bar, bu.shape)", b="bu"),
        )
    out_dim = "config.vocab_size" if spec.head == "lm" else "config.num_classes"
    init = ["dtype = jnp.dtype(config.dtype)"]
    if spec.inputs == "tokens":
        init.append(f"self.embedding = nnx.Embed(config.vocab_size, config.d_model, {lin})")
    else:
        init.append(f"self.encoder = nnx.Linear(config.input_size, config.d_model, {lin})")
    init.append(f"self.layers = nnx.List([{block_name}(config, rngs=rngs) for _ in range(config.num_layers)])")
    init.append(f"self.final_norm = {_nnx_norm(spec)}")
    if not spec.tie_embeddings:
        init.append(
            f"self.head = nnx.Linear(config.d_model, {out_dim}, use_bias=False, {lin}, "
            "preferred_element_type=jnp.float32)"
        )
    call = ["hidden = self.embedding(tokens)" if spec.inputs == "tokens" else "hidden = self.encoder(features)"]
    call += ["for layer in self.layers:", "    hidden = layer(hidden)", "hidden = self.final_norm(hidden)"]
    if spec.head == "classifier":
        call.append(f"hidden = {_pool(spec, 'hidden', 1)}")
    call.append("return self.embedding.attend(hidden)" if spec.tie_embeddings else "return self.head(hidden)")
    data_in = "tokens" if spec.inputs == "tokens" else "features"
    cls_name = {"classifier": "Classifier", "tagger": "Tagger", "lm": "LM"}[spec.head]
    cls_name = {"mamba": "Mamba", "rglru": "Griffin", "s4d": "S4D", "s5": "S5"}[v] + cls_name
    cls = (
        f"class {cls_name}(nnx.Module):\n"
        f'    """{_TITLES[v]} {_purpose(spec).split(":")[0]} over [batch, seq, ...] inputs."""\n\n'
        f"    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):\n"
        + "".join(f"        {line}\n" for line in init)
        + f"\n    def __call__(self, {data_in}: jax.Array) -> jax.Array:\n"
        + "".join(f"        {line}\n" for line in call)
    )
    return _join(helpers + [block, cls, _nnx_fn(spec, cls_name), _nnx_example(spec, cls_name)])


# --- rendering --------------------------------------------------------------------------------


def _transforms(spec: Spec, source: str) -> tuple[str, ...]:
    found = []
    for name, marker in (
        ("vmap", "vmap("),
        ("scan", "lax.scan("),
        ("associative_scan", "lax.associative_scan("),
        ("checkpoint", "jax.checkpoint("),
    ):
        pos = source.find(marker)
        if pos >= 0:
            found.append((pos, name))
    if spec.style == "flax_nnx" and spec.variant in RNN_VARIANTS:
        found.append((source.find("nnx.RNN("), "scan"))
    return tuple(dict.fromkeys(name for _, name in sorted(found)))


def render(spec: Spec) -> ModelProgram:
    """The module text of ``spec`` (draws no random numbers)."""
    rnn = spec.variant in RNN_VARIANTS
    if spec.style == "jax":
        parts = [_jax_rnn(spec) if rnn else _jax_ssm(spec), _example_args_jax(spec)]
    elif spec.style == "equinox":
        parts = [_eqx_rnn(spec) if rnn else _eqx_ssm(spec)]
    else:
        parts = [_nnx_rnn(spec) if rnn else _nnx_ssm(spec)]
    source = _module(spec, parts)
    return ModelProgram(
        category=CATEGORY,
        style=spec.style,
        function_name=spec.function_name,
        source=source,
        transforms=_transforms(spec, source),
    )


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("gru",): ("bidirectional", "cell", "inputs", "objective", "precompute_inputs"),
    ("lstm",): ("bidirectional", "cell", "inputs", "objective", "precompute_inputs"),
    ("mamba",): ("conv_impl", "inputs", "layer_loop", "norm", "objective", "remat", "scan_impl", "tie_embeddings"),
    ("rglru",): ("conv_impl", "inputs", "layer_loop", "norm", "objective", "remat", "scan_impl", "tie_embeddings"),
    ("s4d",): ("inputs", "layer_loop", "norm", "objective", "remat", "scan_impl", "tie_embeddings"),
    ("s5",): ("inputs", "layer_loop", "norm", "objective", "remat", "scan_impl", "tie_embeddings"),
}
FAMILY = Family(CATEGORY, sample, render, context=("variant",), structure=STRUCTURE)
