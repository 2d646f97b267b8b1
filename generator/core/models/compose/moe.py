"""The mixture-of-experts channel mixer: a float32 top-k router, stacked expert weights and
four dispatches (Mixtral-style dense, Switch/GShard capacity, sort-and-scatter, dropless
``lax.ragged_dot``), with an optional shared expert and the router's auxiliary losses.

The routing and dispatch functions are module-level helpers (style-neutral); ``moe_block`` is
the block that owns the parameters and returns ``(output, aux)``.
"""

from __future__ import annotations

import dataclasses

from .emit import Block, Dense, Param
from .spec import Moe

DROPPING = ("capacity", "sorted")
DISPATCH_FUNCTIONS = {"dense": "dense_moe", "capacity": "capacity_moe", "sorted": "sorted_moe", "ragged": "ragged_moe"}


def weight_names(moe: Moe) -> tuple[str, ...]:
    return ("w_gate", "w_up", "w_down") if moe.gated else ("w_in", "w_out")


def routing_helpers(moe: Moe, top_k: int) -> list[str]:
    route = [
        "def route_tokens(router_logits: jax.Array, config) -> tuple[jax.Array, jax.Array, jax.Array]:",
        '    """Top-k routing in float32: router probabilities, gate weights and chosen experts."""',
        "    router_probs = jax.nn.softmax(router_logits, axis=-1)",
    ]
    if moe.router == "softmax_topk":
        route.append("    gate_values, expert_indices = lax.top_k(router_probs, config.experts_per_token)")
        if moe.norm_topk_prob:
            route.append("    gate_values = gate_values / jnp.sum(gate_values, axis=-1, keepdims=True)")
    else:
        route += [
            "    top_logits, expert_indices = lax.top_k(router_logits, config.experts_per_token)",
            "    gate_values = jax.nn.softmax(top_logits, axis=-1)",
        ]
    route.append("    return router_probs, gate_values, expert_indices")
    out = [
        "\n".join(route) + "\n",
        '''def load_balancing_loss(router_probs: jax.Array, expert_indices: jax.Array, config) -> jax.Array:
    """Switch Transformer auxiliary loss: num_experts * sum(fraction of tokens * mean router prob)."""
    expert_mask = jax.nn.one_hot(expert_indices, config.num_experts, dtype=jnp.float32)
    tokens_per_expert = jnp.mean(jnp.sum(expert_mask, axis=1), axis=0) / config.experts_per_token
    router_prob_per_expert = jnp.mean(router_probs, axis=0)
    return config.num_experts * jnp.sum(tokens_per_expert * router_prob_per_expert)
''',
    ]
    if moe.z_loss:
        out.append('''def router_z_loss(router_logits: jax.Array) -> jax.Array:
    """ST-MoE router z-loss: mean squared log-partition of the router logits."""
    return jnp.mean(jnp.square(jax.nn.logsumexp(router_logits, axis=-1)))
''')
    if moe.dispatch in DROPPING:
        out.append(_expert_ffn(moe))
    out.append(_dispatch(moe))
    return out


def _expert_ffn(moe: Moe) -> str:
    if moe.gated:
        return '''def expert_ffn(expert_inputs: jax.Array, w_gate: jax.Array, w_up: jax.Array, w_down: jax.Array) -> jax.Array:
    """SwiGLU experts, each on its own buffer of tokens: [experts, capacity, d_model]."""
    gate = jnp.einsum("ecd,edf->ecf", expert_inputs, w_gate)
    up = jnp.einsum("ecd,edf->ecf", expert_inputs, w_up)
    return jnp.einsum("ecf,efd->ecd", jax.nn.silu(gate) * up, w_down)
'''
    return '''def expert_ffn(expert_inputs: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:
    """GELU experts, each on its own buffer of tokens: [experts, capacity, d_model]."""
    hidden = jax.nn.gelu(jnp.einsum("ecd,edf->ecf", expert_inputs, w_in))
    return jnp.einsum("ecf,efd->ecd", hidden, w_out)
'''


_CAPACITY = [
    "    num_tokens = tokens.shape[0]",
    "    capacity = math.ceil(config.capacity_factor * num_tokens * config.experts_per_token / config.num_experts)",
]


def _dispatch(moe: Moe) -> str:
    """``<dispatch>_moe(tokens, gate_values, expert_indices, weights..., config)``."""
    w = weight_names(moe)
    wargs = ", ".join(f"{n}: jax.Array" for n in w)
    ret = "tuple[jax.Array, jax.Array]" if moe.dispatch in DROPPING else "jax.Array"
    head = [
        f"def {DISPATCH_FUNCTIONS[moe.dispatch]}(",
        f"    tokens: jax.Array, gate_values: jax.Array, expert_indices: jax.Array, {wargs}, config",
        f") -> {ret}:",
    ]
    if moe.dispatch == "dense":
        body = [
            '    """Mixtral-style dense dispatch: every expert runs on every token and a sparse gate keeps',
            '    the top-k outputs. Returns [tokens, d_model]."""',
            "    gates = jnp.sum(",
            "        jax.nn.one_hot(expert_indices, config.num_experts, dtype=jnp.float32) * gate_values[..., None], axis=1",
            "    )",
        ]
        if moe.gated:
            body += [
                '    gate = jnp.einsum("td,edf->tef", tokens, w_gate)',
                '    up = jnp.einsum("td,edf->tef", tokens, w_up)',
                '    expert_outputs = jnp.einsum("tef,efd->ted", jax.nn.silu(gate) * up, w_down)',
            ]
        else:
            body += [
                '    hidden = jax.nn.gelu(jnp.einsum("td,edf->tef", tokens, w_in))',
                '    expert_outputs = jnp.einsum("tef,efd->ted", hidden, w_out)',
            ]
        body.append('    return jnp.einsum("ted,te->td", expert_outputs, gates.astype(tokens.dtype))')
    elif moe.dispatch == "capacity":
        body = [
            '    """Switch/GShard dispatch: each expert takes at most `capacity` tokens, claimed in order',
            "    (every token's first choice before any second choice); the rest are dropped.",
            '    Returns the combined output [tokens, d_model] and the fraction of dropped assignments."""',
            *_CAPACITY,
            "    expert_mask = jax.nn.one_hot(expert_indices, config.num_experts, dtype=jnp.int32)  # [T, k, E]",
            "    priority_mask = jnp.swapaxes(expert_mask, 0, 1).reshape(-1, config.num_experts)  # [k*T, E]",
            "    position_in_expert = (jnp.cumsum(priority_mask, axis=0) - 1) * priority_mask",
            "    position_in_expert = jnp.swapaxes(",
            "        position_in_expert.reshape(config.experts_per_token, num_tokens, config.num_experts), 0, 1",
            "    )",
            "    expert_position = jnp.sum(position_in_expert, axis=-1)  # [T, k]",
            "    kept = (expert_position < capacity).astype(jnp.float32)",
            "    # one_hot of a position past capacity is all zeros: that assignment is dropped",
            "    slots = jax.nn.one_hot(expert_position, capacity, dtype=jnp.float32)  # [T, k, C]",
            "    routed = expert_mask.astype(jnp.float32)",
            '    dispatch_mask = jnp.einsum("tke,tkc->tec", routed, slots)',
            '    combine_weights = jnp.einsum("tke,tkc,tk->tec", routed, slots, gate_values)',
            '    expert_inputs = jnp.einsum("tec,td->ecd", dispatch_mask.astype(tokens.dtype), tokens)',
            f"    expert_outputs = expert_ffn(expert_inputs, {', '.join(w)})",
            '    output = jnp.einsum("tec,ecd->td", combine_weights.astype(tokens.dtype), expert_outputs)',
            "    return output, 1.0 - jnp.mean(kept)",
        ]
    elif moe.dispatch == "sorted":
        body = [
            '    """Sort-based dispatch: assignments sorted by expert are scattered into per-expert buffers',
            "    of `capacity` slots (overflow dropped), run, gathered back and summed per token.",
            '    Returns the combined output [tokens, d_model] and the fraction of dropped assignments."""',
            *_CAPACITY,
            "    flat_experts = expert_indices.reshape(-1)  # [T*k], token-major",
            "    # by expert, then by assignment: a total order, so every backend fills the slots alike",
            "    sorted_experts, sort_order = lax.sort((flat_experts, jnp.arange(flat_experts.shape[0])), num_keys=2)",
            "    sorted_token_ids = sort_order // config.experts_per_token",
            "    group_sizes = jnp.bincount(flat_experts, length=config.num_experts)",
            "    group_starts = jnp.cumsum(group_sizes) - group_sizes",
            "    position_in_expert = jnp.arange(flat_experts.shape[0]) - group_starts[sorted_experts]",
            "    kept = position_in_expert < capacity",
            "    # overflow goes to a spare last slot, sliced off: every scatter index is in bounds",
            "    slot = jnp.where(kept, position_in_expert, capacity)",
            "    expert_inputs = jnp.zeros((config.num_experts, capacity + 1, config.d_model), tokens.dtype)",
            "    expert_inputs = expert_inputs.at[sorted_experts, slot].set(jnp.take(tokens, sorted_token_ids, axis=0))",
            f"    expert_outputs = expert_ffn(expert_inputs[:, :capacity], {', '.join(w)})",
            '    sorted_outputs = expert_outputs.at[sorted_experts, position_in_expert].get(mode="fill", fill_value=0)',
            "    sorted_gates = jnp.where(kept, jnp.take(gate_values.reshape(-1), sort_order), 0.0)",
            "    weighted = sorted_outputs * sorted_gates[:, None].astype(tokens.dtype)",
            *_combine(moe),
            "    return output, 1.0 - jnp.mean(kept.astype(jnp.float32))",
        ]
    else:
        body = [
            '    """Dropless dispatch (MaxText/MegaBlocks style): assignments sorted by expert, each expert',
            '    a contiguous group multiplied by `lax.ragged_dot`. Returns [tokens, d_model]."""',
            "    num_tokens = tokens.shape[0]",
            "    flat_experts = expert_indices.reshape(-1)  # [T*k], token-major",
            "    sort_order = jnp.argsort(flat_experts)",
            "    sorted_token_ids = sort_order // config.experts_per_token",
            "    sorted_tokens = jnp.take(tokens, sorted_token_ids, axis=0)",
            "    group_sizes = jnp.bincount(flat_experts, length=config.num_experts).astype(jnp.int32)",
        ]
        if moe.gated:
            body += [
                "    gate = lax.ragged_dot(sorted_tokens, w_gate, group_sizes)",
                "    up = lax.ragged_dot(sorted_tokens, w_up, group_sizes)",
                "    sorted_outputs = lax.ragged_dot(jax.nn.silu(gate) * up, w_down, group_sizes)",
            ]
        else:
            body += [
                "    hidden = jax.nn.gelu(lax.ragged_dot(sorted_tokens, w_in, group_sizes))",
                "    sorted_outputs = lax.ragged_dot(hidden, w_out, group_sizes)",
            ]
        body += [
            "    sorted_gates = jnp.take(gate_values.reshape(-1), sort_order)",
            "    weighted = sorted_outputs * sorted_gates[:, None].astype(tokens.dtype)",
            *_combine(moe),
            "    return output",
        ]
    return "\n".join(head + body) + "\n"


def _combine(moe: Moe) -> list[str]:
    if moe.combine == "segment_sum":
        return ["    output = jax.ops.segment_sum(weighted, sorted_token_ids, num_segments=num_tokens)"]
    return [
        "    unsorted = jnp.zeros_like(weighted).at[sort_order].set(weighted)",
        "    output = jnp.sum(unsorted.reshape(num_tokens, config.experts_per_token, -1), axis=1)",
    ]


def moe_block(moe: Moe, shared: Block | None) -> Block:
    """The MoE layer over ``x`` (any leading shape): ``(output, aux)``."""
    w = weight_names(moe)
    shapes = {
        "w_gate": ("config.num_experts", "config.d_model", "config.expert_d_ff"),
        "w_up": ("config.num_experts", "config.d_model", "config.expert_d_ff"),
        "w_in": ("config.num_experts", "config.d_model", "config.expert_d_ff"),
        "w_down": ("config.num_experts", "config.expert_d_ff", "config.d_model"),
        "w_out": ("config.num_experts", "config.expert_d_ff", "config.d_model"),
    }
    params = [
        Param(
            "router", ("config.d_model", "config.num_experts"), "normal", "config.d_model", ("embed", None), "float32"
        )
    ]
    for n in w:
        fan = "config.expert_d_ff" if n in ("w_down", "w_out") else "config.d_model"
        axes = (None, "mlp", "embed") if n in ("w_down", "w_out") else (None, "embed", "mlp")
        params.append(Param(n, shapes[n], "normal", fan, axes))
    drops = moe.dispatch in DROPPING
    out = "expert_output, dropped_fraction" if drops else "expert_output"
    lines = [
        "tokens = x.reshape(-1, config.d_model)",
        "router_logits = tokens.astype(jnp.float32) @ $router",
        "router_probs, gate_values, expert_indices = route_tokens(router_logits, config)",
        f"{out} = {DISPATCH_FUNCTIONS[moe.dispatch]}(tokens, gate_values, expert_indices, "
        + ", ".join(f"${n}" for n in w)
        + ", config)",
    ]
    children: list = []
    if shared is not None:
        # the shared expert sees flattened tokens [T, d_model]: no (batch, seq, ...) layout to pin
        body = "\n".join(line for line in shared.body.splitlines() if not line.lstrip().startswith("%"))
        children.append(dataclasses.replace(shared, name="shared_expert", cls="SharedExpert", body=body))
        if moe.shared_gate:
            children.append(Dense("shared_gate", "config.d_model", "1", ("embed", None)))
            lines += [
                "shared_gate = jax.nn.sigmoid(@shared_gate(tokens).astype(jnp.float32)).astype(tokens.dtype)",
                "expert_output = expert_output + shared_gate * @shared_expert(tokens)",
            ]
        else:
            lines.append("expert_output = expert_output + @shared_expert(tokens)")
    lines.append("load_balancing = load_balancing_loss(router_probs, expert_indices, config)")
    if moe.z_loss:
        lines.append("z_loss = router_z_loss(router_logits)")
    if moe.aux_output == "dict":
        entries = ['"load_balancing_loss": load_balancing']
        if moe.z_loss:
            entries.append('"router_z_loss": z_loss')
        if drops:
            entries.append('"dropped_fraction": dropped_fraction')
        lines.append("aux = {" + ", ".join(entries) + "}")
    else:
        total = "config.aux_loss_coef * load_balancing" + (
            " + config.router_z_loss_coef * z_loss" if moe.z_loss else ""
        )
        lines.append(
            f'aux = {{"aux_loss": {total}, "dropped_fraction": dropped_fraction}}' if drops else f"aux = {total}"
        )
    lines.append("return expert_output.reshape(x.shape), aux")
    what = {
        "dense": "dense (Mixtral-style)",
        "capacity": "capacity-based (Switch/GShard)",
        "sorted": "sort-and-scatter",
        "ragged": "dropless ragged-dot",
    }[moe.dispatch]
    doc = f"Mixture-of-experts MLP, {what} dispatch: the output and the router's auxiliary losses."
    returns = "tuple[jax.Array, dict]" if moe.aux_output == "dict" or drops else "tuple[jax.Array, jax.Array]"
    return Block("MoE", doc, ("x",), "\n".join(lines), tuple(params), tuple(children), returns)
