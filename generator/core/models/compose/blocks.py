"""The block library: each block written once (``emit`` writes it in every style), and the
module-level helpers the blocks call (norms, rotary embeddings, masks, attention kernels).

``model_block(spec)`` is the whole model; ``layer_block(spec)`` one residual layer; both
follow ``spec.arch`` exactly and read every size from the config.
"""

from __future__ import annotations

import dataclasses

from .emit import Block, Dense, Norm, Param, Stack
from .moe import moe_block, routing_helpers
from .recurrent import recurrent_block, recurrent_helpers
from .spec import Architecture, Attention, Mlp, ModelSpec

# --- helpers: module-level functions the blocks call ------------------------------------------

RMS_NORM = '''def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    """RMSNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (normed * scale.astype(jnp.float32)).astype(x.dtype)
'''

LAYER_NORM = '''def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * lax.rsqrt(variance + eps)
    return (normed * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)
'''

ROPE_TABLES = '''def rope_frequencies(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """Sine and cosine tables of rotary position embeddings, each (seq_len, head_dim // 2)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.sin(angles), jnp.cos(angles)
'''

ROPE_APPLY = {
    "half": '''def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Rotates the two halves of each head's features; x is (..., seq, heads, head_dim)."""
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    sin, cos = sin[:, None, :], cos[:, None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
''',
    "interleaved": '''def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Rotates interleaved feature pairs (GPT-J style); x is (..., seq, heads, head_dim)."""
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    sin, cos = sin[:, None, :], cos[:, None, :]
    return jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(x.shape).astype(x.dtype)
''',
}

CAUSAL_MASK = '''def causal_mask(seq_len: int) -> jax.Array:
    """(seq_len, seq_len) booleans: each query sees itself and the keys before it."""
    return jnp.tril(jnp.ones((seq_len, seq_len), dtype=jnp.bool_))
'''

SLIDING_MASK = '''def sliding_window_mask(seq_len: int, window_size: int) -> jax.Array:
    """(seq_len, seq_len) booleans: each query sees itself and the window_size - 1 keys before it."""
    q_pos = jnp.arange(seq_len)[:, None]
    k_pos = jnp.arange(seq_len)[None, :]
    return (k_pos <= q_pos) & (q_pos - k_pos < window_size)
'''

CONSTRAIN = '''def constrain(x: jax.Array, spec: P) -> jax.Array:
    """Pins an activation's layout on the mesh (GSPMD propagates it from here)."""
    return lax.with_sharding_constraint(x, NamedSharding(MESH, spec))
'''


def attend_helper(attention: Attention, local: bool, hybrid: bool) -> str:
    """``attend(q, k, v[, mask][, config])``: q is (..., seq, heads, head_dim), k and v have the
    KV heads."""
    if attention.impl == "dpa":
        causal = "True" if attention.causal else "False"
        window = ", local_window_size=(config.window_size - 1, 0)" if local else ""
        config = ", config" if local else ""
        return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array{config}) -> jax.Array:
    """Attention by jax.nn.dot_product_attention, in float32; k and v may have fewer heads than q."""
    out = jax.nn.dot_product_attention(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), is_causal={causal}{window}
    )
    return out.astype(q.dtype)
'''
    masked = attention.causal or local
    mask_param = ", mask: jax.Array" if masked else ""
    softcap = (
        "    logits = config.attn_logit_softcap * jnp.tanh(logits / config.attn_logit_softcap)\n"
        if attention.softcap
        else ""
    )
    mask = "    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)\n" if masked else ""
    if attention.impl == "grouped":
        return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array{mask_param}, config) -> jax.Array:
    """Grouped-query attention in float32: each KV head serves num_heads // num_kv_heads query heads."""
    groups = config.num_heads // config.num_kv_heads
    q = q.reshape(*q.shape[:-2], config.num_kv_heads, groups, config.head_dim)
    logits = jnp.einsum("...tkgd,...skd->...kgts", q, k, preferred_element_type=jnp.float32)
    logits = logits * config.head_dim**-0.5
{softcap}{mask}    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("...kgts,...skd->...tkgd", weights, v, preferred_element_type=jnp.float32).astype(v.dtype)
    return out.reshape(*out.shape[:-3], config.num_heads, config.head_dim)
'''
    return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array{mask_param}, config) -> jax.Array:
    """Softmax attention in float32 over KV heads repeated to match the query heads."""
    k = jnp.repeat(k, config.num_heads // config.num_kv_heads, axis=-2)
    v = jnp.repeat(v, config.num_heads // config.num_kv_heads, axis=-2)
    logits = jnp.einsum("...thd,...shd->...hts", q, k, preferred_element_type=jnp.float32)
    logits = logits * config.head_dim**-0.5
{softcap}{mask}    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("...hts,...shd->...thd", weights, v, preferred_element_type=jnp.float32).astype(v.dtype)
'''


def helpers(spec: ModelSpec, hand_written_norms: bool) -> list[str]:
    """The module-level functions ``spec``'s blocks call, in the order a module defines them."""
    arch, attention = spec.arch, spec.arch.layer.attention
    out = []
    if arch.sharding != "none":
        out.append(CONSTRAIN)
    if arch.task == "moe_layer":
        return out
    if hand_written_norms:
        norms = {arch.layer.norm} | ({"rms"} if attention.qk_norm else set())
        out += [RMS_NORM] * ("rms" in norms) + [LAYER_NORM] * ("layer" in norms)
    if arch.layer.recurrent is not None:
        out += recurrent_helpers(arch.layer.recurrent, spec.style)
    if not arch.attends:
        return out
    if attention.rope != "none":
        out += [ROPE_TABLES, ROPE_APPLY[attention.rope]]
    if needs_mask(arch, "global"):
        out.append(CAUSAL_MASK)
    if needs_mask(arch, "local"):
        out.append(SLIDING_MASK)
    out.append(attend_helper(attention, arch.local, arch.hybrid))
    return out


def moe_helpers(spec: ModelSpec) -> list[str]:
    moe = spec.arch.layer.moe
    return routing_helpers(moe, spec.sizes.experts_per_token) if moe is not None else []


def needs_mask(arch: Architecture, kind: str) -> bool:
    """Whether layers of ``kind`` take a mask array (``dot_product_attention`` builds its own)."""
    if arch.layer.attention.impl == "dpa" or kind not in arch.pattern or kind == "recurrent":
        return False
    return kind == "local" or arch.layer.attention.causal


# --- blocks -------------------------------------------------------------------------------


def attention_block(attention: Attention, takes_mask: bool, local: bool) -> Block:
    heads = "config.num_heads * config.head_dim"
    kv = "config.num_kv_heads * config.head_dim"
    bias = attention.qkv_bias
    children: list = [
        Dense("q_proj", "config.d_model", heads, ("embed", "heads"), bias),
        Dense("k_proj", "config.d_model", kv, ("embed", "kv"), bias),
        Dense("v_proj", "config.d_model", kv, ("embed", "kv"), bias),
    ]
    lines = [
        "q = @q_proj(x).reshape(*x.shape[:-1], config.num_heads, config.head_dim)",
        "k = @k_proj(x).reshape(*x.shape[:-1], config.num_kv_heads, config.head_dim)",
        "v = @v_proj(x).reshape(*x.shape[:-1], config.num_kv_heads, config.head_dim)",
    ]
    if attention.qk_norm:
        children += [Norm("q_norm", "rms", "config.head_dim", 3), Norm("k_norm", "rms", "config.head_dim", 3)]
        lines.append("q, k = @q_norm(q), @k_norm(k)")
    args = ["x"]
    if attention.rope != "none":
        args += ["sin", "cos"]
        lines.append("q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)")
    lines.append("% q: batch, None, heads, None")
    call = ["q", "k", "v"]
    if takes_mask:
        args.append("mask")
        call.append("mask")
    if attention.impl != "dpa" or local:
        call.append("config")
    lines.append(f"out = attend({', '.join(call)})")
    lines.append("return @o_proj(out.reshape(*x.shape[:-1], -1))")
    children.append(Dense("o_proj", heads, "config.d_model", ("heads", "embed")))
    parts = ["grouped-query" if attention.impl != "dpa" else "dot-product", "self-attention"]
    if attention.rope != "none":
        parts.append("with rotary position embeddings")
    if attention.qk_norm:
        parts.append("and query/key RMSNorm")
    text = " ".join(parts)
    return Block("Attention", text[0].upper() + text[1:] + ".", tuple(args), "\n".join(lines), (), tuple(children))


def mlp_block(mlp: Mlp) -> Block:
    act = {
        "swiglu": "jax.nn.silu({})",
        "geglu": "jax.nn.gelu({}, approximate=True)",
        "gelu": "jax.nn.gelu({})",
        "relu2": "jnp.square(jax.nn.relu({}))",
    }[mlp.activation]
    children: list = []
    if mlp.gated:
        children.append(Dense("gate_proj", "config.d_model", "config.d_ff", ("embed", "mlp"), mlp.bias))
        hidden = f"hidden = {act.format('@gate_proj(x)')} * @up_proj(x)"
    else:
        hidden = f"hidden = {act.format('@up_proj(x)')}"
    children += [
        Dense("up_proj", "config.d_model", "config.d_ff", ("embed", "mlp"), mlp.bias),
        Dense("down_proj", "config.d_ff", "config.d_model", ("mlp", "embed"), mlp.bias),
    ]
    body = "\n".join([hidden, "% hidden: batch, None, mlp", "return @down_proj(hidden)"])
    doc = {"swiglu": "SwiGLU", "geglu": "GeGLU", "gelu": "GELU", "relu2": "Squared-ReLU"}[mlp.activation]
    return Block("MLP", f"{doc} feed-forward network.", ("x",), body, (), tuple(children))


def layer_block(arch: Architecture, kind: str = "global", cls: str = "DecoderLayer") -> Block:
    """One residual layer of ``arch``; ``kind`` says which mask a pattern position uses. A layer
    whose channel mixer is a mixture of experts returns ``(x, aux)``."""
    layer = arch.layer
    takes_mask = needs_mask(arch, kind)
    rope = layer.attention.rope != "none" and kind != "recurrent"
    attn_args = ", ".join(["sin", "cos"] * rope + ["mask"] * takes_mask)
    attn_args = ", " + attn_args if attn_args else ""
    args = ("x", *(["sin", "cos"] if rope else []), *(["mask"] if takes_mask else []))
    norm = layer.norm
    if kind == "recurrent":
        mixer = recurrent_block(layer.recurrent)
        if layer.placement == "plain":  # a classic RNN stack: one cell after another
            return dataclasses.replace(
                mixer, cls=cls, doc=mixer.doc.replace("over the sequence", "layer over the sequence")
            )
        children: list = [_named(mixer, "mixer")]
    else:
        children = [_named(attention_block(layer.attention, takes_mask, kind == "local"), "attn")]
    mixer_name = children[0].name
    if not layer.mlp.activation and layer.moe is None:  # a token mixer alone (Mamba's layer)
        norms = [Norm("norm", norm, "config.d_model")]
        lines = [f"x = x + @{mixer_name}(@norm(x){attn_args})", "% x: batch, None, None", "return x"]
        doc = f"Pre-norm residual layer: {children[0].doc[0].lower()}{children[0].doc[1:].rstrip('.')}."
        return Block(cls, doc, args, "\n".join(lines), (), (*norms, *children))
    if layer.moe is None:
        children.append(_named(mlp_block(layer.mlp), "mlp"))
        mix, mixer = [], "@mlp({})"
    else:
        shared = mlp_block(layer.mlp) if layer.moe.shared_expert else None
        children.append(_named(moe_block(layer.moe, shared), "moe"))
        mix, mixer = ["moe_out, aux = @moe({})"], "moe_out"
    an = "mixer" if kind == "recurrent" else "attn"  # the token mixer's norms are named for it
    placement = layer.placement
    if placement == "parallel":
        norms = [Norm("norm", norm, "config.d_model")]
        lines = [
            "h = @norm(x)",
            *(m.format("h") for m in mix),
            f"x = x + @{mixer_name}(h{attn_args}) + {mixer.format('h')}",
        ]
    elif placement == "pre":
        norms = [Norm(f"{an}_norm", norm, "config.d_model"), Norm("mlp_norm", norm, "config.d_model")]
        lines = [f"x = x + @{mixer_name}(@{an}_norm(x){attn_args})"]
        lines += [m.format("@mlp_norm(x)") for m in mix] + [f"x = x + {mixer.format('@mlp_norm(x)')}"]
    elif placement == "post":
        norms = [Norm(f"{an}_norm", norm, "config.d_model"), Norm("mlp_norm", norm, "config.d_model")]
        lines = [f"x = x + @{an}_norm(@{mixer_name}(x{attn_args}))"]
        lines += [m.format("x") for m in mix] + [f"x = x + @mlp_norm({mixer.format('x')})"]
    else:
        norms = [
            Norm(n, norm, "config.d_model")
            for n in (f"pre_{an}_norm", f"post_{an}_norm", "pre_mlp_norm", "post_mlp_norm")
        ]
        lines = [f"x = x + @post_{an}_norm(@{mixer_name}(@pre_{an}_norm(x){attn_args}))"]
        lines += [m.format("@pre_mlp_norm(x)") for m in mix]
        lines += [f"x = x + @post_mlp_norm({mixer.format('@pre_mlp_norm(x)')})"]
    lines += ["% x: batch, None, None", "return x" if layer.moe is None else "return x, aux"]
    what = {
        "pre": "Pre-norm",
        "post": "Post-norm (OLMo 2 style)",
        "sandwich": "Sandwich-norm (Gemma 2 style)",
        "parallel": "Parallel (GPT-J style)",
    }[placement]
    window = ", sliding-window attention" if kind == "local" else ""
    channel = "the MLP" if layer.moe is None else "the mixture of experts"
    token = "the recurrent block" if kind == "recurrent" else "attention"
    doc = f"{what} residual layer{window}: {token}, then {channel}."
    if placement == "parallel":
        doc = f"{what} residual layer{window}: {token} and {channel} read the same normed input."
    returns = "jax.Array" if layer.moe is None else f"tuple[jax.Array, {children[1].returns.split(', ', 1)[1]}"
    return Block(cls, doc, args, "\n".join(lines), (), (*norms, *children), returns)


def _named(block: Block, name: str) -> Block:
    return dataclasses.replace(block, name=name)


def _masked_kinds(arch: Architecture) -> list[str]:
    return [k for k in ("local", "global") if needs_mask(arch, k)]


def _rope_args(arch: Architecture) -> list[str]:
    return ["sin", "cos"] if arch.attends and arch.layer.attention.rope != "none" else []


def group_block(arch: Architecture) -> Block:
    """The repeating period of a hybrid pattern: one layer per position, each with its mask."""
    recurrent = "recurrent" in arch.pattern
    classes = {
        "recurrent": "RecurrentLayer",
        "local": "AttentionLayer" if recurrent else "DecoderLayer",
        "global": "AttentionLayer" if recurrent else "DecoderLayer",
    }
    rope = _rope_args(arch)
    lines, layers = [], []
    for i, kind in enumerate(arch.pattern):
        both = len(_masked_kinds(arch)) > 1  # local and global layers: one class, told its mask
        layer = layer_block(arch, "global" if both and kind == "local" else kind, classes[kind])
        if kind != "recurrent" and both:
            layer = dataclasses.replace(layer, doc=_hybrid_doc(layer.doc))
        layers.append(_named(layer, f"layer_{i}"))
        args = ["x"] if kind == "recurrent" else ["x", *rope, *([f"{kind}_mask"] if needs_mask(arch, kind) else [])]
        lines.append(f"x = @layer_{i}({', '.join(args)})")
    lines.append("return x")
    described = " and ".join(f"{arch.pattern.count(k)} {k}" for k in dict.fromkeys(arch.pattern))
    doc = f"A repeating group of layers: {described}."
    masks = [f"{k}_mask" for k in _masked_kinds(arch)]
    return Block("LayerGroup", doc, ("x", *rope, *masks), "\n".join(lines), (), tuple(layers))


def _hybrid_doc(doc: str) -> str:
    return doc.replace(": attention", ": attention under the mask it is given", 1)


def layer_args(arch: Architecture) -> list[str]:
    """What the model passes each repeated layer (or group) besides the hidden states."""
    args = _rope_args(arch)
    if arch.hybrid:
        return [*args, *(f"{k}_mask" for k in _masked_kinds(arch))]
    kind = arch.pattern[0]
    return [*args, "mask"] if needs_mask(arch, kind) else args


def mask_lines(arch: Architecture) -> list[str]:
    """The lines that build the masks ``layer_args`` names (``seq_len`` is in scope)."""
    build = {"local": "sliding_window_mask(seq_len, config.window_size)", "global": "causal_mask(seq_len)"}
    if arch.hybrid:
        return [f"{k}_mask = {build[k]}" for k in _masked_kinds(arch)]
    kind = arch.pattern[0]
    return [f"mask = {build[kind]}"] if needs_mask(arch, kind) else []


def stacked_layers(arch: Architecture) -> Stack:
    if arch.hybrid:
        return Stack("groups", group_block(arch), "config.num_layer_groups", arch.layout == "scan", arch.remat)
    return Stack("layers", layer_block(arch, arch.pattern[0]), "config.num_layers", arch.layout == "scan", arch.remat)


def model_block(arch: Architecture, cls: str) -> Block:
    """A whole model: token embedding, the stacked layers, a final norm and a head."""
    stack = stacked_layers(arch)
    params = [Param("embed", ("config.vocab_size", "config.d_model"), "normal", "", ("vocab", "embed"))]
    lines = ["h = jnp.take($embed, tokens, axis=0)"]
    if _rope_args(arch) or mask_lines(arch) or arch.learned_positions:
        lines.insert(0, "seq_len = tokens.shape[-1]")
    if arch.scale_embeddings:
        lines.append("h = h * jnp.asarray(config.d_model**0.5, h.dtype)")
    if arch.learned_positions:
        params.append(
            Param("pos_embed", ("config.max_seq_len", "config.d_model"), "normal", "config.d_model", (None, "embed"))
        )
        lines.append("h = h + $pos_embed[:seq_len]")
    lines.append("% h: batch, None, None")
    if _rope_args(arch):
        lines.append("sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)")
    lines += mask_lines(arch)
    aux = ", aux" if arch.layer.moe is not None else ""
    lines.append(f"h{aux} = @{stack.name}*({', '.join(['h', *layer_args(arch)])})")
    lines.append("h = @final_norm(h)")
    children: list = [stack, Norm("final_norm", arch.layer.norm, "config.d_model")]
    if arch.task == "classifier":
        per_token = arch.pooling == "none"
        children.append(
            Dense("classifier", "config.d_model", "config.num_classes", ("embed", None), rank=2 if per_token else 1)
        )
        pool = {
            "mean": "pooled = jnp.mean(h, axis=-2)",
            "max": "pooled = jnp.max(h, axis=-2)",
            "first": "pooled = h[..., 0, :]",
            "last": "pooled = h[..., -1, :]",
        }
        if per_token:
            lines.append(f"return @classifier(h){aux}")
        else:
            lines += [pool[arch.pooling], f"return @classifier(pooled){aux}"]
        body = "a recurrent stack" if arch.layer.recurrent is not None and not arch.attends else "bidirectional layers"
        head = (
            "a classifier on every token"
            if per_token
            else f"{arch.pooling} pooling over the sequence, a classifier head"
        )
        doc = f"Sequence classifier: embeddings, {body}, {head}."
        return Block(cls, doc, ("tokens",), "\n".join(lines), tuple(params), tuple(children))
    if arch.tied:
        lines.append('logits = jnp.einsum("...d,vd->...v", h, $embed, preferred_element_type=jnp.float32)')
    else:
        children.append(Dense("lm_head", "config.d_model", "config.vocab_size", ("embed", "vocab")))
        lines.append("logits = @lm_head(h)")
    if arch.final_softcap:
        lines.append("logits = config.final_logit_softcap * jnp.tanh(logits / config.final_logit_softcap)")
    lines.append("% logits: batch, None, vocab")
    lines.append("return " + ", ".join(["logits", *(["h"] if arch.return_hidden else []), *(["aux"] if aux else [])]))
    head = "tied unembedding" if arch.tied else "an output projection"
    doc = f"Decoder-only language model: token embedding, {_layers_doc(arch)}, a final norm and {head}."
    outputs = ["jax.Array"] * (1 + arch.return_hidden) + ([stack.block.returns.split(", ", 1)[1][:-1]] if aux else [])
    returns = f"tuple[{', '.join(outputs)}]" if len(outputs) > 1 else "jax.Array"
    return Block(cls, doc, ("tokens",), "\n".join(lines), tuple(params), tuple(children), returns)


def _layers_doc(arch: Architecture) -> str:
    what = "groups of layers" if arch.hybrid else "layers"
    return f"{what} under lax.scan" if arch.layout == "scan" else what
