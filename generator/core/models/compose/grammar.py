"""Draws architectures the way published models combine blocks, then sizes and a writing
style. Every field is drawn only where the architecture uses it (``spec`` module docstring)."""

from __future__ import annotations

import random

from ..base import D_MODELS, SEQ_LENS, VOCAB_SIZES, attention_heads, ffn_dim, pick
from .spec import ACTIVATIONS, Architecture, Attention, Layer, Mlp, ModelSpec, Sizes

# Local/global periods of published hybrids (Gemma 2 alternates; Gemma 3 has 5 local per global).
PATTERNS = (("local", "global"), ("local", "local", "global"), ("local",) * 5 + ("global",), ("global", "local"))
SCAN_LAYERS = (6, 8, 12, 16, 18, 24, 26, 28, 32, 36, 40, 42, 48)
WINDOW_SIZES = (128, 256, 512, 1024, 2048, 4096)
MESHES = {"data": ((8,),), "fsdp": ((8,),), "tensor": ((2, 4), (4, 2)), "fsdp_tensor": ((2, 4), (4, 2))}
CHECKPOINT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")

FUNCTION_NAMES = {
    "lm": ("forward", "apply_model", "compute_logits", "transformer_forward"),
    "classifier": ("classify", "forward", "predict_classes", "encoder_forward"),
    "block": ("apply_block", "decoder_layer_forward", "block_forward", "apply_layer"),
}
CONFIG_NAMES = {
    "lm": ("TransformerConfig", "ModelConfig", "LMConfig", "DecoderConfig"),
    "classifier": ("EncoderConfig", "ClassifierConfig", "ModelConfig"),
    "block": ("BlockConfig", "LayerConfig", "TransformerConfig"),
}
MODEL_CLASSES = {"lm": ("Transformer", "DecoderLM", "LanguageModel"), "classifier": ("Encoder", "TextClassifier")}

# Shape budgets: nothing is allocated at lowering, but programs stay the sizes models run at.
TOKENS_CAP = {"lm": 1 << 16, "classifier": 1 << 16, "block": 1 << 17}
LOGITS_CAP = 1 << 31
SCORES_CAP = 1 << 33


def sample_attention(rng: random.Random, task: str, hybrid: bool) -> Attention:
    causal = task != "classifier"
    impls = ["grouped", "grouped", "repeat"] + ([] if hybrid else ["dpa"])
    softcap = rng.random() < 0.2
    impl = pick(rng, [i for i in impls if not (softcap and i == "dpa")])
    rope = pick(rng, ("half", "half", "interleaved", "none")) if causal else pick(rng, ("half", "none", "none"))
    return Attention(
        impl=impl, rope=rope, qk_norm=rng.random() < 0.3, softcap=softcap, qkv_bias=rng.random() < 0.2, causal=causal
    )


def sample_layer(rng: random.Random, task: str, hybrid: bool) -> Layer:
    placement = pick(rng, ("pre", "pre", "pre", "post", "sandwich", "parallel"))
    return Layer(
        attention=sample_attention(rng, task, hybrid),
        mlp=Mlp(pick(rng, ACTIVATIONS), bias=rng.random() < 0.15),
        norm="rms" if rng.random() < 0.65 else "layer",
        placement=placement,
    )


def sample_architecture(rng: random.Random) -> Architecture:
    task = pick(rng, ("lm", "lm", "lm", "lm", "classifier", "block", "block"))
    pattern: tuple[str, ...] = ("global",)
    if task != "classifier" and rng.random() < 0.35:
        pattern = pick(rng, PATTERNS) if task == "lm" and rng.random() < 0.6 else ("local",)
    hybrid = len(set(pattern)) > 1
    layer = sample_layer(rng, task, hybrid)
    if task == "block":
        return Architecture(task, layer, pattern, sharding=_sharding(rng))
    layout = "scan" if rng.random() < 0.5 else "unrolled"
    remat = ""
    if layout == "scan" and rng.random() < 0.5:
        remat = pick(rng, ("checkpoint", *CHECKPOINT_POLICIES))
    lm = task == "lm"
    tied = lm and rng.random() < 0.4
    return Architecture(
        task=task,
        layer=layer,
        pattern=pattern,
        layout=layout,
        remat=remat,
        learned_positions=layer.attention.rope == "none",
        scale_embeddings=rng.random() < (0.6 if tied else 0.15),
        tied=tied,
        final_softcap=lm and rng.random() < 0.2,
        return_hidden=lm and rng.random() < 0.15,
        sharding=_sharding(rng),
    )


def _sharding(rng: random.Random) -> str:
    return pick(rng, ("data", "fsdp", "tensor", "fsdp_tensor")) if rng.random() < 0.6 else "none"


def sample_sizes(rng: random.Random, arch: Architecture) -> Sizes:
    """Real sizes for ``arch``; a sharded layout gets sizes its mesh divides."""
    mesh = pick(rng, MESHES[arch.sharding]) if arch.sharding != "none" else ()
    model_axis = mesh[1] if len(mesh) == 2 else 1
    while True:
        d_model = pick(rng, D_MODELS)
        num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model)
        if num_heads % model_axis == 0:
            break
    seq = pick(rng, SEQ_LENS)
    vocab = pick(rng, [v for v in VOCAB_SIZES if v % max(model_axis, 1) == 0]) if arch.task != "block" else 0
    cap = TOKENS_CAP[arch.task]
    if arch.task == "lm":
        cap = min(cap, LOGITS_CAP // vocab)
    cap = min(cap, SCORES_CAP // (num_heads * seq))
    batch_axis = mesh[0] if mesh else 1
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64) if b * seq <= cap and b % batch_axis == 0 and (not mesh or b >= 8)]
    if not batches:
        seq = min(seq, cap // 8)
        batches = [8]
    if arch.hybrid:
        layers = len(arch.pattern) * (rng.randint(1, 2) if arch.layout == "unrolled" else rng.randint(2, 8))
    elif arch.task == "block":
        layers = 1
    else:
        layers = pick(rng, SCAN_LAYERS) if arch.layout == "scan" else rng.randint(1, 4)
    windows = [w for w in WINDOW_SIZES if w < seq]
    return Sizes(
        d_model=d_model,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        d_ff=ffn_dim(rng, d_model, gated=arch.layer.mlp.gated),
        num_layers=layers,
        batch_size=pick(rng, batches),
        seq_len=seq,
        vocab_size=vocab,
        num_classes=pick(rng, (2, 3, 5, 10, 20, 100)) if arch.task == "classifier" else 0,
        window_size=pick(rng, windows or [seq // 2]) if arch.local else 0,
        rope_theta=pick(rng, (10_000.0, 10_000.0, 500_000.0, 1_000_000.0)) if arch.layer.attention.rope != "none" else 0.0,
        norm_eps=pick(rng, (1e-5, 1e-6)),
        attn_softcap=pick(rng, (30.0, 50.0)) if arch.layer.attention.softcap else 0.0,
        final_softcap=pick(rng, (15.0, 30.0)) if arch.final_softcap else 0.0,
        mesh_shape=mesh,
    )


def sample(rng: random.Random, category: str = "transformer") -> ModelSpec:
    arch = sample_architecture(rng)
    style = pick(rng, ("jax", "flax_nnx", "equinox"))
    sizes = sample_sizes(rng, arch)
    # Sharded Equinox code maps its parameters by name, which library layers ("weight") hide.
    library = style != "jax" and not (style == "equinox" and arch.sharding != "none") and rng.random() < 0.5
    einsum = not library and rng.random() < 0.4
    return ModelSpec(
        category=category,
        style=style,
        arch=arch,
        sizes=sizes,
        dtype="bfloat16" if rng.random() < 0.7 else "float32",
        library_layers=library,
        einsum=einsum,
        function_name=pick(rng, FUNCTION_NAMES[arch.task]),
        config_name=pick(rng, CONFIG_NAMES[arch.task]),
        model_name=pick(rng, MODEL_CLASSES.get(arch.task, ("DecoderLayer",))),
    )

