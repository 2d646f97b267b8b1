"""decoding: autoregressive inference code of decoder-only language models.

The programs are what serving code jits: a single-token decode step over a KV cache, the
prefill of a prompt into the cache, a short generation loop (``lax.fori_loop``,
``lax.while_loop`` or ``lax.scan``) decoding tokens until the cache is full, and the
sampling functions they end in (greedy, temperature, top-k, top-p, min-p, repetition
penalty). Caches are ``[batch, max_seq_len, num_kv_heads, head_dim]`` per layer (stacked
over layers when the layers run under ``lax.scan``), written at the current position with
``lax.dynamic_update_slice`` or ``.at[batch, positions].set``; attention over the cache is
masked to positions at or before the query's, with grouped (GQA/MQA/MHA) key/value heads,
RoPE or learned positions, and float32 scores and softmax over bfloat16 activations.

Styles: plain JAX (functions over parameter dicts; cache a list of per-layer dicts, of
``NamedTuple``s, or one stacked ``NamedTuple``), Flax NNX (the module holds the parameters,
the cache goes in and out as an explicit pytree) and Equinox (the same, with
``eqx.combine``). Sampling-only programs are plain functions.
"""

from __future__ import annotations

import random
import re
import textwrap
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

CATEGORY = "decoding"

VARIANTS = ("decode_step", "prefill", "generate", "sample")
SAMPLERS = ("greedy", "temperature", "top_k", "top_k_mask", "top_p", "min_p")
LOOPS = ("fori_loop", "while_loop", "scan")
ENTRY_NAMES: dict[str, tuple[str, ...]] = {
    "decode_step": ("decode_step", "decode_next_token", "serve_step"),
    "prefill": ("prefill", "prefill_cache", "encode_prompt"),
    "generate": ("generate", "generate_tokens", "complete_prompt"),
    "sample": ("sample_next_token", "choose_next_token", "sample_from_logits"),
}


@dataclass(frozen=True)
class Spec:
    """Every choice of one decoding program (``render`` draws nothing).

    Attributes:
      style: ``"jax"``, ``"flax_nnx"`` or ``"equinox"``.
      variant: one of ``VARIANTS``.
      function_name: the jitted function's name.
      config_name / model_name: the config class and (NNX/Equinox) model class names.
      layers: ``"unrolled"`` (a Python loop over at most 4 layers) or ``"scan"`` (stacked params).
      num_layers ... top_k: the config's int sizes (``top_k`` only used by the top-k samplers).
      norm: ``"rms"`` or ``"layer"``; mlp: ``"swiglu"``, ``"geglu"`` or ``"gelu"``.
      positional: ``"rope"`` (rotate-half), ``"rope_interleaved"`` or ``"learned"``.
      attention: ``"grouped_einsum"``, ``"repeat_kv"`` or ``"dot_product_attention"``.
      projection: ``"matmul"`` (``x @ w`` then reshape) or ``"einsum"`` (head-shaped weights).
      cache_update: ``"dynamic_update_slice"`` (scalar ``cache_index``) or ``"at_set"``
        (per-row ``positions``, ``.at[batch, positions].set``).
      cache_container: ``"dict"`` or ``"namedtuple"`` per layer (``"stacked"`` under scan).
      dtype: parameter/cache/activation dtype name.
      tied / scale_embed / softcap: tied unembedding, Gemma's sqrt(d) embedding scale,
        logit soft-capping.
      sampler / repetition_penalty: how the next token is chosen.
      returns: what a decode step or prefill returns (``"logits"``, ``"tokens"``,
        ``"tokens_logprobs"``).
      loop / prompt_mode: the generation loop and whether it prefills the prompt at once
        (``"prefill"``) or feeds it token by token (``"stepwise"``).
      key_schedule: ``"split"`` (carry a key, split per step) or ``"fold_in"`` (fold the position in).
      ragged_prompts / prefill_allocates: prefill reads right-padded prompts' last tokens at
        ``prompt_lengths - 1``; prefill allocates the cache itself instead of taking it.
      rope_theta ... softcap_value: the config's floats.
    """

    style: str
    variant: str
    function_name: str
    config_name: str
    model_name: str
    layers: str
    num_layers: int
    d_model: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    batch_size: int
    max_seq_len: int
    prompt_len: int
    top_k: int
    norm: str
    mlp: str
    positional: str
    attention: str
    projection: str
    cache_update: str
    cache_container: str
    dtype: str
    param_dtype: str
    tied: bool
    scale_embed: bool
    softcap: bool
    sampler: str
    repetition_penalty: bool
    returns: str
    loop: str
    prompt_mode: str
    key_schedule: str
    ragged_prompts: bool
    prefill_allocates: bool
    logits_dtype: str
    rope_theta: float
    norm_eps: float
    temperature: float
    top_p: float
    min_p: float
    penalty: float
    softcap_value: float


# --- sampling -----------------------------------------------------------------------------


def _weighted(rng: random.Random, options: dict[str, float]) -> str:
    return rng.choices(list(options), weights=list(options.values()))[0]


def sample(rng: random.Random) -> Spec:
    """Draws one decoding program's spec."""
    variant = _weighted(rng, {"decode_step": 0.35, "prefill": 0.17, "generate": 0.33, "sample": 0.15})
    style = "jax" if variant == "sample" else _weighted(rng, {"jax": 0.45, "flax_nnx": 0.3, "equinox": 0.25})
    d_model = pick(rng, D_MODELS)
    num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model)
    mlp = _weighted(rng, {"swiglu": 0.6, "geglu": 0.15, "gelu": 0.25})
    layers = "scan" if style == "jax" and rng.random() < 0.4 else "unrolled"
    num_layers = pick(rng, (4, 6, 8, 12, 16, 24, 32)) if layers == "scan" else rng.randint(1, 4)
    max_seq_len = pick(rng, SEQ_LENS[1:])
    prompt_len = pick(rng, [s for s in SEQ_LENS if s <= max_seq_len // 2])
    batch = batch_size(rng, seq=max_seq_len)
    if variant == "sample":
        batch = pick(rng, (1, 2, 4, 8, 16, 32, 64))
    sampler = pick(rng, SAMPLERS)
    penalty = variant in ("generate", "sample") and rng.random() < 0.3
    if variant == "sample" and sampler == "greedy":
        penalty = True  # a bare argmax is no program of its own
    loop = pick(rng, LOOPS)
    cache_update = "at_set" if variant in ("decode_step", "generate") and rng.random() < 0.3 else "dynamic_update_slice"
    if variant == "generate" and loop == "scan":
        prompt_mode = "prefill"
    elif variant == "generate" and cache_update == "at_set":
        prompt_mode = "stepwise"
    else:
        prompt_mode = pick(rng, ("prefill", "stepwise"))
    param_dtype = "bfloat16" if rng.random() < 0.8 else "float32"
    returns = "logits"
    if variant in ("decode_step", "prefill"):
        returns = _weighted(rng, {"logits": 0.4, "tokens": 0.4, "tokens_logprobs": 0.2})
    elif variant == "sample":
        returns = pick(rng, ("tokens", "tokens_logprobs"))
    key_schedule = pick(rng, ("split", "fold_in"))
    if variant == "generate" and prompt_mode == "prefill" and loop != "scan":
        # IREE 3.13's runtime fails on these loops with a loop-invariant key folded in per step
        # (hal.command_buffer.copy_buffer: "indirect buffer reference slot 0 is out of range"),
        # so they carry the key and split it
        key_schedule = "split"
    # Programs that emit token ids compute in float32 over bfloat16 parameters and caches:
    # an argmax over logits computed in bfloat16 flips with one rounding step, which makes
    # their outputs depend on the compiler (IREE and XLA round bfloat16 differently).
    emits_tokens = variant in ("generate", "sample") or returns != "logits"
    dtype = "float32" if emits_tokens or rng.random() < 0.2 else param_dtype
    attention = pick(rng, ("grouped_einsum", "repeat_kv", "dot_product_attention"))
    if attention == "dot_product_attention" and dtype != "float32":
        # in bfloat16 it lowers to a dot_general with an `algorithm` IREE's frontend refuses
        attention = pick(rng, ("grouped_einsum", "repeat_kv"))
    return Spec(
        style=style,
        variant=variant,
        function_name=pick(rng, ENTRY_NAMES[variant]),
        config_name=pick(rng, ("SamplingConfig", "SamplerConfig"))
        if variant == "sample"
        else pick(rng, ("DecoderConfig", "ModelConfig", "TransformerConfig", "LMConfig")),
        model_name=pick(rng, ("Decoder", "Transformer", "LanguageModel")),
        layers=layers,
        num_layers=num_layers,
        d_model=d_model,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        d_ff=ffn_dim(rng, d_model, gated=mlp != "gelu"),
        vocab_size=pick(rng, VOCAB_SIZES),
        batch_size=batch,
        max_seq_len=max_seq_len,
        prompt_len=prompt_len,
        top_k=pick(rng, (10, 20, 40, 50, 64, 100)),
        norm=_weighted(rng, {"rms": 0.75, "layer": 0.25}),
        mlp=mlp,
        positional=_weighted(rng, {"rope": 0.6, "rope_interleaved": 0.2, "learned": 0.2}),
        attention=attention,
        projection=pick(rng, ("matmul", "einsum")),
        cache_update=cache_update,
        cache_container="stacked" if layers == "scan" else pick(rng, ("dict", "namedtuple")),
        dtype=dtype,
        param_dtype=param_dtype,
        tied=rng.random() < 0.4,
        scale_embed=rng.random() < 0.2,
        softcap=rng.random() < 0.15,
        sampler=sampler,
        repetition_penalty=penalty,
        returns=returns,
        loop=loop,
        prompt_mode=prompt_mode,
        key_schedule=key_schedule,
        ragged_prompts=variant == "prefill" and rng.random() < 0.35,
        prefill_allocates=variant == "prefill" and rng.random() < 0.4,
        logits_dtype=pick(rng, ("float32", "bfloat16")),
        rope_theta=pick(rng, (10_000.0, 500_000.0, 1_000_000.0)),
        norm_eps=pick(rng, (1e-5, 1e-6)),
        temperature=pick(rng, (0.6, 0.7, 0.8, 1.0)),
        top_p=pick(rng, (0.8, 0.9, 0.95)),
        min_p=pick(rng, (0.05, 0.1)),
        penalty=pick(rng, (1.1, 1.2, 1.3)),
        softcap_value=pick(rng, (30.0, 50.0)),
    )


# --- rendering helpers --------------------------------------------------------------------


def _indent(lines: list[str], n: int = 1) -> list[str]:
    pad = "    " * n
    return [pad + line if line else line for line in lines]


def _samples_randomly(spec: Spec) -> bool:
    """Whether the program draws random numbers (it then takes a key)."""
    if spec.variant in ("generate", "sample"):
        return spec.sampler != "greedy"
    return spec.returns != "logits" and spec.sampler != "greedy"


def _chooses_tokens(spec: Spec) -> bool:
    return spec.variant in ("generate", "sample") or spec.returns != "logits"


def _config_fields(spec: Spec) -> list[tuple[str, str, object]]:
    sampler_fields: list[tuple[str, str, object]] = []
    if _chooses_tokens(spec):
        if spec.sampler in ("top_k", "top_k_mask"):
            sampler_fields.append(("top_k", "int", spec.top_k))
        if spec.sampler != "greedy":
            sampler_fields.append(("temperature", "float", spec.temperature))
        if spec.sampler == "top_p":
            sampler_fields.append(("top_p", "float", spec.top_p))
        if spec.sampler == "min_p":
            sampler_fields.append(("min_p", "float", spec.min_p))
        if spec.repetition_penalty:
            sampler_fields.append(("repetition_penalty", "float", spec.penalty))
    if spec.variant == "sample":
        fields: list[tuple[str, str, object]] = [("vocab_size", "int", spec.vocab_size)]
        fields.append(("batch_size", "int", spec.batch_size))
        if spec.repetition_penalty:
            fields.append(("prompt_len", "int", spec.prompt_len))
        return fields + sampler_fields
    fields = [
        ("vocab_size", "int", spec.vocab_size),
        ("d_model", "int", spec.d_model),
        ("num_layers", "int", spec.num_layers),
        ("num_heads", "int", spec.num_heads),
        ("num_kv_heads", "int", spec.num_kv_heads),
        ("head_dim", "int", spec.head_dim),
        ("d_ff", "int", spec.d_ff),
        ("max_seq_len", "int", spec.max_seq_len),
        ("batch_size", "int", spec.batch_size),
    ]
    if spec.variant in ("prefill", "generate"):
        fields.append(("prompt_len", "int", spec.prompt_len))
    fields.append(("norm_eps", "float", spec.norm_eps))
    if spec.positional != "learned":
        fields.append(("rope_theta", "float", spec.rope_theta))
    if spec.softcap:
        fields.append(("logit_softcap", "float", spec.softcap_value))
    fields.append(("dtype", "str", spec.dtype))
    if spec.param_dtype != spec.dtype:
        fields.append(("param_dtype", "str", spec.param_dtype))
    return fields + sampler_fields


# --- shared helper functions (module level in every style) --------------------------------


def _norm_helper(spec: Spec) -> str:
    if spec.norm == "rms":
        return '''def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """RMSNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    normed = x32 * lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (normed * weight.astype(jnp.float32)).astype(x.dtype)
'''
    return '''def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis, computed in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * lax.rsqrt(var + eps)
    return (normed * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)
'''


def _rope_helper(spec: Spec) -> str:
    head = '''def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding of x [batch, seq, heads, head_dim] at positions [batch, seq]."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / theta ** (jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[:, :, None].astype(jnp.float32) * inv_freq
    sin = jnp.sin(angles)[:, :, None, :]
    cos = jnp.cos(angles)[:, :, None, :]
'''
    if spec.positional == "rope":
        return (
            head
            + """    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)
"""
        )
    return (
        head
        + """    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], half, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)
"""
    )


def _attention_helper(spec: Spec) -> str | None:
    if spec.attention == "grouped_einsum":
        return '''def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query attention of q [batch, seq, heads, head_dim] over k, v [batch, kv_len, kv_heads, head_dim].

    mask [batch, seq, kv_len] is True where a query may attend; scores and softmax in float32.
    """
    b, t, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[2]
    q = q.reshape(b, t, num_kv_heads, num_heads // num_kv_heads, head_dim)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(head_dim)
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", weights, v)
    return out.reshape(b, t, num_heads, head_dim)
'''
    if spec.attention == "repeat_kv":
        return '''def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention of q [batch, seq, heads, head_dim] over cached k, v with fewer (shared) heads.

    Key/value heads are repeated up to the query heads; mask [batch, seq, kv_len].
    """
    repeats = q.shape[2] // k.shape[2]
    k = jnp.repeat(k, repeats, axis=2)
    v = jnp.repeat(v, repeats, axis=2)
    scores = jnp.einsum("bthd,bshd->bhts", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
    scores = jnp.where(mask[:, None], scores, -1e30)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhts,bshd->bthd", weights.astype(q.dtype), v)
'''
    return None


def _init_helper() -> str:
    return '''def normal_init(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Normal weights scaled by 1/sqrt(fan_in) (the first axis)."""
    return (jax.random.normal(key, shape, jnp.float32) / math.sqrt(shape[0])).astype(dtype)
'''


# --- sampling statements --------------------------------------------------------------------


def _sampling_body(spec: Spec) -> list[str]:
    """Statements from f32 ``logits`` [batch, vocab] (and ``key``, ``counts``) to ``return``."""
    lines: list[str] = []
    if spec.repetition_penalty:
        lines += [
            "# tokens seen so far: positive logits divided by the penalty, negative ones multiplied",
            "penalized = jnp.where(logits > 0, logits / config.repetition_penalty, logits * config.repetition_penalty)",
            "logits = jnp.where(counts > 0, penalized, logits)",
        ]
    s = spec.sampler
    if s == "greedy":
        return [*lines, "return jnp.argmax(logits, axis=-1).astype(jnp.int32)"]
    if s == "temperature":
        return [*lines, "return jax.random.categorical(key, logits / config.temperature, axis=-1).astype(jnp.int32)"]
    if s == "top_k":
        return [
            *lines,
            "top_logits, top_indices = lax.top_k(logits, config.top_k)",
            "choice = jax.random.categorical(key, top_logits / config.temperature, axis=-1)",
            "return jnp.take_along_axis(top_indices, choice[:, None], axis=-1)[:, 0]",
        ]
    if s == "top_k_mask":
        lines += [
            "kth_largest = lax.top_k(logits, config.top_k)[0][:, -1:]",
            "logits = jnp.where(logits < kth_largest, -jnp.inf, logits)",
        ]
    elif s == "top_p":
        lines += [
            "logits = logits / config.temperature",
            "sorted_logits = jnp.sort(logits, axis=-1, descending=True)",
            "cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)",
            "# keep the smallest set of most likely tokens whose probability reaches top_p",
            "cutoff_index = jnp.sum(cumulative < config.top_p, axis=-1, keepdims=True)",
            "cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)",
            "logits = jnp.where(logits < cutoff, -jnp.inf, logits)",
        ]
        return [*lines, "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)"]
    elif s == "min_p":
        lines += [
            "logits = logits / config.temperature",
            "probs = jax.nn.softmax(logits, axis=-1)",
            "# drop tokens less likely than min_p times the most likely one",
            "threshold = config.min_p * jnp.max(probs, axis=-1, keepdims=True)",
            "logits = jnp.where(probs < threshold, -jnp.inf, logits)",
        ]
        return [*lines, "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)"]
    return [*lines, "return jax.random.categorical(key, logits / config.temperature, axis=-1).astype(jnp.int32)"]


_SAMPLER_DOCS = {
    "greedy": "Greedy decoding: the most likely token of each row",
    "temperature": "Samples one token per row from softmax(logits / temperature)",
    "top_k": "Top-k sampling: samples among the top_k most likely tokens of each row",
    "top_k_mask": "Top-k sampling: masks all but the top_k largest logits, then samples",
    "top_p": "Nucleus (top-p) sampling: samples from the smallest set of tokens holding top_p of the mass",
    "min_p": "Min-p sampling: keeps tokens at least min_p times as likely as the best one, then samples",
}


def _sampler_params(spec: Spec) -> list[str]:
    params = ["logits: jax.Array"]
    if spec.repetition_penalty:
        params.append("counts: jax.Array")
    if spec.sampler != "greedy":
        params.append("key: jax.Array")
    return params


def _sampler_helper(spec: Spec) -> str | None:
    """``select_token(logits, [counts], [key], config)``, or None when it is an inline argmax."""
    if spec.sampler == "greedy" and not spec.repetition_penalty:
        return None
    params = ", ".join([*_sampler_params(spec), f"config: {spec.config_name}"])
    doc = _SAMPLER_DOCS[spec.sampler]
    if spec.repetition_penalty:
        doc += ", with a repetition penalty on tokens already seen (counts > 0)"
    body = _sampling_body(spec)
    return "\n".join([f"def select_token({params}) -> jax.Array:", *_docstring([doc + "."]), *_indent(body)]) + "\n"


def _select_call(spec: Spec, logits: str, key: str, counts: str = "counts") -> str:
    if spec.sampler == "greedy" and not spec.repetition_penalty:
        return f"jnp.argmax({logits}, axis=-1).astype(jnp.int32)"
    args = [logits]
    if spec.repetition_penalty:
        args.append(counts)
    if spec.sampler != "greedy":
        args.append(key)
    return f"select_token({', '.join(args)}, config)"


# --- the model, per style ----------------------------------------------------------------


class _View:
    """How the model code of one style names parameters, layers and the decoder call."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.s = spec.style

    # parameters inside a layer
    def w(self, name: str) -> str:
        return f'layer["{name}"]' if self.s == "jax" else f"self.{name}"

    def top(self, name: str) -> str:
        return f'params["{name}"]' if self.s == "jax" else f"self.{name}"

    def norm(self, which: str, x: str, top: bool = False) -> str:
        get = self.top if top else self.w
        if self.s == "flax_nnx":
            return f"self.{which}_norm({x})"
        if self.spec.norm == "rms":
            return f"rms_norm({x}, {get(which + '_norm')}, config.norm_eps)"
        return f"layer_norm({x}, {get(which + '_norm_scale')}, {get(which + '_norm_bias')}, config.norm_eps)"

    def proj(self, name: str, x: str) -> str:
        heads = {"q": "config.num_heads", "k": "config.num_kv_heads", "v": "config.num_kv_heads"}
        if self.s == "flax_nnx":
            if name == "o":
                return f"self.o_proj({x}.reshape(b, t, -1))"
            return f"self.{name}_proj({x}).reshape(b, t, {heads[name]}, config.head_dim)"
        if self.spec.projection == "einsum":
            if name == "o":
                return f'jnp.einsum("bthk,hkd->btd", {x}, {self.w("wo")})'
            return f'jnp.einsum("btd,dhk->bthk", {x}, {self.w("w" + name)})'
        if name == "o":
            return f"{x}.reshape(b, t, -1) @ {self.w('wo')}"
        return f"({x} @ {self.w('w' + name)}).reshape(b, t, {heads[name]}, config.head_dim)"

    def mlp_lines(self, x: str, prefix: str = "") -> list[str]:
        """The feed-forward of ``x`` as one line, after ``prefix``."""

        def apply(name: str, a: str) -> str:
            if self.s == "flax_nnx":
                module = {"w_gate": "gate_proj", "w_up": "up_proj", "w_down": "down_proj"}[name]
                return f"self.{module}({a})"
            return f"{a} @ {self.w(name) if self.s == 'jax' else 'self.' + name}"

        if self.spec.mlp == "gelu":
            inner = f"jax.nn.gelu({apply('w_up', x)})"
        elif self.s == "flax_nnx":
            act = "jax.nn.silu" if self.spec.mlp == "swiglu" else "jax.nn.gelu"
            inner = f"{act}({apply('w_gate', x)}) * {apply('w_up', x)}"
        else:
            act = "jax.nn.silu" if self.spec.mlp == "swiglu" else "jax.nn.gelu"
            inner = f"({act}({apply('w_gate', x)}) * ({apply('w_up', x)}))"
        return [prefix + apply("w_down", inner)]


def _write_cache_lines(spec: Spec) -> list[str]:
    cast = spec.param_dtype != spec.dtype
    if spec.cache_update == "dynamic_update_slice":
        k, v = ("k.astype(k_cache.dtype)", "v.astype(v_cache.dtype)") if cast else ("k", "v")
        return [
            f"k_cache = lax.dynamic_update_slice(k_cache, {k}, (0, cache_index, 0, 0))",
            f"v_cache = lax.dynamic_update_slice(v_cache, {v}, (0, cache_index, 0, 0))",
        ]
    k, v = ("k[:, 0].astype(k_cache.dtype)", "v[:, 0].astype(v_cache.dtype)") if cast else ("k[:, 0]", "v[:, 0]")
    return [
        "batch_index = jnp.arange(b)",
        f"k_cache = k_cache.at[batch_index, positions[:, 0]].set({k})",
        f"v_cache = v_cache.at[batch_index, positions[:, 0]].set({v})",
    ]


def _layer_body(spec: Spec, view: _View) -> list[str]:
    """Statements of one decoder layer: ``hidden`` in, ``return hidden, k_cache, v_cache``."""
    lines = ["", f"x = {view.norm('attn', 'hidden')}"]
    lines += [f"{n} = {view.proj(n, 'x')}" for n in ("q", "k", "v")]
    if spec.positional != "learned":
        lines += [
            "q = apply_rope(q, positions, config.rope_theta)",
            "k = apply_rope(k, positions, config.rope_theta)",
        ]
    lines += _write_cache_lines(spec)
    lines.append("# a query at position p sees the cached keys at positions <= p")
    lines.append("mask = jnp.arange(config.max_seq_len)[None, None, :] <= positions[:, :, None]")
    if spec.attention == "dot_product_attention":
        if spec.param_dtype != spec.dtype:
            lines.append("keys, values = k_cache.astype(q.dtype), v_cache.astype(q.dtype)")
            lines.append("attn = jax.nn.dot_product_attention(q, keys, values, mask=mask[:, None])")
        else:
            lines.append("attn = jax.nn.dot_product_attention(q, k_cache, v_cache, mask=mask[:, None])")
    else:
        lines.append("attn = attend(q, k_cache, v_cache, mask)")
    lines.append(f"hidden = hidden + {view.proj('o', 'attn')}")
    if spec.style == "jax":
        lines.append(f"x = {view.norm('mlp', 'hidden')}")
        lines += view.mlp_lines("x", "hidden = hidden + ")
    else:
        lines.append(f"hidden = hidden + self.mlp({view.norm('mlp', 'hidden')})")
    lines.append("return hidden, k_cache, v_cache")
    return _shape_line("hidden", ["b", "t", "_"], lines[1:])


def _index_name(spec: Spec) -> str:
    return "cache_index" if spec.cache_update == "dynamic_update_slice" else "positions"


def _layer_call_args(spec: Spec) -> str:
    return "positions, cache_index" if spec.cache_update == "dynamic_update_slice" else "positions"


def _forward_body(spec: Spec, view: _View) -> list[str]:
    """Statements of the decoder: tokens [b, t] at the cache index -> (normed hidden, cache)."""
    lines = [""]
    if spec.cache_update == "dynamic_update_slice":
        lines.append("positions = jnp.broadcast_to(cache_index + jnp.arange(t), (b, t))")
    else:
        lines.append("positions = positions[:, None] + jnp.arange(t)")
    if spec.style == "flax_nnx":
        lines.append("hidden = self.embed(tokens)")
    elif spec.param_dtype != spec.dtype:
        lines.append(f"hidden = {view.top('embed')}[tokens].astype(config.dtype)")
    else:
        lines.append(f"hidden = {view.top('embed')}[tokens]")
    if spec.scale_embed:
        lines.append("hidden = hidden * jnp.asarray(math.sqrt(config.d_model), hidden.dtype)")
    if spec.positional == "learned":
        if spec.style == "flax_nnx":
            lines.append("hidden = hidden + self.pos_embed(positions)")
        else:
            lines.append(f"hidden = hidden + {view.top('pos_embed')}[positions]")
    args = _layer_call_args(spec)
    if spec.layers == "scan":
        lines += [
            "",
            "def body(hidden, layer_and_cache):",
            "    layer, k_cache, v_cache = layer_and_cache",
            f"    hidden, k_cache, v_cache = decoder_layer(layer, hidden, k_cache, v_cache, {args}, config)",
            "    return hidden, (k_cache, v_cache)",
            "",
            'hidden, (k, v) = lax.scan(body, hidden, (params["layers"], cache.k, cache.v))',
            "new_cache = KVCache(k=k, v=v)",
        ]
    else:
        if spec.style == "jax":
            layers, call = 'params["layers"]', f"decoder_layer(layer, hidden, {{k}}, {{v}}, {args}, config)"
        else:
            layers, call = "self.layers", f"layer(hidden, {{k}}, {{v}}, {args})"
        if spec.cache_container == "dict":
            k, v, new = 'layer_cache["k"]', 'layer_cache["v"]', '{"k": k_cache, "v": v_cache}'
        else:
            k, v, new = "layer_cache.k", "layer_cache.v", "LayerCache(k_cache, v_cache)"
        lines += [
            "new_cache = []",
            f"for layer, layer_cache in zip({layers}, cache):",
            f"    hidden, k_cache, v_cache = {call.format(k=k, v=v)}",
            f"    new_cache.append({new})",
        ]
    if spec.style == "flax_nnx":
        lines.append("hidden = self.final_norm(hidden)")
    else:
        lines.append(f"hidden = {view.norm('final', 'hidden', top=True)}")
    lines.append("return hidden, new_cache")
    return _shape_line("tokens", ["b", "t"], lines[1:])


def _shape_line(array: str, names: list[str], lines: list[str]) -> list[str]:
    """``lines`` after the unpacking of ``array.shape`` into the ``names`` they use."""
    text = "\n".join(lines)
    used = [n for n in names if n != "_" and re.search(rf"\b{n}\b", text)]
    if len(used) == len([n for n in names if n != "_"]):
        return [f"{', '.join(names)} = {array}.shape", *lines]
    return [f"{n} = {array}.shape[{names.index(n)}]" for n in used] + lines


def _logits_body(spec: Spec, view: _View) -> list[str]:
    """Statements from ``hidden`` [b, d] to float32 ``logits`` [b, vocab] (returned)."""
    if spec.style == "flax_nnx":
        expr = "self.embed.attend(hidden)" if spec.tied else "self.lm_head(hidden)"
    elif spec.tied:
        expr = f"hidden @ {view.top('embed')}.T"
    else:
        expr = f"hidden @ {view.top('lm_head')}"
    if spec.logits_dtype == "float32" and spec.style != "flax_nnx":
        if spec.tied:
            expr = f'jnp.einsum("bd,vd->bv", hidden, {view.top("embed")}, preferred_element_type=jnp.float32)'
        else:
            expr = f"jnp.dot(hidden, {view.top('lm_head')}, preferred_element_type=jnp.float32)"
    elif spec.style == "flax_nnx":
        expr = f"{expr}.astype(jnp.float32)"
    else:
        expr = f"({expr}).astype(jnp.float32)"
    if not spec.softcap:
        return [f"return {expr}"]
    return [
        f"logits = {expr}",
        "# soft-cap: tanh keeps the logits within +-logit_softcap",
        "return config.logit_softcap * jnp.tanh(logits / config.logit_softcap)",
    ]


def _cache_types(spec: Spec) -> str:
    if spec.cache_container == "namedtuple":
        return '''class LayerCache(NamedTuple):
    """One layer's keys and values, [batch, max_seq_len, num_kv_heads, head_dim]."""

    k: jax.Array
    v: jax.Array
'''
    if spec.cache_container == "stacked":
        return '''class KVCache(NamedTuple):
    """Keys and values of every layer, [num_layers, batch, max_seq_len, num_kv_heads, head_dim]."""

    k: jax.Array
    v: jax.Array
'''
    return ""


def _init_cache(spec: Spec) -> str:
    c = spec.config_name
    shape = "(config.batch_size, config.max_seq_len, config.num_kv_heads, config.head_dim)"
    if spec.cache_container == "stacked":
        shape = "(config.num_layers, config.batch_size, config.max_seq_len, config.num_kv_heads, config.head_dim)"
        ret = "return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))"
        rtype = "KVCache"
    elif spec.cache_container == "namedtuple":
        ret = "return [LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers)]"
        rtype = "list[LayerCache]"
    else:
        ret = 'return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)]'
        rtype = "list[dict[str, jax.Array]]"
    return f'''def init_cache(config: {c}) -> {rtype}:
    """An empty KV cache for config.batch_size sequences of up to config.max_seq_len tokens."""
    dtype = jnp.dtype(@PDT@)
    shape = {shape}
    {ret}
'''


def _norm_param_entries(spec: Spec, which: str) -> list[str]:
    if spec.norm == "rms":
        return [f'"{which}_norm": jnp.ones((config.d_model,), dtype),']
    return [
        f'"{which}_norm_scale": jnp.ones((config.d_model,), dtype),',
        f'"{which}_norm_bias": jnp.zeros((config.d_model,), dtype),',
    ]


def _proj_shapes(spec: Spec) -> dict[str, str]:
    if spec.projection == "einsum":
        return {
            "wq": "(config.d_model, config.num_heads, config.head_dim)",
            "wk": "(config.d_model, config.num_kv_heads, config.head_dim)",
            "wv": "(config.d_model, config.num_kv_heads, config.head_dim)",
            "wo": "(config.num_heads, config.head_dim, config.d_model)",
        }
    return {
        "wq": "(config.d_model, config.num_heads * config.head_dim)",
        "wk": "(config.d_model, config.num_kv_heads * config.head_dim)",
        "wv": "(config.d_model, config.num_kv_heads * config.head_dim)",
        "wo": "(config.num_heads * config.head_dim, config.d_model)",
    }


def _mlp_shapes(spec: Spec) -> dict[str, str]:
    shapes = {"w_up": "(config.d_model, config.d_ff)", "w_down": "(config.d_ff, config.d_model)"}
    if spec.mlp != "gelu":
        shapes = {"w_gate": "(config.d_model, config.d_ff)", **shapes}
    return shapes


def _wo_init(spec: Spec, key: str) -> str:
    """``wo``'s init: its fan-in is heads * head_dim even when it is head-shaped."""
    if spec.projection == "einsum":
        shape = _proj_shapes(spec)["wo"]
        return f"normal_init({key}, (config.num_heads * config.head_dim, config.d_model), dtype).reshape({shape})"
    return f"normal_init({key}, {_proj_shapes(spec)['wo']}, dtype)"


def _jax_model(spec: Spec) -> list[str]:
    c = spec.config_name
    view = _View(spec)
    weights = {**_proj_shapes(spec), **_mlp_shapes(spec)}
    names = list(weights)
    entries = _norm_param_entries(spec, "attn") + _norm_param_entries(spec, "mlp")
    for i, name in enumerate(names):
        init = _wo_init(spec, f"keys[{i}]") if name == "wo" else f"normal_init(keys[{i}], {weights[name]}, dtype)"
        entries.append(f'"{name}": {init},')
    init_layer = [
        f"def init_layer(config: {c}, key: jax.Array) -> dict[str, jax.Array]:",
        '    """Parameters of one decoder layer."""',
        "    dtype = jnp.dtype(@PDT@)",
        f"    keys = jax.random.split(key, {len(names)})",
        "    return {",
        *_indent(entries, 2),
        "    }",
        "",
    ]
    if spec.layers == "scan":
        layers = "jax.vmap(functools.partial(init_layer, config))(jax.random.split(layer_key, config.num_layers))"
        layers_doc = "stacked for lax.scan"
    else:
        layers = "[init_layer(config, k) for k in jax.random.split(layer_key, config.num_layers)]"
        layers_doc = "one dict per layer"
    top_keys = ["embed_key", "layer_key"]
    top = [
        '"embed": normal_init(embed_key, (config.vocab_size, config.d_model), dtype),',
        f'"layers": {layers},',
    ]
    if spec.positional == "learned":
        top_keys.append("pos_key")
        top.append('"pos_embed": normal_init(pos_key, (config.max_seq_len, config.d_model), dtype),')
    if not spec.tied:
        top_keys.append("head_key")
        top.append('"lm_head": normal_init(head_key, (config.d_model, config.vocab_size), dtype),')
    top += _norm_param_entries(spec, "final")
    init_params = [
        f"def init_params(config: {c}, key: jax.Array) -> dict:",
        f'    """Decoder parameters: embeddings, layers ({layers_doc}), final norm."""',
        "    dtype = jnp.dtype(@PDT@)",
        f"    {', '.join(top_keys)} = jax.random.split(key, {len(top_keys)})",
        "    return {",
        *_indent(top, 2),
        "    }",
        "",
    ]
    idx = _index_name(spec)
    layer_sig = "layer: dict, hidden: jax.Array, k_cache: jax.Array, v_cache: jax.Array, positions: jax.Array"
    if spec.cache_update == "dynamic_update_slice":
        layer_sig += ", cache_index: jax.Array"
    write = "at cache_index" if spec.cache_update == "dynamic_update_slice" else "at each row's position"
    layer = [
        f"def decoder_layer({layer_sig}, config: {c}):",
        '    """Pre-norm decoder layer on hidden [batch, seq, d_model].',
        "",
        f"    Writes this layer's keys and values into its cache {write}.",
        '    """',
        *_indent(_layer_body(spec, view)),
        "",
    ]
    forward = [
        f"def forward(params: dict, cache, tokens: jax.Array, {idx}: jax.Array, config: {c}):",
        '    """Runs the decoder on tokens [batch, seq] placed '
        + ("at the cache index." if spec.cache_update == "dynamic_update_slice" else "at each row's position."),
        "",
        "    Returns the final-normed hidden states [batch, seq, d_model] and the updated cache.",
        '    """',
        *_indent(_forward_body(spec, view)),
        "",
    ]
    logits = [
        f"def compute_logits(params: dict, hidden: jax.Array, config: {c}) -> jax.Array:",
        '    """Next-token logits [batch, vocab] (float32) from hidden states [batch, d_model]."""',
        *_indent(_logits_body(spec, view)),
        "",
    ]
    if "config." not in "\n".join(logits):
        logits[0] = "def compute_logits(params: dict, hidden: jax.Array) -> jax.Array:"
    return [*init_layer, "", *init_params, "", *layer, "", *forward, "", *logits]


def _module_norm_init(spec: Spec, which: str, style: str) -> list[str]:
    if style == "flax_nnx":
        cls = "nnx.RMSNorm" if spec.norm == "rms" else "nnx.LayerNorm"
        return [
            f"self.{which}_norm = {cls}(config.d_model, epsilon=config.norm_eps, dtype=dtype, param_dtype=@NNXP@, rngs=rngs)"
        ]
    if spec.norm == "rms":
        return [f"self.{which}_norm = jnp.ones((config.d_model,), dtype)"]
    return [
        f"self.{which}_norm_scale = jnp.ones((config.d_model,), dtype)",
        f"self.{which}_norm_bias = jnp.zeros((config.d_model,), dtype)",
    ]


def _eqx_norm_fields(spec: Spec, which: str) -> list[str]:
    if spec.norm == "rms":
        return [f"{which}_norm: jax.Array"]
    return [f"{which}_norm_scale: jax.Array", f"{which}_norm_bias: jax.Array"]


def _nnx_model(spec: Spec) -> list[str]:
    c, m = spec.config_name, spec.model_name
    view = _View(spec)
    linear = "functools.partial(nnx.Linear, use_bias=False, dtype=dtype, param_dtype=@NNXP@, rngs=rngs)"
    mlp_init = [
        "self.up_proj = linear(config.d_model, config.d_ff)",
        "self.down_proj = linear(config.d_ff, config.d_model)",
    ]
    if spec.mlp != "gelu":
        mlp_init.insert(0, "self.gate_proj = linear(config.d_model, config.d_ff)")
    mlp_doc = {"swiglu": "SwiGLU feed-forward block", "geglu": "GeGLU feed-forward block", "gelu": "GELU MLP"}[spec.mlp]
    mlp = [
        "class MLP(nnx.Module):",
        f'    """{mlp_doc}."""',
        "",
        f"    def __init__(self, config: {c}, *, rngs: nnx.Rngs):",
        "        @NNXDT@",
        f"        linear = {linear}",
        *_indent(mlp_init, 2),
        "",
        "    def __call__(self, x: jax.Array) -> jax.Array:",
        *_indent(view.mlp_lines("x", "return "), 2),
        "",
    ]
    idx_params = "positions: jax.Array" + (
        ", cache_index: jax.Array" if spec.cache_update == "dynamic_update_slice" else ""
    )
    layer = [
        "class DecoderLayer(nnx.Module):",
        '    """Pre-norm decoder layer: grouped-query attention over a KV cache, then the MLP."""',
        "",
        f"    def __init__(self, config: {c}, *, rngs: nnx.Rngs):",
        "        self.config = config",
        "        @NNXDT@",
        f"        linear = {linear}",
        "        self.q_proj = linear(config.d_model, config.num_heads * config.head_dim)",
        "        self.k_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)",
        "        self.v_proj = linear(config.d_model, config.num_kv_heads * config.head_dim)",
        "        self.o_proj = linear(config.num_heads * config.head_dim, config.d_model)",
        "        self.mlp = MLP(config, rngs=rngs)",
        *_indent(_module_norm_init(spec, "attn", "flax_nnx"), 2),
        *_indent(_module_norm_init(spec, "mlp", "flax_nnx"), 2),
        "",
        f"    def __call__(self, hidden: jax.Array, k_cache: jax.Array, v_cache: jax.Array, {idx_params}):",
        "        config = self.config",
        *_indent(_layer_body(spec, view), 2),
        "",
    ]
    init = [
        "self.config = config",
        "@NNXDT@",
        "self.embed = nnx.Embed(config.vocab_size, config.d_model, dtype=dtype, param_dtype=@NNXP@, rngs=rngs)",
    ]
    if spec.positional == "learned":
        init.append(
            "self.pos_embed = nnx.Embed(config.max_seq_len, config.d_model, dtype=dtype, param_dtype=@NNXP@, rngs=rngs)"
        )
    init.append("self.layers = nnx.List([DecoderLayer(config, rngs=rngs) for _ in range(config.num_layers)])")
    init += _module_norm_init(spec, "final", "flax_nnx")
    if not spec.tied:
        init.append(
            "self.lm_head = nnx.Linear(config.d_model, config.vocab_size, use_bias=False, dtype=dtype, param_dtype=@NNXP@, rngs=rngs)"
        )
    model = _module_tail(spec, view, m, init, f"def __init__(self, config: {c}, *, rngs: nnx.Rngs):", "nnx.Module")
    return [*mlp, "", *layer, "", *model]


def _module_tail(spec: Spec, view: _View, m: str, init: list[str], init_sig: str, base: str, fields=()) -> list[str]:
    idx = _index_name(spec)
    forward = _forward_body(spec, view)
    logits = _logits_body(spec, view)
    where = "at the cache index" if spec.cache_update == "dynamic_update_slice" else "at each row's position"
    call_doc = [
        f'        """Runs the decoder on tokens [batch, seq] placed {where}.',
        "",
        "        Returns the final-normed hidden states [batch, seq, d_model] and the updated cache.",
        '        """',
    ]
    lines = [
        f"class {m}({base}):",
        '    """Decoder-only language model for autoregressive inference with an explicit KV cache."""',
        "",
        *_indent(list(fields)),
        *([""] if fields else []),
        f"    {init_sig}",
        *_indent(init, 2),
        "",
        f"    def __call__(self, tokens: jax.Array, cache, {idx}: jax.Array):",
        *call_doc,
        *(["        config = self.config"] if any("config." in line for line in forward) else []),
        *_indent(forward, 2),
        "",
        "    def logits(self, hidden: jax.Array) -> jax.Array:",
        '        """Next-token logits [batch, vocab] (float32) from hidden states [batch, d_model]."""',
    ]
    if any("config." in line for line in logits):
        lines.append("        config = self.config")
    return lines + _indent(logits, 2) + [""]


def _eqx_model(spec: Spec) -> list[str]:
    c, m = spec.config_name, spec.model_name
    view = _View(spec)
    mlp_shapes = _mlp_shapes(spec)
    mlp_doc = {"swiglu": "SwiGLU feed-forward block", "geglu": "GeGLU feed-forward block", "gelu": "GELU MLP"}[spec.mlp]
    mlp = [
        "class MLP(eqx.Module):",
        f'    """{mlp_doc}."""',
        "",
        *[f"    {n}: jax.Array" for n in mlp_shapes],
        "",
        f"    def __init__(self, config: {c}, key: jax.Array):",
        "        dtype = jnp.dtype(@PDT@)",
        f"        keys = jax.random.split(key, {len(mlp_shapes)})",
        *[f"        self.{n} = normal_init(keys[{i}], {s}, dtype)" for i, (n, s) in enumerate(mlp_shapes.items())],
        "",
        "    def __call__(self, x: jax.Array) -> jax.Array:",
        *_indent(view.mlp_lines("x", "return "), 2),
        "",
    ]
    proj = _proj_shapes(spec)
    fields = [*(f"{n}: jax.Array" for n in proj), *_eqx_norm_fields(spec, "attn"), *_eqx_norm_fields(spec, "mlp")]
    fields += ["mlp: MLP", f"config: {c} = eqx.field(static=True)"]
    idx_params = "positions: jax.Array" + (
        ", cache_index: jax.Array" if spec.cache_update == "dynamic_update_slice" else ""
    )
    layer = [
        "class DecoderLayer(eqx.Module):",
        '    """Pre-norm decoder layer: grouped-query attention over a KV cache, then the MLP."""',
        "",
        *_indent(fields),
        "",
        f"    def __init__(self, config: {c}, key: jax.Array):",
        "        self.config = config",
        "        dtype = jnp.dtype(@PDT@)",
        "        kq, kk, kv, ko, kmlp = jax.random.split(key, 5)",
        f"        self.wq = normal_init(kq, {proj['wq']}, dtype)",
        f"        self.wk = normal_init(kk, {proj['wk']}, dtype)",
        f"        self.wv = normal_init(kv, {proj['wv']}, dtype)",
        f"        self.wo = {_wo_init(spec, 'ko')}",
        *_indent(_module_norm_init(spec, "attn", "equinox"), 2),
        *_indent(_module_norm_init(spec, "mlp", "equinox"), 2),
        "        self.mlp = MLP(config, kmlp)",
        "",
        f"    def __call__(self, hidden: jax.Array, k_cache: jax.Array, v_cache: jax.Array, {idx_params}):",
        "        config = self.config",
        *_indent(_layer_body(spec, view), 2),
        "",
    ]
    model_fields = ["embed: jax.Array"]
    keys = ["embed_key", "layer_key"]
    init = ["self.config = config", "dtype = jnp.dtype(@PDT@)"]
    body_init = [
        "self.embed = normal_init(embed_key, (config.vocab_size, config.d_model), dtype)",
        "self.layers = tuple(DecoderLayer(config, k) for k in jax.random.split(layer_key, config.num_layers))",
    ]
    if spec.positional == "learned":
        model_fields.append("pos_embed: jax.Array")
        keys.append("pos_key")
        body_init.append("self.pos_embed = normal_init(pos_key, (config.max_seq_len, config.d_model), dtype)")
    model_fields.append("layers: tuple[DecoderLayer, ...]")
    model_fields += _eqx_norm_fields(spec, "final")
    if not spec.tied:
        model_fields.append("lm_head: jax.Array")
        keys.append("head_key")
        body_init.append("self.lm_head = normal_init(head_key, (config.d_model, config.vocab_size), dtype)")
    model_fields.append(f"config: {c} = eqx.field(static=True)")
    init += [f"{', '.join(keys)} = jax.random.split(key, {len(keys)})", *body_init]
    init += _module_norm_init(spec, "final", "equinox")
    model = _module_tail(
        spec, view, m, init, f"def __init__(self, config: {c}, key: jax.Array):", "eqx.Module", model_fields
    )
    return [*mlp, "", *layer, "", *model]


# --- the jitted function ------------------------------------------------------------------


class _Entry:
    """The jitted function's arguments and how its body calls the model, per style."""

    def __init__(self, spec: Spec):
        self.spec = spec
        s = spec.style
        self.model_args = {"jax": ["params"], "flax_nnx": ["graphdef", "state"], "equinox": ["params", "static"]}[s]
        self.model_hints = {"jax": ["dict"], "flax_nnx": ["nnx.GraphDef", "nnx.State"], "equinox": [None, None]}[s]
        self.prologue = {
            "jax": [],
            "flax_nnx": ["model = nnx.merge(graphdef, state)"],
            "equinox": ["model = eqx.combine(params, static)"],
        }[s]

    def call(self, tokens: str, cache: str, idx: str) -> str:
        if self.spec.style == "jax":
            return f"forward(params, {cache}, {tokens}, {idx}, config)"
        return f"model({tokens}, {cache}, {idx})"

    def logits(self, hidden: str) -> str:
        if self.spec.style == "jax":
            extra = ", config" if self.spec.softcap else ""
            return f"compute_logits(params, {hidden}{extra})"
        return f"model.logits({hidden})"


def _returns_lines(spec: Spec, key_expr: str) -> tuple[list[str], str]:
    """Statements after ``logits`` for a decode step or a prefill, and what they return first."""
    if spec.returns == "logits":
        return [], "logits"
    lines = [f"next_tokens = {_select_call(spec, 'logits', key_expr)}"]
    if spec.returns == "tokens":
        return lines, "next_tokens"
    lines += [
        "logprobs = jax.nn.log_softmax(logits, axis=-1)",
        "next_logprobs = jnp.take_along_axis(logprobs, next_tokens[:, None], axis=-1)[:, 0]",
    ]
    return lines, "next_tokens, next_logprobs"


def _decode_step(spec: Spec, entry: _Entry) -> tuple[list[str], list[tuple[str, str | None]], str]:
    idx = _index_name(spec)
    args: list[tuple[str, str | None]] = [(a, h) for a, h in zip(entry.model_args, entry.model_hints)]
    args += [("cache", None), ("tokens", "jax.Array"), (idx, "jax.Array")]
    key_expr = "key"
    if spec.cache_update == "dynamic_update_slice" and spec.key_schedule == "fold_in":
        key_expr = "jax.random.fold_in(key, cache_index)"
    if _samples_randomly(spec):
        args.append(("key", "jax.Array"))
    body = [
        f"hidden, cache = {entry.call('tokens[:, None]', 'cache', idx)}",
        f"logits = {entry.logits('hidden[:, -1]')}",
    ]
    more, first = _returns_lines(spec, key_expr)
    body += more
    body.append(f"return {first}, cache")
    what = {
        "logits": "the next-token logits [batch, vocab] (float32)",
        "tokens": "the next tokens [batch]",
        "tokens_logprobs": "the next tokens [batch] with their log-probabilities",
    }[spec.returns]
    where = (
        "at cache_index (the same position for every row)"
        if spec.cache_update == "dynamic_update_slice"
        else "at each row's own position (positions [batch])"
    )
    doc = [
        f"One decoding step: feeds tokens [batch] {where}.",
        "",
        f"Returns {what} and the cache with this step's keys and values written.",
    ]
    return doc, args, "\n".join(body)


def _prefill(spec: Spec, entry: _Entry) -> tuple[list[str], list[tuple[str, str | None]], str]:
    args: list[tuple[str, str | None]] = [(a, h) for a, h in zip(entry.model_args, entry.model_hints)]
    if not spec.prefill_allocates:
        args.append(("cache", None))
    args.append(("prompt", "jax.Array"))
    if spec.ragged_prompts:
        args.append(("prompt_lengths", "jax.Array"))
    if _samples_randomly(spec):
        args.append(("key", "jax.Array"))
    body = []
    if spec.prefill_allocates:
        body.append("cache = init_cache(config)")
    body.append(f"hidden, cache = {entry.call('prompt', 'cache', '0')}")
    if spec.ragged_prompts:
        body += [
            "# right-padded prompts: each row's next token follows its last real token",
            "last_hidden = hidden[jnp.arange(hidden.shape[0]), prompt_lengths - 1]",
            f"logits = {entry.logits('last_hidden')}",
        ]
    else:
        body.append(f"logits = {entry.logits('hidden[:, -1]')}")
    more, first = _returns_lines(spec, "key")
    body += more
    body.append(f"return {first}, cache")
    what = {"logits": "next-token logits", "tokens": "first sampled tokens", "tokens_logprobs": "first tokens"}[
        spec.returns
    ]
    doc = [
        "Prefill: runs the prompt [batch, prompt_len] through the decoder in one pass.",
        "",
        f"Writes its keys and values at positions [0, prompt_len) of the cache; returns the {what} and the cache.",
    ]
    return doc, args, "\n".join(body)


def _key_lines(spec: Spec, position: str) -> tuple[list[str], str]:
    """Statements giving this step's key (``step_key``), and the name to pass the sampler."""
    if not _samples_randomly(spec):
        return [], ""
    if spec.key_schedule == "split":
        return ["key, step_key = jax.random.split(key)"], "step_key"
    return [f"step_key = jax.random.fold_in(key, {position})"], "step_key"


def _generate(spec: Spec, entry: _Entry) -> tuple[list[str], list[tuple[str, str | None]], str]:
    args: list[tuple[str, str | None]] = [(a, h) for a, h in zip(entry.model_args, entry.model_hints)]
    args.append(("prompt", "jax.Array"))
    if spec.loop == "while_loop":
        args.append(("eos_id", "jax.Array"))
    rand = _samples_randomly(spec)
    if rand:
        args.append(("key", "jax.Array"))
    carry_key = rand and spec.key_schedule == "split"
    pen = spec.repetition_penalty
    dus = spec.cache_update == "dynamic_update_slice"

    def idx_of(step: str) -> str:
        return step if dus else f"jnp.full((b,), {step}, jnp.int32)"

    body = ["b = prompt.shape[0]", "cache = init_cache(config)"]
    if pen:
        body.append("counts = jnp.zeros((b, config.vocab_size), jnp.int32).at[jnp.arange(b)[:, None], prompt].add(1)")
    carry_extra = (["key"] if carry_key else []) + (["counts"] if pen else [])
    prefill = spec.prompt_mode == "prefill"
    if prefill:
        keys, key_name = _key_lines(spec, "config.prompt_len")
        body += [
            f"hidden, cache = {entry.call('prompt', 'cache', idx_of('0'))}",
            f"logits = {entry.logits('hidden[:, -1]')}",
            *keys,
            f"next_token = {_select_call(spec, 'logits', key_name)}",
        ]
        if pen:
            body.append("counts = counts.at[jnp.arange(b), next_token].add(1)")

    # one decoding step inside the loop: the token at `step` in, the token at `step + 1` out
    def step_lines(token: str) -> list[str]:
        keys, key_name = _key_lines(spec, "step + 1")
        lines = []
        if token != "token[:, None]":
            lines.append(f"token = {token}")
            token = "token"
        lines += [
            f"hidden, cache = {entry.call(token, 'cache', idx_of('step'))}",
            f"logits = {entry.logits('hidden[:, -1]')}",
            *keys,
            f"next_token = {_select_call(spec, 'logits', key_name)}",
        ]
        if not prefill:
            lines += [
                "# inside the prompt the next token is given, not sampled",
                "in_prompt = step + 1 < config.prompt_len",
                "prompt_token = lax.dynamic_slice_in_dim(tokens, step + 1, 1, axis=1)[:, 0]",
                "next_token = jnp.where(in_prompt, prompt_token, next_token)",
            ]
            if pen:
                lines.append("counts = counts.at[jnp.arange(b), next_token].add(jnp.where(in_prompt, 0, 1))")
        elif pen:
            lines.append("counts = counts.at[jnp.arange(b), next_token].add(1)")
        return lines

    if spec.loop == "scan":
        carry = ", ".join(["token", "cache", *carry_extra])
        body += [
            "",
            "def step_fn(carry, step):",
            f"    {carry} = carry",
            *_indent(step_lines("token[:, None]")),
            f"    return ({', '.join(['next_token', 'cache', *carry_extra])}), next_token",
            "",
            "steps = jnp.arange(config.prompt_len, config.max_seq_len - 1)",
            f"_, generated = lax.scan(step_fn, ({', '.join(['next_token', 'cache', *carry_extra])}), steps)",
            "return jnp.concatenate([prompt, next_token[:, None], generated.T], axis=1)",
        ]
        return _generate_doc(spec), args, _drop_unused_batch("\n".join(body))

    body.append("tokens = jnp.zeros((b, config.max_seq_len), jnp.int32).at[:, : config.prompt_len].set(prompt)")
    if prefill:
        body.append("tokens = tokens.at[:, config.prompt_len].set(next_token)")
    start = "config.prompt_len" if prefill else "0"
    write = "tokens = lax.dynamic_update_slice(tokens, next_token[:, None], (0, step + 1))"
    token_in = "lax.dynamic_slice_in_dim(tokens, step, 1, axis=1)"
    if spec.loop == "fori_loop":
        carry = ", ".join(["tokens", "cache", *carry_extra])
        body += [
            "",
            "def body(step, carry):",
            f"    {carry} = carry",
            *_indent(step_lines(token_in)),
            f"    {write}",
            f"    return {carry}",
            "",
            f"tokens = lax.fori_loop({start}, config.max_seq_len - 1, body, ({carry}))[0]",
            "return tokens",
        ]
        return _generate_doc(spec), args, _drop_unused_batch("\n".join(body))
    # while_loop: stop when every row has emitted eos_id (or the cache is full)
    carry = ", ".join(["step", "tokens", "cache", "done", *carry_extra])
    done0 = "next_token == eos_id" if prefill else "jnp.zeros((b,), jnp.bool_)"
    finished = "next_token == eos_id" if prefill else "(next_token == eos_id) & ~in_prompt"
    body += [
        "",
        "def keep_going(carry):",
        "    step, done = carry[0], carry[3]",
        "    return (step < config.max_seq_len - 1) & ~jnp.all(done)",
        "",
        "def body(carry):",
        f"    {carry} = carry",
        *_indent(step_lines(token_in)),
        "    # finished rows keep emitting eos_id",
        "    next_token = jnp.where(done, eos_id, next_token)",
        f"    done = done | ({finished})",
        f"    {write}",
        f"    return {carry.replace('step,', 'step + 1,', 1)}",
        "",
        f"init = ({', '.join([f'jnp.asarray({start}, jnp.int32)', 'tokens', 'cache', done0, *carry_extra])})",
        "tokens = lax.while_loop(keep_going, body, init)[1]",
        "return tokens",
    ]
    return _generate_doc(spec), args, _drop_unused_batch("\n".join(body))


def _drop_unused_batch(body: str) -> str:
    """``body`` without its ``b = prompt.shape[0]`` line when nothing reads ``b`` (every value used)."""
    first, rest = body.split("\n", 1)
    if first == "b = prompt.shape[0]" and not re.search(r"\bb\b", rest):
        return rest
    return body


def _generate_doc(spec: Spec) -> list[str]:
    how = {
        "greedy": "greedily",
        "temperature": "by temperature sampling",
        "top_k": "by top-k sampling",
        "top_k_mask": "by top-k sampling",
        "top_p": "by nucleus (top-p) sampling",
        "min_p": "by min-p sampling",
    }[spec.sampler]
    first = (
        "Prefills the prompt [batch, prompt_len] in one pass, then decodes"
        if spec.prompt_mode == "prefill"
        else "Feeds the prompt [batch, prompt_len] token by token, then decodes"
    )
    stop = (
        " until every row has emitted eos_id or the cache is full"
        if spec.loop == "while_loop"
        else " until the cache is full"
    )
    return [f"{first} {how}{stop}.", "", "Returns the tokens [batch, max_seq_len] (prompt included)."]


def _sample_entry(spec: Spec) -> tuple[list[str], list[tuple[str, str | None]], str]:
    args: list[tuple[str, str | None]] = [("logits", "jax.Array")]
    if spec.repetition_penalty:
        args.append(("prev_tokens", "jax.Array"))
    if spec.sampler != "greedy":
        args.append(("key", "jax.Array"))
    body = []
    cast = spec.logits_dtype != "float32"
    if cast:
        body.append("logits = logits.astype(jnp.float32)")
    if spec.returns == "tokens_logprobs":
        body.append("logprobs = jax.nn.log_softmax(logits, axis=-1)")
    if spec.repetition_penalty:
        body += [
            "b = logits.shape[0]",
            "counts = jnp.zeros((b, config.vocab_size), jnp.int32).at[jnp.arange(b)[:, None], prev_tokens].add(1)",
        ]
    sampling = _sampling_body(spec)
    if spec.returns == "tokens_logprobs":
        sampling[-1] = sampling[-1].replace("return ", "next_tokens = ", 1)
        sampling += [
            "next_logprobs = jnp.take_along_axis(logprobs, next_tokens[:, None], axis=-1)[:, 0]",
            "return next_tokens, next_logprobs",
        ]
    body += sampling
    inputs = "logits are [batch, vocab]"
    if spec.repetition_penalty:
        inputs += "; the tokens in prev_tokens [batch, prompt_len] are penalized"
    doc = [_SAMPLER_DOCS[spec.sampler] + ".", "", inputs + "."]
    if spec.returns == "tokens_logprobs":
        doc[-1] += " Returns the tokens [batch] and their log-probabilities under the unmodified logits."
    return doc, args, "\n".join(body)


def _example_args(spec: Spec, args: list[tuple[str, str | None]]) -> list[str]:
    c = spec.config_name
    lines = ["def example_args():", f"    config = {c}()"]
    shapes = {
        "logits": "(config.batch_size, config.vocab_size)",
        "prev_tokens": "(config.batch_size, config.prompt_len)",
        "tokens": "(config.batch_size,)",
        "positions": "(config.batch_size,)",
        "cache_index": "()",
        "prompt": "(config.batch_size, config.prompt_len)",
        "prompt_lengths": "(config.batch_size,)",
        "eos_id": "()",
    }
    names = [a for a, _ in args]
    if spec.style == "jax" and "params" in names:
        lines.append("    params = jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))")
    if spec.style == "flax_nnx":
        lines.append(
            f"    graphdef, state = nnx.split(nnx.eval_shape(lambda: {spec.model_name}(config, rngs=nnx.Rngs(0))))"
        )
    if spec.style == "equinox":
        lines.append(f"    model = eqx.filter_eval_shape({spec.model_name}, config, jax.random.key(0))")
        lines.append("    params, static = eqx.partition(model, eqx.is_array)")
    for name in names:
        if name == "cache":
            lines.append("    cache = jax.eval_shape(functools.partial(init_cache, config))")
        elif name == "key":
            lines.append("    key = jax.eval_shape(jax.random.key, 0)")
        elif name == "logits":
            dtype = "jnp.float32" if spec.logits_dtype == "float32" else "jnp.bfloat16"
            lines.append(f"    logits = jax.ShapeDtypeStruct({shapes[name]}, {dtype})")
        elif name in shapes:
            lines.append(f"    {name} = jax.ShapeDtypeStruct({shapes[name]}, jnp.int32)")
    ret = names + (["config"] if spec.style == "jax" else [])
    lines.append(f"    return {', '.join(ret)}")
    return lines


# --- the module text ----------------------------------------------------------------------


def _imports(body: str) -> list[str]:
    std = ["import dataclasses"]
    if "functools." in body:
        std.append("import functools")
    if "math." in body:
        std.append("import math")
    if "NamedTuple" in body:
        std.append("from typing import NamedTuple")
    third = []
    if "eqx." in body:
        third.append("import equinox as eqx")
    third.append("import jax")
    if "jnp." in body:
        third.append("import jax.numpy as jnp")
    if "nnx." in body:
        third.append("from flax import nnx")
    if re.search(r"\blax\.", body):
        third.append("from jax import lax")
    return [*std, "", *third]


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _wrap_defs(text: str, width: int = 110) -> str:
    """Long ``def`` lines with one parameter a line, as a formatter writes them."""
    out = []
    for line in text.split("\n"):
        m = re.match(r"^(\s*)def (\w+)\((.*)\)( -> .*)?:$", line)
        if m and len(line) > width:
            pad, name, params, ret = m.group(1), m.group(2), m.group(3), m.group(4) or ""
            out.append(f"{pad}def {name}(")
            out += [f"{pad}    {p}," for p in _split_top_level(params)]
            out.append(f"{pad}){ret}:")
        else:
            out.append(line)
    return "\n".join(out)


_MODULE_DOCS = {
    "decode_step": "Single-token decode step of a decoder-only LM over a KV cache.",
    "prefill": "Prefill of a decoder-only LM: the prompt fills the KV cache in one pass.",
    "generate": "Autoregressive generation with a KV cache under a jitted loop.",
    "sample": "Choosing the next token from a language model's logits.",
}


def render(spec: Spec) -> ModelProgram:
    """The module text of ``spec`` (draws no random numbers)."""
    entry = _Entry(spec)
    if spec.variant == "decode_step":
        doc, args, body = _decode_step(spec, entry)
    elif spec.variant == "prefill":
        doc, args, body = _prefill(spec, entry)
    elif spec.variant == "generate":
        doc, args, body = _generate(spec, entry)
    else:
        doc, args, body = _sample_entry(spec)

    body_lines = body.split("\n")
    if spec.variant != "sample":
        if spec.style != "jax" and re.search(r"\bconfig\b", body):
            body_lines = ["config = model.config", *body_lines]
        body_lines = entry.prologue + body_lines
    params = [f"{a}: {h}" if h else a for a, h in args]
    if spec.style == "jax":
        params.append(f"config: {spec.config_name}")
    docstring = _docstring(doc)
    fn = [f"def {spec.function_name}({', '.join(params)}):", *docstring, *_indent(body_lines)]

    sections: list[str] = [config_class(spec.config_name, _config_fields(spec))]
    if spec.variant != "sample":
        sections.append(_cache_types(spec))
        sections.append(_init_helper())
        sections.append(_norm_helper(spec))
        if spec.positional != "learned":
            sections.append(_rope_helper(spec))
        sections.append(_attention_helper(spec) or "")
        sections.append(_init_cache(spec))
        model = {"jax": _jax_model, "flax_nnx": _nnx_model, "equinox": _eqx_model}[spec.style](spec)
        sections.append("\n".join(model))
        if _chooses_tokens(spec):
            sections.append(_sampler_helper(spec) or "")
    sections.append("\n".join(fn))
    sections.append("\n".join(_example_args(spec, args)))
    code = _join(sections)
    split = spec.param_dtype != spec.dtype
    code = (
        code.replace("@PDT@", "config.param_dtype" if split else "config.dtype")
        .replace("@NNXP@", "param_dtype" if split else "dtype")
        .replace(
            "@NNXDT@",
            "dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)"
            if split
            else "dtype = jnp.dtype(config.dtype)",
        )
    )
    text = f'"""{_MODULE_DOCS[spec.variant]}"""\n\n' + "\n".join(_imports(code)) + "\n\n\n" + _wrap_defs(code)
    return ModelProgram(
        category=CATEGORY,
        style=spec.style,
        function_name=spec.function_name,
        source=text,
        transforms=_transforms(spec),
    )


def _docstring(paragraphs: list[str], width: int = 100) -> list[str]:
    """A function docstring (indented one level) of ``paragraphs`` ("" separates them)."""
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph, width) if paragraph else [""]
    if len(lines) == 1:
        return ['    """' + lines[0] + '"""']
    return ['    """' + lines[0], *_indent(lines[1:]), '    """']


def _join(sections: list[str]) -> str:
    return "\n\n".join(s.rstrip("\n") + "\n" for s in sections if s.strip())


def _transforms(spec: Spec) -> tuple[str, ...]:
    order: list[str] = []
    if spec.variant == "generate" and spec.prompt_mode == "stepwise":
        order.append(spec.loop)
    if spec.layers == "scan":
        order.append("scan")
    if spec.variant == "generate":
        order.append(spec.loop)
    return tuple(dict.fromkeys(order))


# What decides a program's split (``Family.structure``): the choices that change what it computes.
STRUCTURE = {
    ("decode_step",): (
        "attention",
        "cache_update",
        "layers",
        "norm",
        "positional",
        "returns",
        "scale_embed",
        "softcap",
    ),
    ("generate",): (
        "attention",
        "cache_update",
        "layers",
        "loop",
        "norm",
        "positional",
        "projection",
        "prompt_mode",
        "repetition_penalty",
        "sampler",
        "scale_embed",
        "softcap",
    ),
    ("prefill",): ("attention", "layers", "norm", "positional", "ragged_prompts", "returns", "scale_embed", "softcap"),
    ("sample",): ("sampler",),
}
FAMILY = Family(CATEGORY, sample, render, context=("variant",), structure=STRUCTURE)
