"""Recurrent token mixers: gated RNN cells (LSTM, GRU) scanned over time, and linear
recurrences (Griffin's real-gated LRU, a Mamba-style selective state space) computed with
``lax.associative_scan`` or a sequential ``lax.scan``, with a short causal convolution.

Each mixer maps ``(..., seq, d_model)`` to the same shape; recurrences run in float32.
"""

from __future__ import annotations

from .emit import Block, Cell, Dense, Param
from .spec import Recurrent

LINEAR_SCAN = {
    "associative": '''def linear_scan(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
    """h[t] = a[t] * h[t - 1] + b[t] along ``axis`` (h[-1] = 0), as a parallel prefix scan."""

    def combine(left, right):
        a_left, b_left = left
        a_right, b_right = right
        return a_left * a_right, a_right * b_left + b_right

    _, h = lax.associative_scan(combine, (a, b), axis=axis)
    return h
''',
    "sequential": '''def linear_scan(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
    """h[t] = a[t] * h[t - 1] + b[t] along ``axis`` (h[-1] = 0), one step at a time."""
    a, b = jnp.moveaxis(a, axis, 0), jnp.moveaxis(b, axis, 0)

    def step(h, inputs):
        a_t, b_t = inputs
        h = a_t * h + b_t
        return h, h

    _, h = lax.scan(step, jnp.zeros_like(b[0]), (a, b))
    return jnp.moveaxis(h, 0, axis)
''',
}

CAUSAL_CONV = '''def causal_conv(x: jax.Array, weight: jax.Array) -> jax.Array:
    """Depthwise causal convolution over the sequence: x is (..., seq, channels), weight (width, channels)."""
    width, seq_len = weight.shape[0], x.shape[-2]
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(width - 1, 0), (0, 0)])
    return sum(padded[..., i : i + seq_len, :] * weight[i] for i in range(width))
'''


RUN_RNN = {
    "lstm": '''def run_rnn(rnn: nnx.RNN, x: jax.Array) -> jax.Array:
    """Every step's hidden state of an LSTM run over x (batch, seq, features) from a zero carry."""
    zeros = jnp.zeros(x.shape[:-2] + (rnn.cell.hidden_features,), x.dtype)
    return rnn(x, initial_carry=(zeros, zeros))
''',
    "gru": '''def run_rnn(rnn: nnx.RNN, x: jax.Array) -> jax.Array:
    """Every step's hidden state of a GRU run over x (batch, seq, features) from a zero carry."""
    return rnn(x, initial_carry=jnp.zeros(x.shape[:-2] + (rnn.cell.hidden_features,), x.dtype))
''',
}

SCAN_CELL = {
    "lstm": '''def scan_cell(cell: eqx.nn.LSTMCell, xs: jax.Array, reverse: bool = False) -> jax.Array:
    """Every step's hidden state of an LSTM cell run over one sequence xs (seq, features)."""
    zeros = jnp.zeros((cell.hidden_size,), xs.dtype)

    def step(carry, x_t):
        h, c = cell(x_t, carry)
        return (h, c), h

    _, hs = lax.scan(step, (zeros, zeros), xs, reverse=reverse)
    return hs
''',
    "gru": '''def scan_cell(cell: eqx.nn.GRUCell, xs: jax.Array, reverse: bool = False) -> jax.Array:
    """Every step's hidden state of a GRU cell run over one sequence xs (seq, features)."""

    def step(h, x_t):
        h = cell(x_t, h)
        return h, h

    _, hs = lax.scan(step, jnp.zeros((cell.hidden_size,), xs.dtype), xs, reverse=reverse)
    return hs
''',
}


def recurrent_helpers(recurrent: Recurrent, style: str = "jax") -> list[str]:
    out = []
    if recurrent.library:
        out.append(RUN_RNN[recurrent.kind] if style == "flax_nnx" else SCAN_CELL[recurrent.kind])
    if recurrent.kind in ("rglru", "mamba", "s4d"):
        out.append(LINEAR_SCAN[recurrent.scan])
    if recurrent.conv:
        out.append(CAUSAL_CONV)
    return out


def _conv(recurrent: Recurrent, width: str) -> tuple[list[Param], list[str]]:
    if not recurrent.conv:
        return [], []
    weight = Param("conv_weight", ("config.conv_width", width), "normal", "config.conv_width", (None, "mlp"))
    return [weight], ["h = causal_conv(h, $conv_weight)"]


def recurrent_block(recurrent: Recurrent) -> Block:
    """The token mixer ``recurrent`` names, over ``x`` of shape (..., seq, d_model)."""
    return {"lstm": _cell, "gru": _cell, "rglru": _rglru, "mamba": _mamba, "s4d": _s4d}[recurrent.kind](recurrent)


_CELLS = {
    "lstm": (
        4,
        [
            "def {step}(carry, gates_t):",
            "    h, c = carry",
            "    gates = gates_t + h @ ${w_hh}.astype(jnp.float32)",
            "    i, f, g, o = jnp.split(gates, 4, axis=-1)",
            "    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)",
            "    h = jax.nn.sigmoid(o) * jnp.tanh(c)",
            "    return (h, c), h",
        ],
        "(h0, h0)",
    ),
    "gru": (
        3,
        [
            "def {step}(h, inputs_t):",
            "    r_in, z_in, n_in = jnp.split(inputs_t, 3, axis=-1)",
            "    r_h, z_h, n_h = jnp.split(h @ ${w_hh}.astype(jnp.float32) + ${b_hh}.astype(jnp.float32), 3, axis=-1)",
            "    r = jax.nn.sigmoid(r_in + r_h)",
            "    z = jax.nn.sigmoid(z_in + z_h)",
            "    n = jnp.tanh(n_in + r * n_h)",
            "    h = (1.0 - z) * n + z * h",
            "    return h, h",
        ],
        "h0",
    ),
}


def _cell(recurrent: Recurrent) -> Block:
    """An LSTM or GRU over the sequence; bidirectional: a second cell reads it backwards
    (``lax.scan(..., reverse=True)``) and a projection merges the two."""
    name = recurrent.kind.upper()
    if recurrent.library:  # the library's cell, run over the sequence
        if recurrent.bidirectional:
            children = (
                Cell("cell_forward", recurrent.kind),
                Cell("cell_backward", recurrent.kind, reverse=True),
                Dense("merge_proj", "2 * config.d_model", "config.d_model", ("mlp", "embed")),
            )
            body = "hs = jnp.concatenate([@cell_forward(x), @cell_backward(x)], axis=-1)\nreturn @merge_proj(hs.astype(x.dtype))"
        else:
            children = (Cell("cell", recurrent.kind),)
            body = "return @cell(x).astype(x.dtype)"
        what = "A bidirectional" if recurrent.bidirectional else "An" if name[0] in "AEIOU" else "A"
        return Block(name, f"{what} {name} over the sequence (the library's cell).", ("x",), body, (), children)
    gates, step, init = _CELLS[recurrent.kind]
    directions = ("forward", "backward") if recurrent.bidirectional else ("",)
    lines, params, children = [], [], []
    for d in directions:
        suffix = f"_{d}" if d else ""
        width = f"{gates} * config.d_model"
        children.append(Dense(f"input_proj{suffix}", "config.d_model", width, ("embed", "mlp"), True))
        params.append(Param(f"w_hh{suffix}", ("config.d_model", width), "normal", "config.d_model", ("embed", "mlp")))
        if recurrent.kind == "gru":
            params.append(Param(f"b_hh{suffix}", (width,), "zeros", "", ("mlp",)))
        names = {"step": f"step{suffix}", "w_hh": f"w_hh{suffix}", "b_hh": f"b_hh{suffix}"}
        lines += [f"gate_inputs{suffix} = @input_proj{suffix}(x).astype(jnp.float32)", ""]
        lines += [line.format(**names) for line in step] + [""]
    lines.append("h0 = jnp.zeros(x.shape[:-2] + (config.d_model,), jnp.float32)")
    for d in directions:
        suffix = f"_{d}" if d else ""
        reverse = ", reverse=True" if d == "backward" else ""
        lines.append(
            f"_, hs{suffix} = lax.scan(step{suffix}, {init}, jnp.moveaxis(gate_inputs{suffix}, -2, 0){reverse})"
        )
    if recurrent.bidirectional:
        children.append(Dense("merge_proj", "2 * config.d_model", "config.d_model", ("mlp", "embed")))
        lines += [
            "hs = jnp.concatenate([hs_forward, hs_backward], axis=-1).astype(x.dtype)",
            "return @merge_proj(jnp.moveaxis(hs, 0, -2))",
        ]
    else:
        lines.append("return jnp.moveaxis(hs, 0, -2).astype(x.dtype)")
    doc = f"{'A bidirectional' if recurrent.bidirectional else 'An' if name[0] in 'AEIOU' else 'A'} {name} over the sequence (lax.scan over time steps, the cell in float32)."
    return Block(name, doc, ("x",), "\n".join(lines), tuple(params), tuple(children))


def _rglru(recurrent: Recurrent) -> Block:
    conv_params, conv_lines = _conv(recurrent, "config.hidden_size")
    lines = [
        "gate = jax.nn.gelu(@gate_proj(x))",
        "h = @in_proj(x)",
        *conv_lines,
        "input_gate = jax.nn.sigmoid(@input_gate(h).astype(jnp.float32))",
        "recurrence_gate = jax.nn.sigmoid(@recurrence_gate(h).astype(jnp.float32))",
        "log_a = -8.0 * recurrence_gate * jax.nn.softplus($a_param.astype(jnp.float32))",
        "a = jnp.exp(log_a)",
        "normalized = h.astype(jnp.float32) * input_gate * jnp.sqrt(1.0 - jnp.exp(2.0 * log_a))",
        "states = linear_scan(a, normalized, axis=-2).astype(x.dtype)",
        "return @out_proj(states * gate)",
    ]
    params = (*conv_params, Param("a_param", ("config.hidden_size",), "normal", "", ("mlp",)))
    children = (
        Dense("gate_proj", "config.d_model", "config.hidden_size", ("embed", "mlp")),
        Dense("in_proj", "config.d_model", "config.hidden_size", ("embed", "mlp")),
        Dense("input_gate", "config.hidden_size", "config.hidden_size", (None, "mlp")),
        Dense("recurrence_gate", "config.hidden_size", "config.hidden_size", (None, "mlp")),
        Dense("out_proj", "config.hidden_size", "config.d_model", ("mlp", "embed")),
    )
    doc = "Griffin's recurrent block: a real-gated linear recurrent unit (RG-LRU) beside a GELU gate."
    return Block("RGLRU", doc, ("x",), "\n".join(lines), params, children)


def _mamba(recurrent: Recurrent) -> Block:
    conv_params, conv_lines = _conv(recurrent, "config.hidden_size")
    lines = [
        "h, z = jnp.split(@in_proj(x), 2, axis=-1)",
        *conv_lines,
        "h = jax.nn.silu(h)",
        "delta = jax.nn.softplus(@dt_up(@dt_down(h)).astype(jnp.float32))"
        if recurrent.low_rank_dt
        else "delta = jax.nn.softplus(@dt_proj(h).astype(jnp.float32))",
        "b = @b_proj(h).astype(jnp.float32)",
        "c = @c_proj(h).astype(jnp.float32)",
        "a = -jnp.exp($a_log.astype(jnp.float32))",
        "decay = jnp.exp(delta[..., None] * a)",
        "inputs = (delta * h.astype(jnp.float32))[..., None] * b[..., None, :]",
        "states = linear_scan(decay, inputs, axis=-3)",
        'y = jnp.einsum("...sen,...sn->...se", states, c) + h.astype(jnp.float32) * $d_skip.astype(jnp.float32)',
        "return @out_proj(y.astype(x.dtype) * jax.nn.silu(z))",
    ]
    params = (
        *conv_params,
        Param("a_log", ("config.hidden_size", "config.state_size"), "normal", "", ("mlp", None)),
        Param("d_skip", ("config.hidden_size",), "ones", "", ("mlp",)),
    )
    children = (
        Dense("in_proj", "config.d_model", "2 * config.hidden_size", ("embed", "mlp")),
        *(
            (
                Dense("dt_down", "config.hidden_size", "config.dt_rank", ("mlp", None)),
                Dense("dt_up", "config.dt_rank", "config.hidden_size", (None, "mlp")),
            )
            if recurrent.low_rank_dt
            else (Dense("dt_proj", "config.hidden_size", "config.hidden_size", (None, "mlp")),)
        ),
        Dense("b_proj", "config.hidden_size", "config.state_size", ("mlp", None)),
        Dense("c_proj", "config.hidden_size", "config.state_size", ("mlp", None)),
        Dense("out_proj", "config.hidden_size", "config.d_model", ("mlp", "embed")),
    )
    doc = "A Mamba-style selective state space: input-dependent step sizes, a diagonal recurrence, a SiLU gate."
    return Block("Mamba", doc, ("x",), "\n".join(lines), params, children)


def _s4d(recurrent: Recurrent) -> Block:
    """S4D with a real diagonal state matrix: input-independent, zero-order-hold discretized."""
    conv_params, conv_lines = _conv(recurrent, "config.hidden_size")
    lines = [
        "h = @in_proj(x)",
        *conv_lines,
        "step_size = jnp.exp($log_step.astype(jnp.float32))",
        "a = -jnp.exp($log_a.astype(jnp.float32))",
        "decay = jnp.exp(step_size[:, None] * a)",
        "inputs = (step_size[:, None] * $b.astype(jnp.float32)) * h.astype(jnp.float32)[..., None]",
        "states = linear_scan(jnp.broadcast_to(decay, inputs.shape), inputs, axis=-3)",
        'y = jnp.einsum("...shn,hn->...sh", states, $c.astype(jnp.float32)) + h.astype(jnp.float32) * $d_skip.astype(jnp.float32)',
        "return @out_proj(jax.nn.gelu(y).astype(x.dtype))",
    ]
    params = (
        *conv_params,
        Param("log_step", ("config.hidden_size",), "normal", "", ("mlp",)),
        Param("log_a", ("config.hidden_size", "config.state_size"), "normal", "", ("mlp", None)),
        Param("b", ("config.hidden_size", "config.state_size"), "normal", "config.state_size", ("mlp", None)),
        Param("c", ("config.hidden_size", "config.state_size"), "normal", "config.state_size", ("mlp", None)),
        Param("d_skip", ("config.hidden_size",), "ones", "", ("mlp",)),
    )
    children = (
        Dense("in_proj", "config.d_model", "config.hidden_size", ("embed", "mlp")),
        Dense("out_proj", "config.hidden_size", "config.d_model", ("mlp", "embed")),
    )
    doc = "An S4D layer: a diagonal linear state space with learned step sizes, then a GELU."
    return Block("S4D", doc, ("x",), "\n".join(lines), params, children)
