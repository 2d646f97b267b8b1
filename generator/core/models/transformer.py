"""transformer: forward passes of decoder-only transformers, as JAX users write them.

A program is either one pre-norm decoder block (``hidden -> hidden``) or a small language
model (token embedding -> decoder blocks -> final norm -> logits). Across draws: multi-head,
grouped-query and multi-query attention (einsum over grouped heads, repeated KV heads, or
``jax.nn.dot_product_attention``); rotary position embeddings (half-split or interleaved
pairs) whose tables are built in the function; RMSNorm or LayerNorm computed in float32;
SwiGLU, GeGLU or GELU MLPs; causal or sliding-window masks; Gemma-2 style soft-capping of
attention and final logits; tied or separate unembeddings; 1-4 layers unrolled in Python or
6-48 layers under ``lax.scan`` over stacked parameters (optionally ``jax.checkpoint``-ed,
with or without a policy); bfloat16 or float32 parameters.

Three styles: plain JAX (``init_params`` returns a dict pytree, ``forward(params, tokens,
config)``), Flax NNX (``nnx.Module`` classes, ``forward(graphdef, state, tokens)``) and
Equinox (``eqx.Module`` classes applied per sequence and vmapped, ``forward(params, static,
tokens)``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import (
    D_MODELS,
    SEQ_LENS,
    VOCAB_SIZES,
    Family,
    ModelProgram,
    attention_heads,
    batch_size,
    config_class,
    ffn_dim,
    pick,
)

CATEGORY = "transformer"

VARIANTS = ("lm", "block")
LAYOUTS = ("unrolled", "scan")
ATTENTIONS = ("mha", "grouped", "repeat", "dpa")  # "mha" only when every head has its own KV head
NORMS = ("rms", "layer")
MLPS = ("swiglu", "geglu", "gelu")
ROPES = ("half", "interleaved")
REMATS = ("none", "checkpoint", "policy")
CHECKPOINT_POLICIES = (
    "nothing_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots",
)
SCAN_LAYERS = (6, 8, 12, 16, 18, 24, 26, 28, 32, 36, 40, 42, 48)
WINDOW_SIZES = (128, 256, 512, 1024, 2048, 4096)

LM_FUNCTION_NAMES = ("forward", "apply_model", "compute_logits", "transformer_forward")
BLOCK_FUNCTION_NAMES = ("apply_block", "decoder_layer_forward", "block_forward")
LM_CONFIG_NAMES = ("TransformerConfig", "ModelConfig", "LMConfig", "DecoderConfig")
BLOCK_CONFIG_NAMES = ("BlockConfig", "TransformerConfig", "DecoderConfig", "LayerConfig")

# Shape budgets (only shapes: nothing is allocated at lowering, but keep programs realistic).
LM_TOKENS_CAP = 1 << 16  # batch * seq for a language model
LM_LOGITS_CAP = 1 << 31  # batch * seq * vocab
BLOCK_TOKENS_CAP = 1 << 17  # batch * seq for a single block
SCORES_CAP = 1 << 33  # batch * heads * seq * seq


@dataclass(frozen=True)
class Spec:
    """Every choice of one transformer program.

    Attributes:
      style: ``"jax"``, ``"flax_nnx"`` or ``"equinox"``.
      variant: ``"lm"`` (embedding -> blocks -> norm -> logits) or ``"block"`` (one decoder block).
      layout: ``"unrolled"`` (a Python loop over layers) or ``"scan"`` (``lax.scan`` over
        stacked layer parameters); a block is ``"unrolled"`` with one layer.
      remat: ``"none"``, ``"checkpoint"`` (plain ``jax.checkpoint`` of the scanned layer) or
        ``"policy"`` (``jax.checkpoint`` with ``checkpoint_policy``).
      attention: ``"mha"``, ``"grouped"`` (einsum over KV groups), ``"repeat"`` (KV heads
        repeated) or ``"dpa"`` (``jax.nn.dot_product_attention``).
      window_size: sliding-window width, 0 for a plain causal mask.
      attn_softcap / final_softcap: soft-capping constants, 0.0 for none.
    """

    style: str
    variant: str
    layout: str
    remat: str
    checkpoint_policy: str
    attention: str
    norm: str
    mlp: str
    rope: str
    dtype: str
    tied: bool
    scale_embeddings: bool
    return_hidden: bool
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    seq_len: int
    batch_size: int
    window_size: int
    attn_softcap: float
    final_softcap: float
    rope_theta: float
    norm_eps: float
    function_name: str
    config_name: str


# --- sampling ---------------------------------------------------------------------------


def sample(rng: random.Random) -> Spec:
    """A random transformer spec at real size."""
    style = pick(rng, ("jax", "flax_nnx", "equinox"))
    variant = "lm" if rng.random() < 0.7 else "block"
    d_model = pick(rng, D_MODELS)
    num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model)
    mlp = pick(rng, MLPS)
    d_ff = ffn_dim(rng, d_model, gated=mlp != "gelu")
    vocab_size = pick(rng, VOCAB_SIZES) if variant == "lm" else 0

    seq = pick(rng, SEQ_LENS)
    tokens_cap = LM_TOKENS_CAP if variant == "lm" else BLOCK_TOKENS_CAP
    if variant == "lm":
        tokens_cap = min(tokens_cap, LM_LOGITS_CAP // vocab_size)
    tokens_cap = min(tokens_cap, SCORES_CAP // (num_heads * seq))
    batch = batch_size(rng, tokens_cap=tokens_cap, seq=seq)

    if variant == "lm" and rng.random() < 0.5:
        layout, num_layers = "scan", pick(rng, SCAN_LAYERS)
        remat = pick(rng, ("none", "none", "checkpoint", "policy"))
    else:
        layout, num_layers, remat = "unrolled", (rng.randint(1, 4) if variant == "lm" else 1), "none"
    checkpoint_policy = pick(rng, CHECKPOINT_POLICIES) if remat == "policy" else ""

    windows = [w for w in WINDOW_SIZES if w < seq]
    window_size = pick(rng, windows) if windows and rng.random() < 0.35 else 0
    attn_softcap = pick(rng, (30.0, 50.0)) if rng.random() < 0.25 else 0.0
    final_softcap = pick(rng, (15.0, 30.0)) if variant == "lm" and rng.random() < 0.25 else 0.0

    if num_kv_heads == num_heads:
        kinds = ["mha", "mha", "dpa"]
    else:
        kinds = ["grouped", "grouped", "repeat", "dpa"]
    if attn_softcap:  # dot_product_attention has no soft-capping
        kinds = [k for k in kinds if k != "dpa"]
    attention = pick(rng, kinds)

    tied = variant == "lm" and rng.random() < 0.4
    return Spec(
        style=style,
        variant=variant,
        layout=layout,
        remat=remat,
        checkpoint_policy=checkpoint_policy,
        attention=attention,
        norm="rms" if rng.random() < 0.65 else "layer",
        mlp=mlp,
        rope=pick(rng, ROPES),
        dtype="bfloat16" if rng.random() < 0.7 else "float32",
        tied=tied,
        scale_embeddings=variant == "lm" and rng.random() < (0.6 if tied else 0.15),
        return_hidden=variant == "lm" and rng.random() < 0.2,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        d_ff=d_ff,
        vocab_size=vocab_size,
        seq_len=seq,
        batch_size=batch,
        window_size=window_size,
        attn_softcap=attn_softcap,
        final_softcap=final_softcap,
        rope_theta=pick(rng, (10_000.0, 10_000.0, 500_000.0, 1_000_000.0)),
        norm_eps=pick(rng, (1e-5, 1e-6)),
        function_name=pick(rng, LM_FUNCTION_NAMES if variant == "lm" else BLOCK_FUNCTION_NAMES),
        config_name=pick(rng, LM_CONFIG_NAMES if variant == "lm" else BLOCK_CONFIG_NAMES),
    )


# --- rendering: pieces every style shares ---------------------------------------------------


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def _config(spec: Spec) -> str:
    lm = spec.variant == "lm"
    fields: list[tuple[str, str, object]] = []
    if lm:
        fields.append(("vocab_size", "int", spec.vocab_size))
    fields.append(("d_model", "int", spec.d_model))
    if lm:
        fields.append(("num_layers", "int", spec.num_layers))
    fields += [
        ("num_heads", "int", spec.num_heads),
        ("num_kv_heads", "int", spec.num_kv_heads),
        ("head_dim", "int", spec.head_dim),
        ("d_ff", "int", spec.d_ff),
    ]
    if spec.window_size:
        fields.append(("window_size", "int", spec.window_size))
    fields += [
        ("batch_size", "int", spec.batch_size),
        ("seq_len", "int", spec.seq_len),
        ("rope_theta", "float", spec.rope_theta),
        ("norm_eps", "float", spec.norm_eps),
    ]
    if spec.attn_softcap:
        fields.append(("attn_logit_softcap", "float", spec.attn_softcap))
    if spec.final_softcap:
        fields.append(("final_logit_softcap", "float", spec.final_softcap))
    fields.append(("dtype", "str", spec.dtype))
    doc = "Sizes and constants of a decoder-only transformer." if lm else "Sizes and constants of one decoder block."
    return config_class(spec.config_name, fields, doc)


def _uses_mask(spec: Spec) -> bool:
    return spec.attention != "dpa"


def _rope_helpers(spec: Spec) -> str:
    tables = '''def rope_frequencies(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """Sine and cosine tables of rotary position embeddings, each (seq_len, head_dim // 2)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    positions = jnp.arange(seq_len, dtype=jnp.float32)
    angles = positions[:, None] * inv_freq[None, :]
    return jnp.sin(angles), jnp.cos(angles)
'''
    if spec.rope == "half":
        apply = '''def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Rotates the two halves of each head's features; x is (..., seq, heads, head_dim)."""
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    sin, cos = sin[:, None, :], cos[:, None, :]
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)
'''
    else:
        apply = '''def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Rotates interleaved feature pairs (GPT-J style); x is (..., seq, heads, head_dim)."""
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    sin, cos = sin[:, None, :], cos[:, None, :]
    rotated = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)
'''
    return tables + "\n\n" + apply


def _mask_helper(spec: Spec) -> str:
    if spec.window_size:
        return '''def sliding_window_mask(seq_len: int, window_size: int) -> jax.Array:
    """(seq_len, seq_len) booleans: each query sees itself and the window_size - 1 keys before it."""
    q_pos = jnp.arange(seq_len)[:, None]
    k_pos = jnp.arange(seq_len)[None, :]
    return (k_pos <= q_pos) & (q_pos - k_pos < window_size)
'''
    return '''def causal_mask(seq_len: int) -> jax.Array:
    """(seq_len, seq_len) booleans: each query sees itself and the keys before it."""
    return jnp.tril(jnp.ones((seq_len, seq_len), dtype=jnp.bool_))
'''


def _mask_call(spec: Spec, seq: str) -> str:
    if spec.window_size:
        return f"sliding_window_mask({seq}, config.window_size)"
    return f"causal_mask({seq})"


def _attend_helper(spec: Spec) -> str:
    """``attend(q, k, v[, mask], config)``: q (..., seq, heads, head_dim), k/v with KV heads."""
    if spec.attention == "dpa":
        window = ", local_window_size=(config.window_size - 1, 0)" if spec.window_size else ""
        what = "sliding-window" if spec.window_size else "causal"
        config_param = ", config" if spec.window_size else ""
        if spec.dtype == "float32":
            return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array{config_param}) -> jax.Array:
    """{what.capitalize()} attention; q is (..., seq, heads, head_dim), k and v have num_kv_heads heads."""
    return jax.nn.dot_product_attention(q, k, v, is_causal=True{window})
'''
        return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array{config_param}) -> jax.Array:
    """{what.capitalize()} attention computed in float32; q is (..., seq, heads, head_dim), k and v have num_kv_heads heads."""
    out = jax.nn.dot_product_attention(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), is_causal=True{window}
    )
    return out.astype(q.dtype)
'''
    softcap = (
        "    logits = config.attn_logit_softcap * jnp.tanh(logits / config.attn_logit_softcap)\n"
        if spec.attn_softcap
        else ""
    )
    if spec.attention == "grouped":
        return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, config) -> jax.Array:
    """Grouped-query attention: each KV head serves num_heads // num_kv_heads query heads.

    q is (..., seq, num_heads, head_dim); k and v are (..., seq, num_kv_heads, head_dim).
    """
    groups = config.num_heads // config.num_kv_heads
    q = q.reshape(*q.shape[:-2], config.num_kv_heads, groups, config.head_dim)
    logits = jnp.einsum("...tkgd,...skd->...kgts", q, k, preferred_element_type=jnp.float32)
    logits = logits * config.head_dim**-0.5
{softcap}    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    attn_weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("...kgts,...skd->...tkgd", attn_weights, v, preferred_element_type=jnp.float32).astype(v.dtype)
    return out.reshape(*out.shape[:-3], config.num_heads, config.head_dim)
'''
    repeat = ""
    if spec.attention == "repeat":
        repeat = (
            "    k = jnp.repeat(k, config.num_heads // config.num_kv_heads, axis=-2)\n"
            "    v = jnp.repeat(v, config.num_heads // config.num_kv_heads, axis=-2)\n"
        )
    return f'''def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, config) -> jax.Array:
    """Masked softmax attention in float32; q, k, v are (..., seq, heads, head_dim)."""
{repeat}    logits = jnp.einsum("...thd,...shd->...hts", q, k, preferred_element_type=jnp.float32)
    logits = logits * config.head_dim**-0.5
{softcap}    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    attn_weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("...hts,...shd->...thd", attn_weights, v, preferred_element_type=jnp.float32).astype(v.dtype)
'''


def _attend_call(spec: Spec) -> str:
    if _uses_mask(spec):
        return "attend(q, k, v, mask, config)"
    return "attend(q, k, v, config)" if spec.window_size else "attend(q, k, v)"


def _mlp_activation(spec: Spec, gate: str, up: str) -> str:
    if spec.mlp == "swiglu":
        return f"jax.nn.silu({gate}) * {up}"
    if spec.mlp == "geglu":
        return f"jax.nn.gelu({gate}, approximate=True) * {up}"
    return f"jax.nn.gelu({gate})"


def _logits_tail(spec: Spec, indent: int) -> str:
    lines = []
    if spec.final_softcap:
        lines.append("logits = config.final_logit_softcap * jnp.tanh(logits / config.final_logit_softcap)")
    lines.append("return logits, hidden" if spec.return_hidden else "return logits")
    return _indent("\n".join(lines), indent)


def _checkpoint_decorator(spec: Spec) -> str:
    if spec.remat == "checkpoint":
        return "@jax.checkpoint\n"
    if spec.remat == "policy":
        return f"@functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.{spec.checkpoint_policy})\n"
    return ""


def _module_doc(spec: Spec) -> str:
    style = {"jax": "plain JAX", "flax_nnx": "Flax NNX", "equinox": "Equinox"}[spec.style]
    attn = {
        "mha": "multi-head attention",
        "grouped": "grouped-query attention" if spec.num_kv_heads > 1 else "multi-query attention",
        "repeat": "grouped-query attention" if spec.num_kv_heads > 1 else "multi-query attention",
        "dpa": "jax.nn.dot_product_attention",
    }[spec.attention]
    parts = [
        "RMSNorm" if spec.norm == "rms" else "LayerNorm",
        f"{attn} with RoPE",
        {"swiglu": "SwiGLU MLP", "geglu": "GeGLU MLP", "gelu": "GELU MLP"}[spec.mlp],
    ]
    if spec.window_size:
        parts.append("sliding-window mask")
    if spec.attn_softcap or spec.final_softcap:
        parts.append("logit soft-capping")
    what = "A decoder-only language model" if spec.variant == "lm" else "One pre-norm decoder block"
    layers = ""
    if spec.variant == "lm":
        layers = " (layers under lax.scan)" if spec.layout == "scan" else ""
        if spec.tied:
            parts.append("tied embeddings")
    return f'"""{what} in {style}{layers}: {", ".join(parts)}."""\n'


def _imports(spec: Spec, body: str) -> str:
    lines = ["import dataclasses"]
    if "functools." in body:
        lines.append("import functools")
    lines.append("")
    if spec.style == "equinox":
        lines.append("import equinox as eqx")
    lines += ["import jax", "import jax.numpy as jnp"]
    if spec.style == "flax_nnx":
        lines.append("from flax import nnx")
    if "lax." in body.replace("jax.lax.", ""):
        lines.append("from jax import lax")
    return "\n".join(lines) + "\n"


# --- plain JAX ----------------------------------------------------------------------------


def _jax_norm_helpers(spec: Spec) -> str:
    if spec.norm == "rms":
        return '''def rms_norm(x: jax.Array, params: dict, eps: float) -> jax.Array:
    """RMSNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (normed * params["scale"].astype(jnp.float32)).astype(x.dtype)
'''
    return '''def layer_norm(x: jax.Array, params: dict, eps: float) -> jax.Array:
    """LayerNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * lax.rsqrt(variance + eps)
    return (normed * params["scale"].astype(jnp.float32) + params["bias"].astype(jnp.float32)).astype(x.dtype)
'''


def _jax_norm_init(spec: Spec) -> str:
    if spec.norm == "rms":
        return '{"scale": jnp.ones((config.d_model,), dtype)}'
    return '{"scale": jnp.ones((config.d_model,), dtype), "bias": jnp.zeros((config.d_model,), dtype)}'


def _jax_source(spec: Spec) -> tuple[str, tuple[str, ...]]:
    lm = spec.variant == "lm"
    norm = "rms_norm" if spec.norm == "rms" else "layer_norm"
    cfg = spec.config_name
    gated = spec.mlp != "gelu"
    layer_init_name = "init_layer" if lm else "init_params"
    mlp_keys = "k_gate, k_up, k_down" if gated else "k_in, k_out"
    if gated:
        mlp_init = (
            '"mlp": {\n'
            '            "w_gate": normal_init(k_gate, (config.d_model, config.d_ff), config.d_model, dtype),\n'
            '            "w_up": normal_init(k_up, (config.d_model, config.d_ff), config.d_model, dtype),\n'
            '            "w_down": normal_init(k_down, (config.d_ff, config.d_model), config.d_ff, dtype),\n'
            "        },"
        )
        mlp_apply = (
            '    h = dense("btd,df->btf", x, layer["mlp"]["w_gate"])\n'
            '    up = dense("btd,df->btf", x, layer["mlp"]["w_up"])\n'
            f'    hidden = hidden + dense("btf,fd->btd", {_mlp_activation(spec, "h", "up")}, layer["mlp"]["w_down"])\n'
        )
    else:
        mlp_init = (
            '"mlp": {\n'
            '            "w_in": normal_init(k_in, (config.d_model, config.d_ff), config.d_model, dtype),\n'
            '            "w_out": normal_init(k_out, (config.d_ff, config.d_model), config.d_ff, dtype),\n'
            "        },"
        )
        mlp_apply = (
            '    h = dense("btd,df->btf", x, layer["mlp"]["w_in"])\n'
            f'    hidden = hidden + dense("btf,fd->btd", {_mlp_activation(spec, "h", "")}, layer["mlp"]["w_out"])\n'
        )
    mask_param = ", mask: jax.Array" if _uses_mask(spec) else ""
    mask_arg = ", mask" if _uses_mask(spec) else ""

    parts = [
        """def normal_init(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    return (jax.random.normal(key, shape, jnp.float32) * fan_in**-0.5).astype(dtype)
""",
        f'''def {layer_init_name}(config: {cfg}, key: jax.Array) -> dict:
    """Parameters of one decoder layer: attention and MLP weights, two norms."""
    dtype = jnp.dtype(config.dtype)
    k_q, k_k, k_v, k_o, {mlp_keys} = jax.random.split(key, {7 if gated else 6})
    q_shape = (config.d_model, config.num_heads, config.head_dim)
    kv_shape = (config.d_model, config.num_kv_heads, config.head_dim)
    o_shape = (config.num_heads, config.head_dim, config.d_model)
    return {{
        "attn_norm": {_jax_norm_init(spec)},
        "attn": {{
            "wq": normal_init(k_q, q_shape, config.d_model, dtype),
            "wk": normal_init(k_k, kv_shape, config.d_model, dtype),
            "wv": normal_init(k_v, kv_shape, config.d_model, dtype),
            "wo": normal_init(k_o, o_shape, config.num_heads * config.head_dim, dtype),
        }},
        "mlp_norm": {_jax_norm_init(spec)},
        {mlp_init}
    }}
''',
    ]
    if lm:
        if spec.layout == "scan":
            layers_init = (
                "jax.vmap(functools.partial(init_layer, config))(jax.random.split(k_layers, config.num_layers))"
            )
            layers_doc = "stacked along a leading layer axis for lax.scan"
        else:
            layers_init = "[init_layer(config, k) for k in jax.random.split(k_layers, config.num_layers)]"
            layers_doc = "one dict per layer"
        head = (
            ""
            if spec.tied
            else '\n        "unembed": normal_init(k_out, (config.d_model, config.vocab_size), config.d_model, dtype),'
        )
        keys = "k_embed, k_layers" if spec.tied else "k_embed, k_layers, k_out"
        parts.append(
            f'''def init_params(config: {cfg}, key: jax.Array) -> dict:
    """All parameters of the model; layer parameters are {layers_doc}."""
    dtype = jnp.dtype(config.dtype)
    {keys} = jax.random.split(key, {2 if spec.tied else 3})
    return {{
        "embed": normal_init(k_embed, (config.vocab_size, config.d_model), config.d_model, dtype),
        "layers": {layers_init},
        "final_norm": {_jax_norm_init(spec)},{head}
    }}
'''
        )
    parts.append(_jax_norm_helpers(spec))
    parts.append('''def dense(subscripts: str, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """An einsum of activations and a kernel, accumulated in float32, returned in x's dtype."""
    return jnp.einsum(subscripts, x, kernel, preferred_element_type=jnp.float32).astype(x.dtype)
''')
    parts.append(_rope_helpers(spec))
    if _uses_mask(spec):
        parts.append(_mask_helper(spec))
    parts.append(_attend_helper(spec))
    parts.append(
        f'''def decoder_layer(layer: dict, hidden: jax.Array, sin: jax.Array, cos: jax.Array{mask_param}, config: {cfg}) -> jax.Array:
    """Pre-norm decoder layer: hidden + attention(norm(hidden)), then hidden + mlp(norm(hidden))."""
    x = {norm}(hidden, layer["attn_norm"], config.norm_eps)
    q = apply_rope(dense("btd,dhk->bthk", x, layer["attn"]["wq"]), sin, cos)
    k = apply_rope(dense("btd,dhk->bthk", x, layer["attn"]["wk"]), sin, cos)
    v = dense("btd,dhk->bthk", x, layer["attn"]["wv"])
    attn_out = {_attend_call(spec)}
    hidden = hidden + dense("bthk,hkd->btd", attn_out, layer["attn"]["wo"])
    x = {norm}(hidden, layer["mlp_norm"], config.norm_eps)
{mlp_apply}    return hidden
'''
    )
    fn = spec.function_name
    mask_line = f"    mask = {_mask_call(spec, 'seq_len')}\n" if _uses_mask(spec) else ""
    transforms: tuple[str, ...] = ()
    if lm:
        embed = '    hidden = jnp.take(params["embed"], tokens, axis=0)\n'
        if spec.scale_embeddings:
            embed += "    hidden = hidden * jnp.asarray(config.d_model**0.5, hidden.dtype)\n"
        if spec.layout == "scan":
            transforms = ("scan", "checkpoint") if spec.remat != "none" else ("scan",)
            layers = (
                "\n"
                f"{_indent(_checkpoint_decorator(spec), 4)}"
                f"{chr(10) if spec.remat != 'none' else ''}"
                "    def body(hidden, layer):\n"
                f"        return decoder_layer(layer, hidden, sin, cos{mask_arg}, config), None\n"
                "\n"
                '    hidden, _ = lax.scan(body, hidden, params["layers"])\n'
            )
        else:
            layers = (
                '    for layer in params["layers"]:\n'
                f"        hidden = decoder_layer(layer, hidden, sin, cos{mask_arg}, config)\n"
            )
        if spec.tied:
            logits = (
                '    logits = jnp.einsum("btd,vd->btv", hidden, params["embed"], preferred_element_type=jnp.float32)\n'
            )
        else:
            logits = '    logits = jnp.einsum("btd,dv->btv", hidden, params["unembed"], preferred_element_type=jnp.float32)\n'
        returns = "(logits, final hidden state)" if spec.return_hidden else "logits"
        ret_type = "tuple[jax.Array, jax.Array]" if spec.return_hidden else "jax.Array"
        parts.append(
            f'''def {fn}(params: dict, tokens: jax.Array, config: {cfg}) -> {ret_type}:
    """Next-token {returns} for int32 tokens (batch, seq); logits are float32 (batch, seq, vocab)."""
    seq_len = tokens.shape[1]
{embed}    sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}{layers}    hidden = {norm}(hidden, params["final_norm"], config.norm_eps)
{logits}{_logits_tail(spec, 4)}
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    params = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
    tokens = jax.ShapeDtypeStruct((config.batch_size, config.seq_len), jnp.int32)
    return params, tokens, config
"""
    else:
        parts.append(
            f'''def {fn}(params: dict, hidden: jax.Array, config: {cfg}) -> jax.Array:
    """One decoder block over hidden states (batch, seq, d_model)."""
    seq_len = hidden.shape[1]
    sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}    return decoder_layer(params, hidden, sin, cos{mask_arg}, config)
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    params = jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))
    hidden = jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))
    return params, hidden, config
"""
    return "\n\n".join(parts) + "\n\n" + example, transforms


# --- Flax NNX -----------------------------------------------------------------------------


def _nnx_norm(spec: Spec) -> str:
    cls = "nnx.RMSNorm" if spec.norm == "rms" else "nnx.LayerNorm"
    return f"{cls}(config.d_model, epsilon=config.norm_eps, dtype=jnp.float32, param_dtype=dtype, rngs=rngs)"


def _nnx_linear(n_in: str, n_out: str) -> str:
    return (
        f"nnx.Linear({n_in}, {n_out}, use_bias=False, param_dtype=dtype, preferred_element_type=jnp.float32, rngs=rngs)"
    )


def _attention_summary(spec: Spec) -> str:
    if spec.num_kv_heads == spec.num_heads:
        return "Multi-head self-attention with rotary position embeddings."
    if spec.num_kv_heads == 1:
        return "Multi-query self-attention (one shared KV head) with rotary position embeddings."
    return "Grouped-query self-attention with rotary position embeddings: num_kv_heads key/value heads."


def _nnx_source(spec: Spec) -> tuple[str, tuple[str, ...]]:
    lm = spec.variant == "lm"
    cfg = spec.config_name
    gated = spec.mlp != "gelu"
    mask_param = ", mask: jax.Array" if _uses_mask(spec) else ""
    mask_arg = ", mask" if _uses_mask(spec) else ""
    heads_q = "config.num_heads * config.head_dim"
    heads_kv = "config.num_kv_heads * config.head_dim"
    parts = [_rope_helpers(spec)]
    if _uses_mask(spec):
        parts.append(_mask_helper(spec))
    parts.append(_attend_helper(spec))
    parts.append(
        f'''class Attention(nnx.Module):
    """{_attention_summary(spec)}"""

    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        self.q_proj = {_nnx_linear("config.d_model", heads_q)}
        self.k_proj = {_nnx_linear("config.d_model", heads_kv)}
        self.v_proj = {_nnx_linear("config.d_model", heads_kv)}
        self.o_proj = {_nnx_linear(heads_q, "config.d_model")}

    def __call__(self, x: jax.Array, sin: jax.Array, cos: jax.Array{mask_param}) -> jax.Array:
        config = self.config
        q = self.q_proj(x).astype(x.dtype).reshape(*x.shape[:-1], config.num_heads, config.head_dim)
        k = self.k_proj(x).astype(x.dtype).reshape(*x.shape[:-1], config.num_kv_heads, config.head_dim)
        v = self.v_proj(x).astype(x.dtype).reshape(*x.shape[:-1], config.num_kv_heads, config.head_dim)
        q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
        out = {_attend_call(spec)}
        return self.o_proj(out.reshape(*x.shape[:-1], -1)).astype(x.dtype)
'''
    )
    if gated:
        mlp_init = (
            f"        self.gate_proj = {_nnx_linear('config.d_model', 'config.d_ff')}\n"
            f"        self.up_proj = {_nnx_linear('config.d_model', 'config.d_ff')}\n"
            f"        self.down_proj = {_nnx_linear('config.d_ff', 'config.d_model')}\n"
        )
        mlp_call = (
            f"        hidden = {_mlp_activation(spec, 'self.gate_proj(x)', 'self.up_proj(x)')}\n"
            "        return self.down_proj(hidden.astype(x.dtype)).astype(x.dtype)\n"
        )
    else:
        mlp_init = (
            f"        self.fc_in = {_nnx_linear('config.d_model', 'config.d_ff')}\n"
            f"        self.fc_out = {_nnx_linear('config.d_ff', 'config.d_model')}\n"
        )
        mlp_call = (
            f"        hidden = {_mlp_activation(spec, 'self.fc_in(x)', '')}\n"
            "        return self.fc_out(hidden.astype(x.dtype)).astype(x.dtype)\n"
        )
    mlp_name = {"swiglu": "SwiGLU", "geglu": "GeGLU", "gelu": "GELU"}[spec.mlp]
    parts.append(
        f'''class MLP(nnx.Module):
    """{mlp_name} feed-forward network."""

    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
{mlp_init}
    def __call__(self, x: jax.Array) -> jax.Array:
{mlp_call}'''
    )
    parts.append(
        f'''class DecoderBlock(nnx.Module):
    """Pre-norm decoder block; the norms compute in float32."""

    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        self.attn_norm = {_nnx_norm(spec)}
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = {_nnx_norm(spec)}
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x: jax.Array, sin: jax.Array, cos: jax.Array{mask_param}) -> jax.Array:
        x = x + self.attn(self.attn_norm(x).astype(x.dtype), sin, cos{mask_arg})
        return x + self.mlp(self.mlp_norm(x).astype(x.dtype))
'''
    )
    fn = spec.function_name
    transforms: tuple[str, ...] = ()
    if lm:
        if spec.layout == "scan":
            transforms = ("scan", "checkpoint") if spec.remat != "none" else ("scan",)
            blocks_init = (
                "\n"
                "        @nnx.split_rngs(splits=config.num_layers)\n"
                "        @nnx.vmap(in_axes=(0,), out_axes=0)\n"
                "        def create_block(rngs: nnx.Rngs) -> DecoderBlock:\n"
                "            return DecoderBlock(config, rngs=rngs)\n"
                "\n"
                "        self.blocks = create_block(rngs)\n"
            )
            blocks_apply = (
                "        graphdef, layer_states = nnx.split(self.blocks)\n"
                "\n"
                f"{_indent(_checkpoint_decorator(spec), 8)}"
                f"{chr(10) if spec.remat != 'none' else ''}"
                "        def body(hidden, layer_state):\n"
                "            block = nnx.merge(graphdef, layer_state)\n"
                f"            return block(hidden, sin, cos{mask_arg}), None\n"
                "\n"
                "        hidden, _ = lax.scan(body, hidden, layer_states)\n"
            )
        else:
            blocks_init = (
                "        self.blocks = nnx.List([DecoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])\n"
            )
            blocks_apply = (
                f"        for block in self.blocks:\n            hidden = block(hidden, sin, cos{mask_arg})\n"
            )
        head_init = (
            "" if spec.tied else f"        self.lm_head = {_nnx_linear('config.d_model', 'config.vocab_size')}\n"
        )
        embed = "        hidden = self.embed(tokens)\n"
        if spec.scale_embeddings:
            embed += "        hidden = hidden * jnp.asarray(config.d_model**0.5, hidden.dtype)\n"
        mask_line = f"        mask = {_mask_call(spec, 'seq_len')}\n" if _uses_mask(spec) else ""
        logits = (
            '        logits = jnp.einsum("...d,vd->...v", hidden, self.embed.embedding[...], preferred_element_type=jnp.float32)\n'
            if spec.tied
            else "        logits = self.lm_head(hidden)\n"
        )
        ret_type = "tuple[jax.Array, jax.Array]" if spec.return_hidden else "jax.Array"
        parts.append(
            f'''class Transformer(nnx.Module):
    """Decoder-only language model: embedding, {"scanned" if spec.layout == "scan" else "a list of"} decoder blocks, final norm, {"tied " if spec.tied else ""}unembedding."""

    def __init__(self, config: {cfg}, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        self.embed = nnx.Embed(config.vocab_size, config.d_model, param_dtype=dtype, rngs=rngs)
{blocks_init}        self.final_norm = {_nnx_norm(spec)}
{head_init}
    def __call__(self, tokens: jax.Array) -> {ret_type}:
        config = self.config
        seq_len = tokens.shape[-1]
{embed}        sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}{blocks_apply}        hidden = self.final_norm(hidden).astype(hidden.dtype)
{logits}{_logits_tail(spec, 8)}
'''
        )
        parts.append(
            f'''def {fn}(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array) -> {ret_type}:
    """Logits (batch, seq, vocab) of the model split into graphdef and state."""
    model = nnx.merge(graphdef, state)
    return model(tokens)
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    tokens = jax.ShapeDtypeStruct((config.batch_size, config.seq_len), jnp.int32)
    return graphdef, state, tokens
"""
    else:
        mask_line = f"    mask = {_mask_call(spec, 'seq_len')}\n" if _uses_mask(spec) else ""
        parts.append(
            f'''def {fn}(graphdef: nnx.GraphDef, state: nnx.State, hidden: jax.Array) -> jax.Array:
    """One decoder block over hidden states (batch, seq, d_model)."""
    block = nnx.merge(graphdef, state)
    config = block.config
    seq_len = hidden.shape[1]
    sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}    return block(hidden, sin, cos{mask_arg})
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: DecoderBlock(config, rngs=nnx.Rngs(0))))
    hidden = jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))
    return graphdef, state, hidden
"""
    return "\n\n".join(parts) + "\n\n" + example, transforms


# --- Equinox ------------------------------------------------------------------------------


def _eqx_norm(spec: Spec) -> str:
    if spec.norm == "rms":
        return "eqx.nn.RMSNorm(config.d_model, eps=config.norm_eps, use_bias=False, dtype=dtype)"
    return "eqx.nn.LayerNorm(config.d_model, eps=config.norm_eps, dtype=dtype)"


def _eqx_linear(n_in: str, n_out: str, key: str) -> str:
    return f"eqx.nn.Linear({n_in}, {n_out}, use_bias=False, dtype=dtype, key={key})"


def _eqx_apply(spec: Spec, layer: str, x: str) -> str:
    """A linear layer over a sequence: vmapped over positions (float32), or (bfloat16) the
    ``linear`` helper, which accumulates in float32."""
    if spec.dtype == "float32":
        return f"jax.vmap({layer})({x})"
    return f"linear({layer}, {x})"


def _eqx_one(spec: Spec, layer: str, x: str) -> str:
    """A linear layer on one position."""
    return f"{layer}({x})" if spec.dtype == "float32" else f"linear({layer}, {x})"


_EQX_LINEAR_HELPER = '''def linear(layer: eqx.nn.Linear, x: jax.Array) -> jax.Array:
    """layer(x) over any leading axes, accumulated in float32 and returned in x's dtype."""
    return jnp.einsum("...i,oi->...o", x, layer.weight, preferred_element_type=jnp.float32).astype(x.dtype)
'''


def _eqx_source(spec: Spec) -> tuple[str, tuple[str, ...]]:
    lm = spec.variant == "lm"
    cfg = spec.config_name
    gated = spec.mlp != "gelu"
    mask_param = ", mask: jax.Array" if _uses_mask(spec) else ""
    mask_arg = ", mask" if _uses_mask(spec) else ""
    norm_cls = "eqx.nn.RMSNorm" if spec.norm == "rms" else "eqx.nn.LayerNorm"
    heads_q = "config.num_heads * config.head_dim"
    heads_kv = "config.num_kv_heads * config.head_dim"
    parts = [_EQX_LINEAR_HELPER] if spec.dtype != "float32" else []
    parts.append(_rope_helpers(spec))
    if _uses_mask(spec):
        parts.append(_mask_helper(spec))
    parts.append(_attend_helper(spec))
    parts.append(
        f'''class Attention(eqx.Module):
    """Self-attention over one sequence (seq, d_model) with rotary position embeddings."""

    q_proj: eqx.nn.Linear
    k_proj: eqx.nn.Linear
    v_proj: eqx.nn.Linear
    o_proj: eqx.nn.Linear
    config: {cfg} = eqx.field(static=True)

    def __init__(self, config: {cfg}, key: jax.Array):
        dtype = jnp.dtype(config.dtype)
        k_q, k_k, k_v, k_o = jax.random.split(key, 4)
        self.q_proj = {_eqx_linear("config.d_model", heads_q, "k_q")}
        self.k_proj = {_eqx_linear("config.d_model", heads_kv, "k_k")}
        self.v_proj = {_eqx_linear("config.d_model", heads_kv, "k_v")}
        self.o_proj = {_eqx_linear(heads_q, "config.d_model", "k_o")}
        self.config = config

    def __call__(self, x: jax.Array, sin: jax.Array, cos: jax.Array{mask_param}) -> jax.Array:
        config = self.config
        seq_len = x.shape[0]
        q = {_eqx_apply(spec, "self.q_proj", "x")}.reshape(seq_len, config.num_heads, config.head_dim)
        k = {_eqx_apply(spec, "self.k_proj", "x")}.reshape(seq_len, config.num_kv_heads, config.head_dim)
        v = {_eqx_apply(spec, "self.v_proj", "x")}.reshape(seq_len, config.num_kv_heads, config.head_dim)
        q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
        out = {_attend_call(spec)}
        return {_eqx_apply(spec, "self.o_proj", "out.reshape(seq_len, -1)")}
'''
    )
    if gated:
        mlp_fields = "    gate_proj: eqx.nn.Linear\n    up_proj: eqx.nn.Linear\n    down_proj: eqx.nn.Linear\n"
        mlp_init = (
            "        k_gate, k_up, k_down = jax.random.split(key, 3)\n"
            f"        self.gate_proj = {_eqx_linear('config.d_model', 'config.d_ff', 'k_gate')}\n"
            f"        self.up_proj = {_eqx_linear('config.d_model', 'config.d_ff', 'k_up')}\n"
            f"        self.down_proj = {_eqx_linear('config.d_ff', 'config.d_model', 'k_down')}\n"
        )
        mlp_call = f"        return {_eqx_one(spec, 'self.down_proj', _mlp_activation(spec, _eqx_one(spec, 'self.gate_proj', 'x'), _eqx_one(spec, 'self.up_proj', 'x')))}\n"
    else:
        mlp_fields = "    fc_in: eqx.nn.Linear\n    fc_out: eqx.nn.Linear\n"
        mlp_init = (
            "        k_in, k_out = jax.random.split(key, 2)\n"
            f"        self.fc_in = {_eqx_linear('config.d_model', 'config.d_ff', 'k_in')}\n"
            f"        self.fc_out = {_eqx_linear('config.d_ff', 'config.d_model', 'k_out')}\n"
        )
        mlp_call = f"        return {_eqx_one(spec, 'self.fc_out', _mlp_activation(spec, _eqx_one(spec, 'self.fc_in', 'x'), ''))}\n"
    mlp_name = {"swiglu": "SwiGLU", "geglu": "GeGLU", "gelu": "GELU"}[spec.mlp]
    parts.append(
        f'''class MLP(eqx.Module):
    """{mlp_name} feed-forward network on one position (d_model,)."""

{mlp_fields}
    def __init__(self, config: {cfg}, key: jax.Array):
        dtype = jnp.dtype(config.dtype)
{mlp_init}
    def __call__(self, x: jax.Array) -> jax.Array:
{mlp_call}'''
    )
    parts.append(
        f'''class DecoderBlock(eqx.Module):
    """Pre-norm decoder block over one sequence (seq, d_model); the norms compute in float32."""

    attn_norm: {norm_cls}
    attn: Attention
    mlp_norm: {norm_cls}
    mlp: MLP

    def __init__(self, config: {cfg}, key: jax.Array):
        dtype = jnp.dtype(config.dtype)
        k_attn, k_mlp = jax.random.split(key)
        self.attn_norm = {_eqx_norm(spec)}
        self.attn = Attention(config, k_attn)
        self.mlp_norm = {_eqx_norm(spec)}
        self.mlp = MLP(config, k_mlp)

    def __call__(self, x: jax.Array, sin: jax.Array, cos: jax.Array{mask_param}) -> jax.Array:
        x = x + self.attn(jax.vmap(self.attn_norm)(x), sin, cos{mask_arg})
        return x + jax.vmap(self.mlp)(jax.vmap(self.mlp_norm)(x))
'''
    )
    fn = spec.function_name
    if lm:
        if spec.layout == "scan":
            transforms: tuple[str, ...] = ("vmap", "scan", "checkpoint") if spec.remat != "none" else ("vmap", "scan")
            blocks_field = "    blocks: DecoderBlock  # stacked: every array has a leading num_layers axis\n"
            blocks_init = (
                "        layer_keys = jax.random.split(k_blocks, config.num_layers)\n"
                "        self.blocks = eqx.filter_vmap(lambda k: DecoderBlock(config, k))(layer_keys)\n"
            )
            blocks_apply = (
                "        block_params, block_static = eqx.partition(self.blocks, eqx.is_array)\n"
                "\n"
                f"{_indent(_checkpoint_decorator(spec), 8)}"
                f"{chr(10) if spec.remat != 'none' else ''}"
                "        def body(hidden, layer_params):\n"
                "            block = eqx.combine(layer_params, block_static)\n"
                f"            return block(hidden, sin, cos{mask_arg}), None\n"
                "\n"
                "        hidden, _ = lax.scan(body, hidden, block_params)\n"
            )
        else:
            transforms = ("vmap",)
            blocks_field = "    blocks: tuple[DecoderBlock, ...]\n"
            blocks_init = "        self.blocks = tuple(DecoderBlock(config, k) for k in jax.random.split(k_blocks, config.num_layers))\n"
            blocks_apply = (
                f"        for block in self.blocks:\n            hidden = block(hidden, sin, cos{mask_arg})\n"
            )
        head_field = "" if spec.tied else "    lm_head: eqx.nn.Linear\n"
        keys = "k_embed, k_blocks" if spec.tied else "k_embed, k_blocks, k_head"
        head_init = (
            ""
            if spec.tied
            else f"        self.lm_head = {_eqx_linear('config.d_model', 'config.vocab_size', 'k_head')}\n"
        )
        embed = "        hidden = jax.vmap(self.embed)(tokens)\n"
        if spec.scale_embeddings:
            embed += "        hidden = hidden * jnp.asarray(config.d_model**0.5, hidden.dtype)\n"
        mask_line = f"        mask = {_mask_call(spec, 'seq_len')}\n" if _uses_mask(spec) else ""
        logits = (
            '        logits = jnp.einsum("td,vd->tv", hidden, self.embed.weight, preferred_element_type=jnp.float32)\n'
            if spec.tied
            else "        logits = jax.vmap(self.lm_head)(hidden).astype(jnp.float32)\n"
            if spec.dtype == "float32"
            else '        logits = jnp.einsum("td,vd->tv", hidden, self.lm_head.weight, preferred_element_type=jnp.float32)\n'
        )
        ret_type = "tuple[jax.Array, jax.Array]" if spec.return_hidden else "jax.Array"
        parts.append(
            f'''class Transformer(eqx.Module):
    """Decoder-only language model over one sequence of int32 tokens (seq,) -> logits (seq, vocab)."""

    embed: eqx.nn.Embedding
{blocks_field}    final_norm: {norm_cls}
{head_field}    config: {cfg} = eqx.field(static=True)

    def __init__(self, config: {cfg}, key: jax.Array):
        dtype = jnp.dtype(config.dtype)
        {keys} = jax.random.split(key, {2 if spec.tied else 3})
        self.embed = eqx.nn.Embedding(config.vocab_size, config.d_model, dtype=dtype, key=k_embed)
{blocks_init}        self.final_norm = {_eqx_norm(spec)}
{head_init}        self.config = config

    def __call__(self, tokens: jax.Array) -> {ret_type}:
        config = self.config
        seq_len = tokens.shape[0]
{embed}        sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}{blocks_apply}        hidden = jax.vmap(self.final_norm)(hidden)
{logits}{_logits_tail(spec, 8)}
'''
        )
        parts.append(
            f'''def {fn}(params: Transformer, static: Transformer, tokens: jax.Array) -> {ret_type}:
    """Logits (batch, seq, vocab) for int32 tokens (batch, seq): the model vmapped over the batch."""
    model = eqx.combine(params, static)
    return jax.vmap(model)(tokens)
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    model = eqx.filter_eval_shape(Transformer, config, jax.random.PRNGKey(0))
    params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    tokens = jax.ShapeDtypeStruct((config.batch_size, config.seq_len), jnp.int32)
    return params, static, tokens
"""
    else:
        transforms = ("vmap",)
        mask_line = f"    mask = {_mask_call(spec, 'seq_len')}\n" if _uses_mask(spec) else ""
        in_axes = "(0, None, None, None)" if _uses_mask(spec) else "(0, None, None)"
        parts.append(
            f'''def {fn}(params: DecoderBlock, static: DecoderBlock, hidden: jax.Array) -> jax.Array:
    """One decoder block over hidden states (batch, seq, d_model), vmapped over the batch."""
    block = eqx.combine(params, static)
    config = block.attn.config
    seq_len = hidden.shape[1]
    sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)
{mask_line}    return jax.vmap(block, in_axes={in_axes})(hidden, sin, cos{mask_arg})
'''
        )
        example = f"""def example_args():
    config = {cfg}()
    block = eqx.filter_eval_shape(DecoderBlock, config, jax.random.PRNGKey(0))
    params, static = eqx.partition(block, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    hidden = jax.ShapeDtypeStruct((config.batch_size, config.seq_len, config.d_model), jnp.dtype(config.dtype))
    return params, static, hidden
"""
    return "\n\n".join(parts) + "\n\n" + example, transforms


# --- rendering ----------------------------------------------------------------------------

_STYLE_SOURCES = {"jax": _jax_source, "flax_nnx": _nnx_source, "equinox": _eqx_source}


def render(spec: Spec) -> ModelProgram:
    """The program of ``spec`` (draws no random numbers)."""
    body, transforms = _STYLE_SOURCES[spec.style](spec)
    code = _config(spec) + "\n\n" + body
    source = _module_doc(spec) + "\n" + _imports(spec, code) + "\n\n" + code
    return ModelProgram(
        category=CATEGORY,
        style=spec.style,
        function_name=spec.function_name,
        source=source,
        transforms=transforms,
    )


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("block",): ("norm", "rope"),
    ("lm",): ("layout", "norm", "rope", "scale_embeddings"),
}
FAMILY = Family(CATEGORY, sample, render, context=("variant",), structure=STRUCTURE)
