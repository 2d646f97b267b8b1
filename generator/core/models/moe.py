"""moe: mixture-of-experts layers, blocks and small models, as JAX users write them.

Every program routes tokens with a float32 router (softmax, ``lax.top_k`` over
``experts_per_token`` experts), runs stacked expert weights ``[num_experts, d_model,
expert_d_ff]`` (SwiGLU or GELU experts) and returns its output with the router's auxiliary
losses (Switch load balancing, ST-MoE router z-loss). What varies:

- style: plain JAX over parameter dicts, Flax NNX (``nnx.Param`` stacked experts) or
  Equinox (``eqx.Module`` with explicit stacked expert arrays);
- dispatch: ``dense`` (Mixtral-style: every expert on every token, a sparse gate),
  ``capacity`` (Switch/GShard: capacity slots by cumsum of one-hot, dispatch and combine
  tensors by einsum, tokens over capacity dropped), ``sorted`` (argsort by expert, scatter
  into capacity buffers, overflow to a spare slot that is sliced off, ``jax.ops.segment_sum``
  back) or ``ragged`` (argsort by expert, ``lax.ragged_dot`` over expert groups, MaxText-style);
- scope: the MoE layer alone, a pre-norm transformer block (attention then MoE MLP), or a
  small MoE language model with its blocks under ``lax.scan`` (plain JAX);
- a DeepSeek/Qwen-style shared expert (optionally sigmoid-gated), top-k renormalisation,
  softmax before or after top-k, losses as a dict or one weighted sum, sizes and dtypes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import D_MODELS, Family, ModelProgram, attention_heads, config_class, pick, round_up

CATEGORY = "moe"

SCOPES = ("layer", "block", "stack")
DISPATCHES = ("dense", "capacity", "sorted", "ragged")
EXPERT_ACTS = ("swiglu", "gelu")
# Dispatches that can drop tokens over an expert's capacity (they report the dropped fraction).
DROPPING = ("capacity", "sorted")


@dataclass(frozen=True)
class Spec:
    """Every choice of one MoE program (``render`` draws nothing)."""

    style: str
    scope: str
    dispatch: str
    expert_act: str
    router: str  # "softmax_topk" (Switch/Mixtral) or "topk_softmax" (softmax over the top-k logits)
    norm_topk_prob: bool
    combine: str  # sorted/ragged: "segment_sum" or "unsort"
    shared_expert: bool
    shared_gate: bool
    z_loss: bool
    aux_output: str  # "dict" or "weighted"
    d_model: int
    num_experts: int
    experts_per_token: int
    expert_d_ff: int
    d_ff: int  # the shared expert's width (0 without one)
    batch_size: int
    seq_len: int
    capacity_factor: float
    aux_loss_coef: float
    z_loss_coef: float
    dtype: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    attention: str  # "dot_product_attention" or "einsum"
    norm: str  # "rms" or "layer"
    norm_eps: float
    num_layers: int
    vocab_size: int
    tie_embeddings: bool
    function_name: str


# --- sampling -------------------------------------------------------------------------------


def sample(rng: random.Random) -> Spec:
    """A random MoE program spec, at the sizes real MoE models use."""
    style = pick(rng, ("jax", "jax", "flax_nnx", "equinox"))
    scope = pick(rng, ("layer", "block", "stack") if style == "jax" else ("layer", "block"))
    # An Equinox block runs on one sequence under jax.vmap: ragged_dot has no batching rule for
    # that (NotImplementedError), and a vmapped sort-and-scatter dispatch once routed two
    # reduced-size tokens differently on IREE than on XLA (not yet understood): vmapped blocks
    # dispatch by dense or capacity einsums.
    dispatch = pick(rng, DISPATCHES if (style, scope) != ("equinox", "block") else ("dense", "capacity"))
    expert_act = "swiglu" if rng.random() < 0.75 else "gelu"
    d_model = pick(rng, [d for d in D_MODELS if 512 <= d <= 4096])
    # Dense dispatch runs every expert on every token: real code does that with few experts.
    num_experts = pick(rng, (4, 8, 8, 16) if dispatch == "dense" else (8, 16, 32, 64, 128))
    fine_grained = num_experts >= 32
    if fine_grained:  # DeepSeekMoE / OLMoE / Qwen-MoE: many narrow experts, more of them per token
        experts_per_token = pick(rng, (2, 4, 6, 8))
        expert_d_ff = pick(
            rng, (round_up(d_model // 2, 128), round_up(d_model // 4, 128), round_up(11 * d_model // 16, 128))
        )
    else:  # Switch / GShard / Mixtral: a few full-width experts, top-1 or top-2
        experts_per_token = pick(rng, (1, 2, 2))
        expert_d_ff = 4 * d_model if expert_act == "gelu" else round_up(7 * d_model // 2, 256)
    expert_d_ff = max(128, expert_d_ff)
    shared_expert = fine_grained and rng.random() < 0.6 or rng.random() < 0.15
    d_ff = expert_d_ff * pick(rng, (1, 2, 4)) if shared_expert else 0
    if experts_per_token == 1:
        router, norm_topk_prob = "softmax_topk", False
    else:
        router = pick(rng, ("softmax_topk", "softmax_topk", "topk_softmax"))
        norm_topk_prob = router == "softmax_topk" and rng.random() < 0.6
    # tokens per step: 1k-64k (fewer for a whole model, whose logits are batch x seq x vocab)
    seq = pick(rng, (256, 512, 1024, 2048, 4096, 8192))
    token_cap = 1 << 14 if scope == "stack" else 1 << 16
    batch = pick(rng, [b for b in (1, 2, 4, 8, 16, 32, 64) if 1024 <= b * seq <= token_cap] or [1])
    num_heads = num_kv_heads = head_dim = 0
    if scope != "layer":
        num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model)
    # bfloat16 parameters and activations (float32 router) for MoE layers. Blocks and models
    # compute in float32: in bfloat16, attention's last-bit differences between compilers move
    # near-tied router logits across the top-k boundary, and the reduced-size programs the
    # validator runs on XLA and IREE would route a token differently.
    dtype = "bfloat16" if scope == "layer" and rng.random() < 0.85 else "float32"
    return Spec(
        style=style,
        scope=scope,
        dispatch=dispatch,
        expert_act=expert_act,
        router=router,
        norm_topk_prob=norm_topk_prob,
        combine=pick(rng, ("segment_sum", "unsort")),
        shared_expert=shared_expert,
        shared_gate=shared_expert and rng.random() < 0.4,
        z_loss=rng.random() < 0.7,
        aux_output=pick(rng, ("dict", "weighted")),
        d_model=d_model,
        num_experts=num_experts,
        experts_per_token=experts_per_token,
        expert_d_ff=expert_d_ff,
        d_ff=d_ff,
        batch_size=batch,
        seq_len=seq,
        capacity_factor=pick(rng, (1.0, 1.25, 1.5, 2.0)),
        aux_loss_coef=pick(rng, (0.01, 0.001, 0.02)),
        z_loss_coef=pick(rng, (0.001, 0.0001)),
        dtype=dtype,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        rope_theta=pick(rng, (10000.0, 500000.0, 1000000.0)),
        # (jax.nn.dot_product_attention on bfloat16 would lower to a dot_general with a
        # dot_algorithm attribute that IREE's frontend refuses; blocks are float32)
        attention=pick(rng, ("dot_product_attention", "einsum")) if dtype == "float32" else "einsum",
        norm=pick(rng, ("rms", "rms", "layer")),
        norm_eps=pick(rng, (1e-5, 1e-6)),
        num_layers=pick(rng, (2, 4, 8, 12, 16, 24, 32)) if scope == "stack" else 0,
        vocab_size=pick(rng, (32_000, 32_768, 50_304, 65_536, 100_352, 151_936)) if scope == "stack" else 0,
        tie_embeddings=rng.random() < 0.3,
        function_name=pick(rng, _FUNCTION_NAMES[scope]),
    )


_FUNCTION_NAMES = {
    "layer": ("moe_layer", "sparse_moe", "forward", "apply_moe"),
    "block": ("moe_block", "apply_block", "forward", "transformer_block"),
    "stack": ("forward", "model_forward", "apply_model"),
}


# --- rendering ------------------------------------------------------------------------------


def _indent(lines: list[str], n: int) -> list[str]:
    pad = " " * n
    return [pad + line if line else line for line in lines]


def _config_name(spec: Spec) -> str:
    if spec.scope == "stack":
        return "MoETransformerConfig"
    if spec.scope == "block":
        return "MoEBlockConfig"
    if spec.dispatch == "capacity" and spec.experts_per_token == 1:
        return "SwitchConfig"
    return "SparseMoEConfig" if spec.dispatch == "ragged" else "MoEConfig"


def _config(spec: Spec) -> str:
    fields: list[tuple[str, str, object]] = [
        ("d_model", "int", spec.d_model),
        ("num_experts", "int", spec.num_experts),
        ("experts_per_token", "int", spec.experts_per_token),
        ("expert_d_ff", "int", spec.expert_d_ff),
    ]
    if spec.shared_expert:
        fields.append(("d_ff", "int", spec.d_ff))
    if spec.scope != "layer":
        fields += [
            ("num_heads", "int", spec.num_heads),
            ("num_kv_heads", "int", spec.num_kv_heads),
            ("head_dim", "int", spec.head_dim),
        ]
    if spec.scope == "stack":
        fields += [("num_layers", "int", spec.num_layers), ("vocab_size", "int", spec.vocab_size)]
    fields += [("batch_size", "int", spec.batch_size), ("seq_len", "int", spec.seq_len)]
    if spec.dispatch in DROPPING:
        fields.append(("capacity_factor", "float", spec.capacity_factor))
    if spec.aux_output == "weighted":
        fields.append(("aux_loss_coef", "float", spec.aux_loss_coef))
        if spec.z_loss:
            fields.append(("router_z_loss_coef", "float", spec.z_loss_coef))
    if spec.scope != "layer":
        fields += [("rope_theta", "float", spec.rope_theta), ("norm_eps", "float", spec.norm_eps)]
    if spec.scope == "stack":
        fields.append(("tie_embeddings", "bool", spec.tie_embeddings))
    if spec.router == "softmax_topk" and spec.experts_per_token > 1:
        fields.append(("norm_topk_prob", "bool", spec.norm_topk_prob))
    fields.append(("dtype", "str", spec.dtype))
    doc = {
        "layer": "Sizes of the mixture-of-experts layer and of the batch it runs on.",
        "block": "Sizes of the pre-norm transformer block with a mixture-of-experts MLP.",
        "stack": "Sizes of the mixture-of-experts decoder-only language model.",
    }[spec.scope]
    return config_class(_config_name(spec), fields, doc)


def _weights(spec: Spec) -> tuple[str, ...]:
    return ("w_gate", "w_up", "w_down") if spec.expert_act == "swiglu" else ("w_in", "w_out")


# --- module-level helpers every style shares ------------------------------------------------


def _routing(spec: Spec) -> str:
    c = _config_name(spec)
    lines = [
        f"def route_tokens(router_logits: jax.Array, config: {c}) -> tuple[jax.Array, jax.Array, jax.Array]:",
        '    """Top-k routing in float32: router probabilities, gate weights and chosen experts."""',
        "    router_probs = jax.nn.softmax(router_logits, axis=-1)",
    ]
    if spec.router == "softmax_topk":
        lines.append("    gate_values, expert_indices = lax.top_k(router_probs, config.experts_per_token)")
        if spec.experts_per_token > 1:
            lines += [
                "    if config.norm_topk_prob:",
                "        gate_values = gate_values / jnp.sum(gate_values, axis=-1, keepdims=True)",
            ]
    else:
        lines += [
            "    top_logits, expert_indices = lax.top_k(router_logits, config.experts_per_token)",
            "    gate_values = jax.nn.softmax(top_logits, axis=-1)",
        ]
    lines.append("    return router_probs, gate_values, expert_indices")
    lines += [
        "",
        "",
        f"def load_balancing_loss(router_probs: jax.Array, expert_indices: jax.Array, config: {c}) -> jax.Array:",
        '    """Switch Transformer auxiliary loss: num_experts * sum(fraction of tokens * mean router prob)."""',
        "    expert_mask = jax.nn.one_hot(expert_indices, config.num_experts, dtype=jnp.float32)",
        "    tokens_per_expert = jnp.mean(jnp.sum(expert_mask, axis=1), axis=0) / config.experts_per_token",
        "    router_prob_per_expert = jnp.mean(router_probs, axis=0)",
        "    return config.num_experts * jnp.sum(tokens_per_expert * router_prob_per_expert)",
    ]
    if spec.z_loss:
        lines += [
            "",
            "",
            "def router_z_loss(router_logits: jax.Array) -> jax.Array:",
            '    """ST-MoE router z-loss: mean squared log-partition of the router logits."""',
            "    return jnp.mean(jnp.square(jax.nn.logsumexp(router_logits, axis=-1)))",
        ]
    return "\n".join(lines) + "\n"


def _expert_ffn(spec: Spec) -> str:
    """The experts over per-expert token buffers ``[num_experts, capacity, d_model]``."""
    if spec.expert_act == "swiglu":
        return (
            "def expert_ffn(expert_inputs: jax.Array, w_gate: jax.Array, w_up: jax.Array, w_down: jax.Array) -> jax.Array:\n"
            '    """SwiGLU experts, each on its own buffer of tokens: [experts, capacity, d_model]."""\n'
            '    gate = jnp.einsum("ecd,edf->ecf", expert_inputs, w_gate)\n'
            '    up = jnp.einsum("ecd,edf->ecf", expert_inputs, w_up)\n'
            '    return jnp.einsum("ecf,efd->ecd", jax.nn.silu(gate) * up, w_down)\n'
        )
    return (
        "def expert_ffn(expert_inputs: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:\n"
        '    """GELU experts, each on its own buffer of tokens: [experts, capacity, d_model]."""\n'
        '    hidden = jax.nn.gelu(jnp.einsum("ecd,edf->ecf", expert_inputs, w_in))\n'
        '    return jnp.einsum("ecf,efd->ecd", hidden, w_out)\n'
    )


def _capacity_line() -> list[str]:
    return [
        "    num_tokens = tokens.shape[0]",
        "    capacity = math.ceil(config.capacity_factor * num_tokens * config.experts_per_token / config.num_experts)",
    ]


def _dispatch(spec: Spec) -> str:
    """The dispatch-experts-combine function: ``(tokens, gates, experts, weights..., config)``."""
    c = _config_name(spec)
    w = _weights(spec)
    wargs = ", ".join(f"{n}: jax.Array" for n in w)
    wnames = ", ".join(w)
    drops = spec.dispatch in DROPPING
    ret = "tuple[jax.Array, jax.Array]" if drops else "jax.Array"
    name = {"dense": "dense_moe", "capacity": "capacity_moe", "sorted": "sorted_moe", "ragged": "ragged_moe"}[
        spec.dispatch
    ]
    params = f"tokens: jax.Array, gate_values: jax.Array, expert_indices: jax.Array, {wargs}, config: {c}"
    if len(params) <= 110:
        head = [f"def {name}(", f"    {params}", f") -> {ret}:"]
    else:
        head = [f"def {name}(", *[f"    {a}," for a in params.split(", ")], f") -> {ret}:"]
    if spec.dispatch == "dense":
        body = [
            '    """Mixtral-style dense dispatch: every expert runs on every token and a sparse gate',
            '    keeps the top-k outputs. Returns [tokens, d_model]."""',
            "    gates = jnp.sum(",
            "        jax.nn.one_hot(expert_indices, config.num_experts, dtype=jnp.float32) * gate_values[..., None], axis=1",
            "    )",
        ]
        if spec.expert_act == "swiglu":
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
    elif spec.dispatch == "capacity":
        body = [
            '    """Switch/GShard dispatch: each expert takes at most `capacity` tokens, claimed in order',
            "    (every token's first choice before any second choice); the rest are dropped.",
            '    Returns the combined output [tokens, d_model] and the fraction of dropped assignments."""',
            *_capacity_line(),
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
            f"    expert_outputs = expert_ffn(expert_inputs, {wnames})",
            '    output = jnp.einsum("tec,ecd->td", combine_weights.astype(tokens.dtype), expert_outputs)',
            "    return output, 1.0 - jnp.mean(kept)",
        ]
    elif spec.dispatch == "sorted":
        body = [
            '    """Sort-based dispatch: assignments sorted by expert are scattered into per-expert',
            "    buffers of `capacity` slots (overflow dropped), run, gathered back and summed per token.",
            '    Returns the combined output [tokens, d_model] and the fraction of dropped assignments."""',
            *_capacity_line(),
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
            f"    expert_outputs = expert_ffn(expert_inputs[:, :capacity], {wnames})",
            '    sorted_outputs = expert_outputs.at[sorted_experts, position_in_expert].get(mode="fill", fill_value=0)',
            "    sorted_gates = jnp.where(kept, jnp.take(gate_values.reshape(-1), sort_order), 0.0)",
            "    weighted = sorted_outputs * sorted_gates[:, None].astype(tokens.dtype)",
            *_combine(spec),
            "    return output, 1.0 - jnp.mean(kept.astype(jnp.float32))",
        ]
    else:
        body = [
            '    """Dropless dispatch (MaxText/MegaBlocks style): assignments sorted by expert, each',
            '    expert a contiguous group multiplied by `lax.ragged_dot`. Returns [tokens, d_model]."""',
            "    num_tokens = tokens.shape[0]",
            "    flat_experts = expert_indices.reshape(-1)  # [T*k], token-major",
            "    sort_order = jnp.argsort(flat_experts)",
            "    sorted_token_ids = sort_order // config.experts_per_token",
            "    sorted_tokens = jnp.take(tokens, sorted_token_ids, axis=0)",
            "    group_sizes = jnp.bincount(flat_experts, length=config.num_experts).astype(jnp.int32)",
        ]
        if spec.expert_act == "swiglu":
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
            *_combine(spec),
            "    return output",
        ]
    return "\n".join(head + body) + "\n"


def _combine(spec: Spec) -> list[str]:
    """Sorted assignments ``weighted`` back to ``output`` [tokens, d_model]."""
    if spec.combine == "segment_sum":
        return ["    output = jax.ops.segment_sum(weighted, sorted_token_ids, num_segments=num_tokens)"]
    return [
        "    unsorted = jnp.zeros_like(weighted).at[sort_order].set(weighted)",
        "    output = jnp.sum(unsorted.reshape(num_tokens, config.experts_per_token, -1), axis=1)",
    ]


def _dispatch_call(spec: Spec, weights: dict[str, str], indent: int) -> list[str]:
    name = {"dense": "dense_moe", "capacity": "capacity_moe", "sorted": "sorted_moe", "ragged": "ragged_moe"}[
        spec.dispatch
    ]
    out = "expert_output, dropped_fraction" if spec.dispatch in DROPPING else "expert_output"
    args = ", ".join(weights[n] for n in _weights(spec))
    line = f"{out} = {name}(tokens, gate_values, expert_indices, {args}, config)"
    if len(line) + indent > 110:
        return _indent([f"{out} = {name}(", f"    tokens, gate_values, expert_indices, {args}, config", ")"], indent)
    return _indent([line], indent)


def _aux_lines(spec: Spec, indent: int) -> list[str]:
    """Router losses of one MoE layer, bound to ``aux`` (a dict, or one weighted scalar)."""
    lines = ["load_balancing = load_balancing_loss(router_probs, expert_indices, config)"]
    if spec.z_loss:
        lines.append("z_loss = router_z_loss(router_logits)")
    drops = spec.dispatch in DROPPING
    if spec.aux_output == "dict":
        entries = ['"load_balancing_loss": load_balancing']
        if spec.z_loss:
            entries.append('"router_z_loss": z_loss')
        if drops:
            entries.append('"dropped_fraction": dropped_fraction')
        lines.append("aux = {" + ", ".join(entries) + "}")
    else:
        total = "config.aux_loss_coef * load_balancing"
        if spec.z_loss:
            total += " + config.router_z_loss_coef * z_loss"
        if drops:
            lines += [f"aux_loss = {total}", 'aux = {"aux_loss": aux_loss, "dropped_fraction": dropped_fraction}']
        else:
            lines.append(f"aux = {total}")
    return _indent(lines, indent)


def _rope() -> str:
    return (
        "def apply_rope(x: jax.Array, theta: float) -> jax.Array:\n"
        '    """Rotary position embedding of x [..., seq, heads, head_dim] (positions 0..seq-1)."""\n'
        "    seq, head_dim = x.shape[-3], x.shape[-1]\n"
        "    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))\n"
        "    angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]\n"
        "    sin, cos = jnp.sin(angles)[:, None, :], jnp.cos(angles)[:, None, :]\n"
        "    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)\n"
        "    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)\n"
        "    return rotated.astype(x.dtype)\n"
    )


def _attention_fn(spec: Spec) -> str:
    """``causal_attention(q, k, v)`` over ``[..., seq, heads, head_dim]`` (GQA by head groups)."""
    if _uses_dpa(spec):
        return ""
    return (
        "def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:\n"
        '    """Causal grouped-query attention, softmax in float32: q [..., s, h, d], k/v [..., s, kv, d]."""\n'
        "    *lead, seq, num_heads, head_dim = q.shape\n"
        "    num_kv_heads = k.shape[-2]\n"
        "    q = q.reshape(*lead, seq, num_kv_heads, num_heads // num_kv_heads, head_dim)\n"
        '    scores = jnp.einsum("...qhgd,...khd->...hgqk", q, k).astype(jnp.float32) / math.sqrt(head_dim)\n'
        "    causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))\n"
        "    scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)\n"
        "    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)\n"
        '    out = jnp.einsum("...hgqk,...khd->...qhgd", weights, v)\n'
        "    return out.reshape(*lead, seq, num_heads, head_dim)\n"
    )


def _uses_dpa(spec: Spec) -> bool:
    return spec.attention == "dot_product_attention"


def _attend(spec: Spec) -> str:
    if _uses_dpa(spec):
        return "jax.nn.dot_product_attention(q, k, v, is_causal=True)"
    return "causal_attention(q, k, v)"


def _norm_helpers(spec: Spec) -> str:
    if spec.norm == "rms":
        return (
            "def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:\n"
            "    x32 = x.astype(jnp.float32)\n"
            "    normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)\n"
            "    return (normed * scale).astype(x.dtype)\n"
        )
    return (
        "def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:\n"
        "    x32 = x.astype(jnp.float32)\n"
        "    mean = jnp.mean(x32, axis=-1, keepdims=True)\n"
        "    variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)\n"
        "    normed = (x32 - mean) * lax.rsqrt(variance + eps)\n"
        "    return (normed * scale + bias).astype(x.dtype)\n"
    )


# --- plain JAX --------------------------------------------------------------------------------


def _jax_norm_call(spec: Spec, params: str, x: str) -> str:
    if spec.norm == "rms":
        return f'rms_norm({x}, {params}["scale"], config.norm_eps)'
    return f'layer_norm({x}, {params}["scale"], {params}["bias"], config.norm_eps)'


def _jax_norm_init(spec: Spec) -> str:
    """``init_norm(d)``: the parameters of one (float32) norm layer."""
    if spec.norm == "rms":
        return 'def init_norm(d: int) -> dict:\n    return {"scale": jnp.ones((d,), jnp.float32)}\n'
    return (
        "def init_norm(d: int) -> dict:\n"
        '    return {"scale": jnp.ones((d,), jnp.float32), "bias": jnp.zeros((d,), jnp.float32)}\n'
    )


def _jax_ffn_helper(spec: Spec) -> str:
    if spec.expert_act == "swiglu":
        return (
            "def feed_forward(params: dict, x: jax.Array) -> jax.Array:\n"
            '    """Dense SwiGLU MLP: the shared expert every token goes through."""\n'
            '    return (jax.nn.silu(x @ params["w_gate"]) * (x @ params["w_up"])) @ params["w_down"]\n'
        )
    return (
        "def feed_forward(params: dict, x: jax.Array) -> jax.Array:\n"
        '    """Dense GELU MLP: the shared expert every token goes through."""\n'
        '    return jax.nn.gelu(x @ params["w_in"]) @ params["w_out"]\n'
    )


def _jax_moe_init(spec: Spec) -> str:
    c = _config_name(spec)
    w = _weights(spec)
    n_keys = 1 + len(w) + (len(w) + (1 if spec.shared_gate else 0) if spec.shared_expert else 0)
    lines = [
        f"def init_moe(config: {c}, key: jax.Array) -> dict:",
        "    keys = jax.random.split(key, " + str(n_keys) + ")",
        "    dtype = jnp.dtype(config.dtype)",
        "    d, e, f = config.d_model, config.num_experts, config.expert_d_ff",
        "    params = {" if spec.shared_expert else "    return {",
        '        "router": jax.random.normal(keys[0], (d, e), jnp.float32) * d**-0.5,  # router kept in float32',
    ]
    shapes = {
        "w_gate": "(e, d, f)",
        "w_up": "(e, d, f)",
        "w_down": "(e, f, d)",
        "w_in": "(e, d, f)",
        "w_out": "(e, f, d)",
    }
    for i, n in enumerate(w, start=1):
        fan = "f" if n in ("w_down", "w_out") else "d"
        lines.append(f'        "{n}": jax.random.normal(keys[{i}], {shapes[n]}, dtype) * {fan}**-0.5,')
    lines.append("    }")
    k = 1 + len(w)
    if spec.shared_expert:
        sshapes = {"w_gate": "(d, s)", "w_up": "(d, s)", "w_down": "(s, d)", "w_in": "(d, s)", "w_out": "(s, d)"}
        lines.append("    s = config.d_ff")
        lines.append('    params["shared_expert"] = {')
        for n in w:
            fan = "s" if n in ("w_down", "w_out") else "d"
            lines.append(f'        "{n}": jax.random.normal(keys[{k}], {sshapes[n]}, dtype) * {fan}**-0.5,')
            k += 1
        lines.append("    }")
        if spec.shared_gate:
            lines.append(
                f'    params["shared_expert_gate"] = jax.random.normal(keys[{k}], (d, 1), jnp.float32) * d**-0.5'
            )
        lines.append("    return params")
    return "\n".join(lines) + "\n"


def _moe_body(spec: Spec, router_logits: str, weights: dict[str, str], shared: list[str], indent: int) -> list[str]:
    """The MoE layer's body over ``x`` (any leading shape), ending with ``output`` and ``aux``."""
    lines = [
        "tokens = x.reshape(-1, config.d_model)",
        f"router_logits = {router_logits}",
        "router_probs, gate_values, expert_indices = route_tokens(router_logits, config)",
    ]
    lines = _indent(lines, indent) + _dispatch_call(spec, weights, indent)
    if spec.shared_expert:
        lines += _indent(shared, indent)
    lines += _aux_lines(spec, indent)
    return lines


def _jax_shared(spec: Spec) -> list[str]:
    if not spec.shared_gate:
        return ['expert_output = expert_output + feed_forward(params["shared_expert"], tokens)']
    return [
        'shared_output = feed_forward(params["shared_expert"], tokens)',
        'shared_gate = jax.nn.sigmoid(tokens.astype(jnp.float32) @ params["shared_expert_gate"])',
        "expert_output = expert_output + shared_gate.astype(tokens.dtype) * shared_output",
    ]


def _render_jax(spec: Spec) -> tuple[str, str, tuple[str, ...]]:
    """(model code, example_args, transforms) of the plain-JAX style."""
    c = _config_name(spec)
    fn = spec.function_name
    moe_name = fn if spec.scope == "layer" else "moe_layer"
    weights = {n: f'params["{n}"]' for n in _weights(spec)}
    parts = [_jax_moe_init(spec)]
    if spec.shared_expert:
        parts.append(_jax_ffn_helper(spec))
    doc = '    """Mixture-of-experts MLP over x [batch, seq, d_model]: returns the output and router losses."""'
    moe = [f"def {moe_name}(params: dict, x: jax.Array, config: {c}):", doc]
    moe += _moe_body(spec, 'tokens.astype(jnp.float32) @ params["router"]', weights, _jax_shared(spec), 4)
    moe.append("    return expert_output.reshape(x.shape), aux")
    parts.append("\n".join(moe) + "\n")
    transforms: tuple[str, ...] = ()
    if spec.scope == "layer":
        init_name = "init_moe"
        data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))"
    else:
        parts.append(_jax_block(spec))
        if spec.scope == "block":
            parts.append(
                "\n".join(
                    [
                        f"def init_params(config: {c}, key: jax.Array) -> dict:",
                        "    return init_block(config, key)",
                    ]
                )
                + "\n"
            )
            data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))"
        else:
            parts.append(_jax_model(spec))
            data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len), jnp.int32)"
            transforms = ("scan",)
        init_name = "init_params"
    data_name = "tokens" if spec.scope == "stack" else "hidden"
    example = (
        "def example_args():\n"
        f"    config = {c}()\n"
        f"    params = jax.eval_shape(functools.partial({init_name}, config), jax.random.PRNGKey(0))\n"
        f"    {data_name} = {data}\n"
        f"    return params, {data_name}, config\n"
    )
    return "\n\n".join(parts), example, transforms


def _jax_block(spec: Spec) -> str:
    c = _config_name(spec)
    name = spec.function_name if spec.scope == "block" else "moe_block"
    attn_in = _jax_norm_call(spec, 'params["attn_norm"]', "hidden")
    mlp_in = _jax_norm_call(spec, 'params["mlp_norm"]', "hidden")
    lines = [
        f"def init_block(config: {c}, key: jax.Array) -> dict:",
        "    k_q, k_k, k_v, k_o, k_moe = jax.random.split(key, 5)",
        "    dtype = jnp.dtype(config.dtype)",
        "    d, h, kv, hd = config.d_model, config.num_heads, config.num_kv_heads, config.head_dim",
        "    return {",
        '        "attn_norm": init_norm(d),',
        '        "attn": {',
        '            "wq": jax.random.normal(k_q, (d, h, hd), dtype) * d**-0.5,',
        '            "wk": jax.random.normal(k_k, (d, kv, hd), dtype) * d**-0.5,',
        '            "wv": jax.random.normal(k_v, (d, kv, hd), dtype) * d**-0.5,',
        '            "wo": jax.random.normal(k_o, (h, hd, d), dtype) * (h * hd) ** -0.5,',
        "        },",
        '        "mlp_norm": init_norm(d),',
        '        "moe": init_moe(config, k_moe),',
        "    }",
        "",
        "",
        f"def self_attention(params: dict, x: jax.Array, config: {c}) -> jax.Array:",
        '    q = apply_rope(jnp.einsum("bsd,dhk->bshk", x, params["wq"]), config.rope_theta)',
        '    k = apply_rope(jnp.einsum("bsd,dhk->bshk", x, params["wk"]), config.rope_theta)',
        '    v = jnp.einsum("bsd,dhk->bshk", x, params["wv"])',
        f"    attn = {_attend(spec)}",
        '    return jnp.einsum("bshk,hkd->bsd", attn, params["wo"])',
        "",
        "",
        f"def {name}(params: dict, hidden: jax.Array, config: {c}):",
        '    """Pre-norm transformer block: causal self-attention, then the mixture-of-experts MLP.',
        "",
        '    Returns the new hidden states [batch, seq, d_model] and the MoE router losses."""',
        f"    attn_input = {attn_in}",
        '    hidden = hidden + self_attention(params["attn"], attn_input, config)',
        f"    moe_input = {mlp_in}",
        '    moe_output, aux = moe_layer(params["moe"], moe_input, config)',
        "    return hidden + moe_output, aux",
    ]
    return "\n".join(lines) + "\n"


def _jax_model(spec: Spec) -> str:
    c = _config_name(spec)
    fn = spec.function_name
    final_norm = _jax_norm_call(spec, 'params["final_norm"]', "hidden")
    lines = [
        f"def init_params(config: {c}, key: jax.Array) -> dict:",
        "    k_embed, k_layers, k_unembed = jax.random.split(key, 3)",
        "    dtype = jnp.dtype(config.dtype)",
        "    params = {",
        '        "embed": jax.random.normal(k_embed, (config.vocab_size, config.d_model), dtype),',
        "        # one block's parameters stacked along a leading layer axis, for lax.scan",
        '        "layers": jax.vmap(functools.partial(init_block, config))(jax.random.split(k_layers, config.num_layers)),',
        '        "final_norm": init_norm(config.d_model),',
        "    }",
        "    if not config.tie_embeddings:",
        '        params["unembed"] = (',
        "            jax.random.normal(k_unembed, (config.d_model, config.vocab_size), dtype) * config.d_model**-0.5",
        "        )",
        "    return params",
        "",
        "",
        f"def {fn}(params: dict, tokens: jax.Array, config: {c}):",
        '    """Decoder-only MoE language model: token ids [batch, seq] -> float32 logits',
        '    [batch, seq, vocab] and the router losses averaged over layers."""',
        '    hidden = jnp.take(params["embed"], tokens, axis=0)',
        "",
        "    def layer(hidden, block_params):",
        "        hidden, aux = moe_block(block_params, hidden, config)",
        "        return hidden, aux",
        "",
        '    hidden, layer_aux = lax.scan(layer, hidden, params["layers"])',
        f"    hidden = {final_norm}",
        "    if config.tie_embeddings:",
        '        logits = jnp.einsum("bsd,vd->bsv", hidden, params["embed"])',
        "    else:",
        '        logits = hidden @ params["unembed"]',
        "    return logits.astype(jnp.float32), jax.tree.map(jnp.mean, layer_aux)",
    ]
    return "\n".join(lines) + "\n"


# --- Flax NNX ------------------------------------------------------------------------------


def _nnx_norm(spec: Spec, attr: str) -> str:
    cls = "nnx.RMSNorm" if spec.norm == "rms" else "nnx.LayerNorm"
    return f"self.{attr} = {cls}(config.d_model, epsilon=config.norm_eps, dtype=dtype, rngs=rngs)"


def _render_nnx(spec: Spec) -> tuple[str, str, tuple[str, ...]]:
    c = _config_name(spec)
    w = _weights(spec)
    parts = []
    if spec.shared_expert:
        if spec.expert_act == "swiglu":
            ff = [
                "class FeedForward(nnx.Module):",
                '    """Dense SwiGLU MLP (the shared expert)."""',
                "",
                "    def __init__(self, d_model: int, d_ff: int, dtype, *, rngs: nnx.Rngs):",
                "        linear = functools.partial(nnx.Linear, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)",
                "        self.gate_proj = linear(d_model, d_ff)",
                "        self.up_proj = linear(d_model, d_ff)",
                "        self.down_proj = linear(d_ff, d_model)",
                "",
                "    def __call__(self, x: jax.Array) -> jax.Array:",
                "        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))",
            ]
        else:
            ff = [
                "class FeedForward(nnx.Module):",
                '    """Dense GELU MLP (the shared expert)."""',
                "",
                "    def __init__(self, d_model: int, d_ff: int, dtype, *, rngs: nnx.Rngs):",
                "        linear = functools.partial(nnx.Linear, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)",
                "        self.up_proj = linear(d_model, d_ff)",
                "        self.down_proj = linear(d_ff, d_model)",
                "",
                "    def __call__(self, x: jax.Array) -> jax.Array:",
                "        return self.down_proj(jax.nn.gelu(self.up_proj(x)))",
            ]
        parts.append("\n".join(ff) + "\n")
    shapes = {
        "w_gate": "(e, d, f)",
        "w_up": "(e, d, f)",
        "w_down": "(e, f, d)",
        "w_in": "(e, d, f)",
        "w_out": "(e, f, d)",
    }
    moe = [
        "class MoELayer(nnx.Module):",
        '    """Sparse mixture-of-experts MLP with stacked expert weights [num_experts, ...]."""',
        "",
        f"    def __init__(self, config: {c}, *, rngs: nnx.Rngs):",
        "        self.config = config",
        "        dtype = jnp.dtype(config.dtype)",
        "        d, e, f = config.d_model, config.num_experts, config.expert_d_ff",
        "        self.router = nnx.Linear(d, e, use_bias=False, param_dtype=jnp.float32, rngs=rngs)",
    ]
    for n in w:
        fan = "f" if n in ("w_down", "w_out") else "d"
        moe.append(
            f"        self.{n} = nnx.Param(nnx.initializers.normal({fan}**-0.5)(rngs.params(), {shapes[n]}, dtype))"
        )
    if spec.shared_expert:
        moe.append("        self.shared_expert = FeedForward(d, config.d_ff, dtype, rngs=rngs)")
        if spec.shared_gate:
            moe.append(
                "        self.shared_expert_gate = nnx.Linear(d, 1, use_bias=False, param_dtype=jnp.float32, rngs=rngs)"
            )
    moe += [
        "",
        "    def __call__(self, x: jax.Array):",
        '        """x [..., d_model] -> (output of the same shape, router losses)."""',
        "        config = self.config",
    ]
    if spec.shared_gate:
        shared = [
            "shared_gate = jax.nn.sigmoid(self.shared_expert_gate(tokens.astype(jnp.float32)))",
            "expert_output = expert_output + shared_gate.astype(tokens.dtype) * self.shared_expert(tokens)",
        ]
    else:
        shared = ["expert_output = expert_output + self.shared_expert(tokens)"]
    moe += _moe_body(spec, "self.router(tokens.astype(jnp.float32))", {n: f"self.{n}[...]" for n in w}, shared, 8)
    moe.append("        return expert_output.reshape(x.shape), aux")
    parts.append("\n".join(moe) + "\n")
    fn = spec.function_name
    if spec.scope == "layer":
        model = "MoELayer"
        data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))"
        call = [
            f"def {fn}(graphdef: nnx.GraphDef, state: nnx.State, hidden: jax.Array):",
            '    """Runs the MoE layer on hidden [batch, seq, d_model]: (output, router losses)."""',
            "    model = nnx.merge(graphdef, state)",
            "    return model(hidden)",
        ]
    else:
        model = "MoEBlock"
        data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))"
        block = [
            "class Attention(nnx.Module):",
            '    """Causal grouped-query self-attention with rotary embeddings."""',
            "",
            f"    def __init__(self, config: {c}, *, rngs: nnx.Rngs):",
            "        self.config = config",
            "        dtype = jnp.dtype(config.dtype)",
            "        linear = functools.partial(nnx.Linear, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)",
            "        self.q_proj = linear(config.d_model, config.num_heads * config.head_dim)",
            "        self.k_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)",
            "        self.v_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)",
            "        self.o_proj = linear(config.num_heads * config.head_dim, config.d_model)",
            "",
            "    def __call__(self, x: jax.Array) -> jax.Array:",
            "        config = self.config",
            "        batch, seq, _ = x.shape",
            "        q = self.q_proj(x).reshape(batch, seq, config.num_heads, config.head_dim)",
            "        k = self.k_proj(x).reshape(batch, seq, config.num_kv_heads, config.head_dim)",
            "        v = self.v_proj(x).reshape(batch, seq, config.num_kv_heads, config.head_dim)",
            "        q, k = apply_rope(q, config.rope_theta), apply_rope(k, config.rope_theta)",
            f"        attn = {_attend(spec)}",
            "        return self.o_proj(attn.reshape(batch, seq, -1))",
            "",
            "",
            "class MoEBlock(nnx.Module):",
            '    """Pre-norm transformer block: causal self-attention, then a mixture-of-experts MLP."""',
            "",
            f"    def __init__(self, config: {c}, *, rngs: nnx.Rngs):",
            "        dtype = jnp.dtype(config.dtype)",
            "        " + _nnx_norm(spec, "attn_norm"),
            "        self.attention = Attention(config, rngs=rngs)",
            "        " + _nnx_norm(spec, "mlp_norm"),
            "        self.moe = MoELayer(config, rngs=rngs)",
            "",
            "    def __call__(self, hidden: jax.Array):",
            "        hidden = hidden + self.attention(self.attn_norm(hidden))",
            "        moe_output, aux = self.moe(self.mlp_norm(hidden))",
            "        return hidden + moe_output, aux",
        ]
        parts.append("\n".join(block) + "\n")
        call = [
            f"def {fn}(graphdef: nnx.GraphDef, state: nnx.State, hidden: jax.Array):",
            '    """Applies the MoE transformer block to hidden [batch, seq, d_model]: (hidden, router losses)."""',
            "    block = nnx.merge(graphdef, state)",
            "    return block(hidden)",
        ]
    parts.append("\n".join(call) + "\n")
    example = (
        "def example_args():\n"
        f"    config = {c}()\n"
        f"    graphdef, state = nnx.split(nnx.eval_shape(lambda: {model}(config, rngs=nnx.Rngs(0))))\n"
        f"    hidden = {data}\n"
        "    return graphdef, state, hidden\n"
    )
    return "\n\n".join(parts), example, ()


# --- Equinox ------------------------------------------------------------------------------


def _render_eqx(spec: Spec) -> tuple[str, str, tuple[str, ...]]:
    c = _config_name(spec)
    w = _weights(spec)
    parts = []
    shapes = {
        "w_gate": "(e, d, f)",
        "w_up": "(e, d, f)",
        "w_down": "(e, f, d)",
        "w_in": "(e, d, f)",
        "w_out": "(e, f, d)",
    }
    if spec.shared_expert:
        sshapes = {"w_gate": "(d, s)", "w_up": "(d, s)", "w_down": "(s, d)", "w_in": "(d, s)", "w_out": "(s, d)"}
        ff = [
            "class FeedForward(eqx.Module):",
            f'    """Dense {"SwiGLU" if spec.expert_act == "swiglu" else "GELU"} MLP (the shared expert)."""',
            "",
            *[f"    {n}: jax.Array" for n in w],
            "",
            "    def __init__(self, d: int, s: int, dtype, key: jax.Array):",
            f"        keys = jax.random.split(key, {len(w)})",
        ]
        for i, n in enumerate(w):
            fan = "s" if n in ("w_down", "w_out") else "d"
            ff.append(f"        self.{n} = jax.random.normal(keys[{i}], {sshapes[n]}, dtype) * {fan}**-0.5")
        ff += ["", "    def __call__(self, x: jax.Array) -> jax.Array:"]
        if spec.expert_act == "swiglu":
            ff.append("        return (jax.nn.silu(x @ self.w_gate) * (x @ self.w_up)) @ self.w_down")
        else:
            ff.append("        return jax.nn.gelu(x @ self.w_in) @ self.w_out")
        parts.append("\n".join(ff) + "\n")
    n_keys = 1 + len(w) + (1 if spec.shared_expert else 0) + (1 if spec.shared_gate else 0)
    moe = [
        "class MoELayer(eqx.Module):",
        '    """Sparse mixture-of-experts MLP with explicit stacked expert weights [num_experts, ...]."""',
        "",
        "    router: jax.Array",
        *[f"    {n}: jax.Array" for n in w],
    ]
    if spec.shared_expert:
        moe.append("    shared_expert: FeedForward")
    if spec.shared_gate:
        moe.append("    shared_expert_gate: jax.Array")
    moe += [
        f"    config: {c} = eqx.field(static=True)",
        "",
        f"    def __init__(self, config: {c}, key: jax.Array):",
        f"        keys = jax.random.split(key, {n_keys})",
        "        dtype = jnp.dtype(config.dtype)",
        "        d, e, f = config.d_model, config.num_experts, config.expert_d_ff",
        "        self.router = jax.random.normal(keys[0], (d, e), jnp.float32) * d**-0.5",
    ]
    k = 1
    for n in w:
        fan = "f" if n in ("w_down", "w_out") else "d"
        moe.append(f"        self.{n} = jax.random.normal(keys[{k}], {shapes[n]}, dtype) * {fan}**-0.5")
        k += 1
    if spec.shared_expert:
        moe.append(f"        self.shared_expert = FeedForward(d, config.d_ff, dtype, keys[{k}])")
        k += 1
    if spec.shared_gate:
        moe.append(f"        self.shared_expert_gate = jax.random.normal(keys[{k}], (d, 1), jnp.float32) * d**-0.5")
    moe += [
        "        self.config = config",
        "",
        "    def __call__(self, x: jax.Array):",
        '        """x [..., d_model] -> (output of the same shape, router losses)."""',
        "        config = self.config",
    ]
    if spec.shared_gate:
        shared = [
            "shared_gate = jax.nn.sigmoid(tokens.astype(jnp.float32) @ self.shared_expert_gate)",
            "expert_output = expert_output + shared_gate.astype(tokens.dtype) * self.shared_expert(tokens)",
        ]
    else:
        shared = ["expert_output = expert_output + self.shared_expert(tokens)"]
    moe += _moe_body(spec, "tokens.astype(jnp.float32) @ self.router", {n: f"self.{n}" for n in w}, shared, 8)
    moe.append("        return expert_output.reshape(x.shape), aux")
    parts.append("\n".join(moe) + "\n")
    fn = spec.function_name
    data = "jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))"
    transforms: tuple[str, ...] = ()
    if spec.scope == "layer":
        model = "MoELayer"
        call = [
            f"def {fn}(params: MoELayer, static: MoELayer, hidden: jax.Array):",
            '    """Runs the MoE layer on hidden [batch, seq, d_model]: (output, router losses)."""',
            "    model = eqx.combine(params, static)",
            "    return model(hidden)",
        ]
    else:
        model = "MoEBlock"
        transforms = ("vmap",)
        norm = "eqx.nn.RMSNorm" if spec.norm == "rms" else "eqx.nn.LayerNorm"
        block = [
            "class MoEBlock(eqx.Module):",
            '    """Pre-norm transformer block on one sequence [seq, d_model]: causal self-attention',
            '    with rotary embeddings, then a mixture-of-experts MLP."""',
            "",
            f"    attn_norm: {norm}",
            "    wq: jax.Array",
            "    wk: jax.Array",
            "    wv: jax.Array",
            "    wo: jax.Array",
            f"    mlp_norm: {norm}",
            "    moe: MoELayer",
            f"    config: {c} = eqx.field(static=True)",
            "",
            f"    def __init__(self, config: {c}, key: jax.Array):",
            "        k_q, k_k, k_v, k_o, k_moe = jax.random.split(key, 5)",
            "        dtype = jnp.dtype(config.dtype)",
            "        d, h, kv, hd = config.d_model, config.num_heads, config.num_kv_heads, config.head_dim",
            f"        self.attn_norm = {norm}(d, eps=config.norm_eps)",
            "        self.wq = jax.random.normal(k_q, (d, h * hd), dtype) * d**-0.5",
            "        self.wk = jax.random.normal(k_k, (d, kv * hd), dtype) * d**-0.5",
            "        self.wv = jax.random.normal(k_v, (d, kv * hd), dtype) * d**-0.5",
            "        self.wo = jax.random.normal(k_o, (h * hd, d), dtype) * (h * hd) ** -0.5",
            f"        self.mlp_norm = {norm}(d, eps=config.norm_eps)",
            "        self.moe = MoELayer(config, k_moe)",
            "        self.config = config",
            "",
            "    def __call__(self, hidden: jax.Array):",
            "        config = self.config",
            "        seq = hidden.shape[0]",
            "        x = jax.vmap(self.attn_norm)(hidden.astype(jnp.float32)).astype(hidden.dtype)",
            "        q = apply_rope((x @ self.wq).reshape(seq, config.num_heads, config.head_dim), config.rope_theta)",
            "        k = apply_rope((x @ self.wk).reshape(seq, config.num_kv_heads, config.head_dim), config.rope_theta)",
            "        v = (x @ self.wv).reshape(seq, config.num_kv_heads, config.head_dim)",
            f"        attn = {_attend(spec)}",
            "        hidden = hidden + attn.reshape(seq, -1) @ self.wo",
            "        x = jax.vmap(self.mlp_norm)(hidden.astype(jnp.float32)).astype(hidden.dtype)",
            "        moe_output, aux = self.moe(x)",
            "        return hidden + moe_output, aux",
        ]
        parts.append("\n".join(block) + "\n")
        call = [
            f"def {fn}(params: MoEBlock, static: MoEBlock, hidden: jax.Array):",
            '    """Applies the block to each sequence of hidden [batch, seq, d_model]; router losses',
            '    are averaged over the batch."""',
            "    block = eqx.combine(params, static)",
            "    hidden, aux = jax.vmap(block)(hidden)",
            "    return hidden, jax.tree.map(jnp.mean, aux)",
        ]
    parts.append("\n".join(call) + "\n")
    example = (
        "def example_args():\n"
        f"    config = {c}()\n"
        f"    model = eqx.filter_eval_shape({model}, config, jax.random.PRNGKey(0))\n"
        "    params, static = eqx.partition(model, eqx.is_array)\n"
        f"    hidden = {data}\n"
        "    return params, static, hidden\n"
    )
    return "\n\n".join(parts), example, transforms


# --- the module text ------------------------------------------------------------------------


def render(spec: Spec) -> ModelProgram:
    """The program text of ``spec`` (no randomness)."""
    if spec.style == "jax":
        model, example, transforms = _render_jax(spec)
    elif spec.style == "flax_nnx":
        model, example, transforms = _render_nnx(spec)
    else:
        model, example, transforms = _render_eqx(spec)
    helpers = []
    if spec.scope != "layer":
        if spec.style == "jax":
            helpers += [_norm_helpers(spec), _jax_norm_init(spec)]
        helpers.append(_rope())
        helpers.append(_attention_fn(spec))
    helpers.append(_routing(spec))
    if spec.dispatch in ("capacity", "sorted"):
        helpers.append(_expert_ffn(spec))
    helpers.append(_dispatch(spec))
    body = "\n\n".join([_config(spec), *helpers, model, example])
    imports = ["import dataclasses"]
    if "functools." in body:
        imports.append("import functools")
    if "math." in body:
        imports.append("import math")
    # third-party imports as isort orders them: plain imports, then from-imports
    imports.append("")
    if spec.style == "equinox":
        imports.append("import equinox as eqx")
    imports += ["import jax", "import jax.numpy as jnp"]
    if spec.style == "flax_nnx":
        imports.append("from flax import nnx")
    imports.append("from jax import lax")
    source = "\n".join(imports) + "\n\n\n" + body.replace("\n\n\n\n", "\n\n\n")
    source = _spaced(source)
    order = {"scan": 0, "vmap": 1}
    return ModelProgram(
        category=CATEGORY,
        style=spec.style,
        function_name=spec.function_name,
        source=source,
        transforms=tuple(sorted(transforms, key=order.__getitem__)),
    )


def _spaced(source: str) -> str:
    """Two blank lines between top-level definitions (PEP 8), as a formatter leaves them."""
    out: list[str] = []
    for line in source.splitlines():
        top = line.startswith(("def ", "class ", "@dataclasses"))
        if top and out and not out[-1].startswith("@"):
            while out and out[-1] == "":
                out.pop()
            out += ["", ""]
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("layer",): ("dispatch", "expert_act", "router", "shared_expert", "shared_gate", "z_loss"),
    ("block",): ("attention", "dispatch", "expert_act", "norm", "router", "shared_expert", "shared_gate", "z_loss"),
    ("stack",): ("attention", "dispatch", "expert_act", "norm", "router", "shared_expert", "shared_gate", "z_loss"),
}
FAMILY = Family(CATEGORY, sample, render, context=("scope",), structure=STRUCTURE)
