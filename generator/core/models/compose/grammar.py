"""Draws architectures the way published models combine blocks, then sizes and a writing
style. Every field is drawn only where the architecture uses it (``spec`` module docstring)."""

from __future__ import annotations

import dataclasses
import random

from ..base import D_MODELS, SEQ_LENS, VOCAB_SIZES, attention_heads, ffn_dim, pick, round_up
from .spec import ACTIVATIONS, Architecture, Attention, Layer, Mlp, ModelSpec, Moe, Recurrent, Sizes

# Local/global periods of published hybrids (Gemma 2 alternates; Gemma 3 has 5 local per global).
PATTERNS = (("local", "global"), ("local", "local", "global"), ("local",) * 5 + ("global",), ("global", "local"))
SCAN_LAYERS = (6, 8, 12, 16, 18, 24, 26, 28, 32, 36, 40, 42, 48)
WINDOW_SIZES = (128, 256, 512, 1024, 2048, 4096)
MESHES = {"data": ((8,),), "fsdp": ((8,),), "tensor": ((2, 4), (4, 2)), "fsdp_tensor": ((2, 4), (4, 2))}
CHECKPOINT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")

FUNCTION_NAMES = {
    "moe_layer": ("moe_layer", "sparse_moe", "apply_moe", "moe_forward"),
    "lm": ("forward", "apply_model", "compute_logits", "transformer_forward"),
    "classifier": ("classify", "forward", "predict_classes", "encoder_forward"),
    "block": ("apply_block", "decoder_layer_forward", "block_forward", "apply_layer"),
}
CONFIG_NAMES = {
    "moe_layer": ("MoEConfig", "SparseMoEConfig", "SwitchConfig"),
    "lm": ("TransformerConfig", "ModelConfig", "LMConfig", "DecoderConfig"),
    "classifier": ("EncoderConfig", "ClassifierConfig", "ModelConfig"),
    "block": ("BlockConfig", "LayerConfig", "TransformerConfig"),
}
MODEL_CLASSES = {"lm": ("Transformer", "DecoderLM", "LanguageModel"), "classifier": ("Encoder", "TextClassifier")}

# The neutral values of parts a program does not have (so equal programs have equal specs).
NO_ATTENTION = Attention(impl="", rope="none", qk_norm=False, softcap=False, qkv_bias=False, causal=False)
NO_MLP = Mlp(activation="", bias=False)

RECURRENT_CONFIG_NAMES = {
    "lstm": ("LSTMConfig", "RNNConfig"),
    "gru": ("GRUConfig", "RNNConfig"),
    "rglru": ("GriffinConfig", "RecurrentConfig"),
    "mamba": ("MambaConfig", "SSMConfig"),
    "s4d": ("S4Config", "SSMConfig"),
}


def _config_names(category: str, arch: Architecture) -> tuple[str, ...]:
    if category == "recurrent":
        return RECURRENT_CONFIG_NAMES[arch.layer.recurrent.kind]
    if category == "moe" and arch.task != "moe_layer":
        return ("MoEConfig", "MoETransformerConfig", "SparseModelConfig")
    return CONFIG_NAMES[arch.task]


def _model_names(category: str, arch: Architecture) -> tuple[str, ...]:
    if category == "recurrent":
        return {"lm": ("RecurrentLM", "LanguageModel"), "classifier": ("SequenceClassifier", "RNNClassifier")}.get(
            arch.task, ("RecurrentLayer",)
        )
    if category == "moe":
        return ("MoETransformer", "SparseLM") if arch.task == "lm" else ("MoELayer",)
    return MODEL_CLASSES.get(arch.task, ("DecoderLayer",))


# Shape budgets: nothing is allocated at lowering, but programs stay the sizes models run at.
TOKENS_CAP = {"lm": 1 << 16, "classifier": 1 << 16, "block": 1 << 17, "moe_layer": 1 << 16}
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


def sample_moe(rng: random.Random, style: str, task: str, sharded: bool) -> Moe:
    # An Equinox module runs on one sequence under jax.vmap: ragged_dot has no batching rule,
    # and a vmapped sort-and-scatter dispatch once routed reduced-size tokens differently on
    # IREE than on XLA; sharded layouts keep to the einsum dispatches GSPMD partitions well.
    dispatches = ("dense", "capacity") if style == "equinox" or sharded else ("dense", "capacity", "sorted", "ragged")
    dispatch = pick(rng, dispatches)
    router = pick(rng, ("softmax_topk", "softmax_topk", "topk_softmax"))
    shared = rng.random() < 0.35
    return Moe(
        dispatch=dispatch,
        gated=rng.random() < 0.75,
        router=router,
        norm_topk_prob=router == "softmax_topk" and rng.random() < 0.6,
        combine=pick(rng, ("segment_sum", "unsort")) if dispatch in ("sorted", "ragged") else "",
        shared_expert=shared,
        shared_gate=shared and rng.random() < 0.4,
        z_loss=rng.random() < 0.7,
        aux_output=pick(rng, ("dict", "weighted")),
    )


# Recurrent hybrids as published: Griffin/RecurrentGemma (two recurrent blocks per local
# attention layer), Jamba-like periods (several state-space layers per attention layer).
RECURRENT_PATTERNS = (
    ("recurrent", "recurrent", "local"),
    ("recurrent", "recurrent", "global"),
    ("recurrent", "local"),
    ("recurrent", "recurrent", "recurrent", "global"),
    ("recurrent",) * 7 + ("global",),
)


def sample_recurrent_architecture(rng: random.Random) -> Architecture:
    task = pick(rng, ("lm", "lm", "lm", "classifier", "classifier", "block", "block"))
    kind = pick(rng, ("lstm", "gru", "rglru", "mamba", "mamba", "s4d"))
    modern = kind in ("rglru", "mamba", "s4d")
    recurrent = Recurrent(
        kind=kind,
        scan=pick(rng, ("associative", "associative", "sequential")) if modern else "",
        conv=kind == "mamba" or (kind == "rglru" and rng.random() < 0.8) or (kind == "s4d" and rng.random() < 0.3),
        bidirectional=not modern and task == "classifier" and rng.random() < 0.5,
        low_rank_dt=kind == "mamba" and rng.random() < 0.5,
    )
    pattern: tuple[str, ...] = ("recurrent",)
    if modern and task == "lm" and rng.random() < 0.55:
        pattern = pick(rng, RECURRENT_PATTERNS)
    hybrid = len(set(pattern)) > 1
    layer = sample_layer(rng, task, hybrid)
    placement = layer.placement
    if not modern:  # a classic RNN stack, or cells inside pre-norm residual layers
        placement = "plain" if rng.random() < 0.6 else "pre"
    elif placement == "parallel":
        placement = "pre"
    mlp = layer.mlp
    if kind == "mamba" and rng.random() < 0.7:  # Mamba's layer is the mixer alone
        mlp = NO_MLP
    if placement == "plain":
        mlp = NO_MLP
    layer = Layer(
        attention=layer.attention if hybrid else NO_ATTENTION,
        mlp=mlp,
        norm=layer.norm,
        placement=placement,
        recurrent=recurrent,
    )
    sharding = _sharding(rng, 0.3)
    if task == "block":
        return Architecture(task, layer, pattern, sharding=sharding)
    layout = "scan" if rng.random() < 0.5 else "unrolled"
    remat = pick(rng, ("checkpoint", *CHECKPOINT_POLICIES)) if layout == "scan" and rng.random() < 0.4 else ""
    lm = task == "lm"
    tied = lm and rng.random() < 0.3
    return Architecture(
        task=task,
        layer=layer,
        pattern=pattern,
        layout=layout,
        remat=remat,
        learned_positions=hybrid and layer.attention.rope == "none",
        scale_embeddings=rng.random() < (0.5 if tied else 0.1),
        tied=tied,
        final_softcap=lm and hybrid and rng.random() < 0.2,
        return_hidden=lm and rng.random() < 0.1,
        sharding=sharding,
        pooling=pick(rng, ("last", "last", "mean", "max", "none")) if task == "classifier" else "",
    )


def sample_architecture(rng: random.Random, category: str = "transformer", style: str = "jax") -> Architecture:
    if category == "recurrent":
        return sample_recurrent_architecture(rng)
    if category == "moe":
        task = pick(rng, ("moe_layer", "moe_layer", "block", "block", "lm", "lm", "lm"))
    else:
        task = pick(rng, ("lm", "lm", "lm", "lm", "classifier", "block", "block"))
    pattern: tuple[str, ...] = ("global",)
    if task not in ("classifier", "moe_layer") and rng.random() < 0.35:
        hybrid_ok = task == "lm" and category != "moe"  # a layer group returns no router losses
        pattern = pick(rng, PATTERNS) if hybrid_ok and rng.random() < 0.6 else ("local",)
    hybrid = len(set(pattern)) > 1
    layer = sample_layer(rng, task, hybrid)
    sharding = _sharding(rng, 0.6 if category == "transformer" else 0.25)
    if category == "moe":
        moe = sample_moe(rng, style, task, sharding != "none")
        layer = dataclasses.replace(layer, moe=moe, mlp=layer.mlp if moe.shared_expert else NO_MLP)
        if task == "moe_layer":  # no attention, norms or residual: only the experts
            return Architecture(
                task, dataclasses.replace(layer, attention=NO_ATTENTION, norm="", placement=""), sharding=sharding
            )
    if task == "block":
        return Architecture(task, layer, pattern, sharding=sharding)
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
        sharding=sharding,
        pooling=pick(rng, ("mean", "mean", "first", "max", "none")) if task == "classifier" else "",
    )


def _sharding(rng: random.Random, share: float) -> str:
    return pick(rng, ("data", "fsdp", "tensor", "fsdp_tensor")) if rng.random() < share else "none"


def sample_sizes(rng: random.Random, arch: Architecture) -> Sizes:
    """Real sizes for ``arch``; a sharded layout gets sizes its mesh divides."""
    mesh = pick(rng, MESHES[arch.sharding]) if arch.sharding != "none" else ()
    model_axis = mesh[1] if len(mesh) == 2 else 1
    attention = arch.attends
    d_models = [d for d in D_MODELS if 512 <= d] if arch.layer.moe is not None else D_MODELS
    recurrent = arch.layer.recurrent
    if recurrent is not None:  # a scan over time steps: models of recurrent sizes
        d_models = [d for d in D_MODELS if d <= 2048]
    while True:
        d_model = pick(rng, d_models)
        num_heads, num_kv_heads, head_dim = attention_heads(rng, d_model) if attention else (0, 0, 0)
        if num_heads % model_axis == 0:
            break
    seq = pick(rng, SEQ_LENS)
    whole = arch.task in ("lm", "classifier")
    vocab = pick(rng, [v for v in VOCAB_SIZES if v % model_axis == 0]) if whole else 0
    cap = TOKENS_CAP[arch.task] if arch.layer.moe is None or arch.task != "lm" else 1 << 14
    if recurrent is not None:
        cap = min(cap, 1 << 14)
    if arch.task == "lm":
        cap = min(cap, LOGITS_CAP // vocab)
    if attention:
        cap = min(cap, SCORES_CAP // (num_heads * seq))
    batch_axis = mesh[0] if mesh else 1
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64) if b * seq <= cap and b % batch_axis == 0 and (not mesh or b >= 8)]
    if not batches:  # a sharded batch of 8 needs a shorter sequence: the longest that fits
        seq = max([s for s in SEQ_LENS if 8 * s <= cap] or [SEQ_LENS[0]])
        batches = [8]
    if arch.hybrid:
        layers = len(arch.pattern) * (rng.randint(1, 2) if arch.layout == "unrolled" else rng.randint(2, 8))
    elif not whole:
        layers = 1
    else:
        layers = pick(rng, SCAN_LAYERS) if arch.layout == "scan" else rng.randint(1, 4)
    windows = [w for w in WINDOW_SIZES if w < seq]
    moe = _moe_sizes(rng, arch, d_model)
    if not arch.layer.mlp.activation and arch.layer.moe is None:
        d_ff = 0
    elif arch.layer.moe is None:
        d_ff = ffn_dim(rng, d_model, gated=arch.layer.mlp.gated)
    else:  # the shared expert's width, a multiple of an expert's
        d_ff = moe["expert_d_ff"] * pick(rng, (1, 2, 4)) if arch.layer.moe.shared_expert else 0
    return Sizes(
        d_model=d_model,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        d_ff=d_ff,
        num_layers=layers,
        batch_size=pick(rng, batches),
        seq_len=seq,
        vocab_size=vocab,
        num_classes=pick(rng, (2, 3, 5, 10, 20, 100)) if arch.task == "classifier" else 0,
        window_size=pick(rng, windows or [seq // 2]) if arch.local else 0,
        rope_theta=pick(rng, (10_000.0, 10_000.0, 500_000.0, 1_000_000.0))
        if attention and arch.layer.attention.rope != "none"
        else 0.0,
        norm_eps=pick(rng, (1e-5, 1e-6)) if arch.task != "moe_layer" and arch.layer.norm else 0.0,
        hidden_size=(2 * d_model if recurrent.kind == "mamba" else d_model)
        if recurrent is not None and recurrent.kind in ("rglru", "mamba", "s4d")
        else 0,
        state_size=pick(rng, (16, 16, 64, 128)) if recurrent is not None and recurrent.kind in ("mamba", "s4d") else 0,
        conv_width=4 if recurrent is not None and recurrent.conv else 0,
        dt_rank=-(-d_model // 16) if recurrent is not None and recurrent.low_rank_dt else 0,
        attn_softcap=pick(rng, (30.0, 50.0)) if attention and arch.layer.attention.softcap else 0.0,
        final_softcap=pick(rng, (15.0, 30.0)) if arch.final_softcap else 0.0,
        mesh_shape=mesh,
        **moe,
    )


def _moe_sizes(rng: random.Random, arch: Architecture, d_model: int) -> dict:
    """Expert counts and widths as MoE models choose them (0 without a mixture of experts)."""
    moe = arch.layer.moe
    if moe is None:
        return {}
    # dense dispatch runs every expert on every token: real code does that with few experts
    num_experts = pick(rng, (4, 8, 8, 16) if moe.dispatch == "dense" else (8, 16, 32, 64, 128))
    if num_experts >= 32:  # DeepSeekMoE / OLMoE / Qwen-MoE: many narrow experts, more per token
        top_k = pick(rng, (2, 4, 6, 8))
        expert_d_ff = pick(
            rng, (round_up(d_model // 2, 128), round_up(d_model // 4, 128), round_up(11 * d_model // 16, 128))
        )
    else:  # Switch / GShard / Mixtral: a few full-width experts, top-1 or top-2
        top_k = pick(rng, (1, 2, 2))
        expert_d_ff = round_up(7 * d_model // 2, 256) if moe.gated else 4 * d_model
    return {
        "num_experts": num_experts,
        "experts_per_token": top_k,
        "expert_d_ff": max(128, expert_d_ff),
        "capacity_factor": pick(rng, (1.0, 1.25, 1.5, 2.0)) if moe.dispatch in ("capacity", "sorted") else 0.0,
        "aux_loss_coef": pick(rng, (0.01, 0.001, 0.02)) if moe.aux_output == "weighted" else 0.0,
        "z_loss_coef": pick(rng, (0.001, 0.0001)) if moe.aux_output == "weighted" and moe.z_loss else 0.0,
    }


def sample(rng: random.Random, category: str = "transformer") -> ModelSpec:
    style = pick(rng, ("jax", "flax_nnx", "equinox"))
    arch = sample_architecture(rng, category, style)
    sizes = sample_sizes(rng, arch)
    # Sharded Equinox code maps its parameters by name, which library layers ("weight") hide.
    library = style != "jax" and not (style == "equinox" and arch.sharding != "none") and rng.random() < 0.5
    einsum = not library and rng.random() < 0.4
    recurrent = arch.layer.recurrent
    if library and recurrent is not None and recurrent.kind in ("lstm", "gru"):  # nnx.RNN / eqx.nn.LSTMCell
        layer = dataclasses.replace(arch.layer, recurrent=dataclasses.replace(recurrent, library=True))
        arch = dataclasses.replace(arch, layer=layer)
    return ModelSpec(
        category=category,
        style=style,
        arch=arch,
        sizes=sizes,
        dtype=_dtype(rng, arch),
        library_layers=library,
        einsum=einsum,
        function_name=pick(
            rng, [n for n in FUNCTION_NAMES[arch.task] if category == "transformer" or "transformer" not in n]
        ),
        config_name=pick(rng, _config_names(category, arch)),
        model_name=pick(rng, _model_names(category, arch)),
    )


def _dtype(rng: random.Random, arch: Architecture) -> str:
    # Models with a mixture of experts compute in float32 around the MoE layer: in bfloat16,
    # compilers' last-bit differences in attention move near-tied router logits across the
    # top-k boundary, and reduced-size runs on XLA and IREE would route a token differently.
    if arch.layer.moe is not None and arch.task != "moe_layer":
        return "float32"
    return "bfloat16" if rng.random() < 0.7 else "float32"
