"""A composed model as data: typed, frozen specs that hold every choice and nothing unused.

``Architecture`` is what a program computes (its blocks and how they connect); ``ModelSpec``
adds how it is written (style, idioms, dtype, names) and its sizes. The grammar sets a field
only where the architecture uses it (an unused field keeps its neutral value), so two specs
that render the same program are equal, and a program's shard can follow from its spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

TASKS = ("lm", "block", "classifier", "moe_layer")
ATTENTION_IMPLS = ("grouped", "repeat", "dpa")
ROPES = ("half", "interleaved", "none")
ACTIVATIONS = ("swiglu", "geglu", "gelu", "relu2")
NORMS = ("rms", "layer")
PLACEMENTS = ("pre", "post", "sandwich", "parallel")
LAYOUTS = ("unrolled", "scan")
REMATS = ("", "checkpoint", "nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")
SHARDINGS = ("none", "data", "fsdp", "tensor", "fsdp_tensor")


@dataclass(frozen=True)
class Attention:
    """Self-attention: ``impl`` is einsum over grouped KV heads, KV heads repeated, or
    ``jax.nn.dot_product_attention``; ``rope`` half-split, interleaved or none (positions
    learned at the embedding); optional per-head RMSNorm of queries and keys, logit
    soft-capping and projection biases; a causal mask, a sliding window on the layers the
    pattern calls ``local``, or none (``bidirectional``)."""

    impl: str
    rope: str
    qk_norm: bool
    softcap: bool
    qkv_bias: bool
    causal: bool


@dataclass(frozen=True)
class Mlp:
    activation: str
    bias: bool

    @property
    def gated(self) -> bool:
        return self.activation in ("swiglu", "geglu")


@dataclass(frozen=True)
class Moe:
    """A mixture-of-experts channel mixer (``compose.moe``): ``dispatch`` dense, capacity,
    sorted or ragged; ``router`` softmax then top-k, or top-k then softmax; a shared expert
    (optionally sigmoid-gated); losses as a dict or one weighted sum."""

    dispatch: str
    gated: bool
    router: str
    norm_topk_prob: bool
    combine: str  # sorted/ragged dispatch: "segment_sum" or "unsort"; "" otherwise
    shared_expert: bool
    shared_gate: bool
    z_loss: bool
    aux_output: str


@dataclass(frozen=True)
class Recurrent:
    """A recurrent token mixer (``compose.recurrent``): ``lstm``, ``gru``, ``rglru`` (Griffin),
    ``mamba`` or ``s4d``; linear recurrences by ``associative`` or ``sequential`` scan, with or without
    a short causal convolution."""

    kind: str
    scan: str = ""
    conv: bool = False
    bidirectional: bool = False  # LSTM/GRU: a second cell reads the sequence backwards
    low_rank_dt: bool = False  # Mamba: step sizes through a low-rank projection (dt_rank)
    library: bool = False  # LSTM/GRU: the library's cell (an idiom: not part of the structure)


@dataclass(frozen=True)
class Layer:
    """A residual layer: a token mixer and a channel mixer, with norms placed before the
    sublayers (``pre``), after them (``post``, OLMo 2), on both sides (``sandwich``, Gemma 2) or
    one norm feeding both in parallel (``parallel``, GPT-J and PaLM); ``plain`` stacks the token
    mixer alone (a classic RNN). ``mlp.activation`` is empty in a layer without a channel mixer
    (Mamba's)."""

    attention: Attention
    mlp: Mlp
    norm: str
    placement: str
    moe: Moe | None = None  # the channel mixer is a mixture of experts (``mlp``: its shared expert)
    recurrent: Recurrent | None = None  # the token mixer of the pattern's ``recurrent`` layers


@dataclass(frozen=True)
class Architecture:
    """A whole program's structure: the task, the layer and how layers repeat.

    ``pattern`` names each layer of a repeating period ``global`` or ``local`` (sliding-window
    attention: Gemma 2 alternates them, Gemma 3 has five local layers per global one).
    """

    task: str
    layer: Layer
    pattern: tuple[str, ...] = ("global",)
    layout: str = "unrolled"
    remat: str = ""
    learned_positions: bool = False
    scale_embeddings: bool = False
    tied: bool = False
    final_softcap: bool = False
    return_hidden: bool = False
    sharding: str = "none"
    pooling: str = ""  # a classifier's: "mean", "max", "first", "last", or "none" (a class per token)

    @property
    def local(self) -> bool:
        return "local" in self.pattern

    @property
    def attends(self) -> bool:
        return any(kind != "recurrent" for kind in self.pattern) and self.task != "moe_layer"

    @property
    def hybrid(self) -> bool:
        return len(set(self.pattern)) > 1


@dataclass(frozen=True)
class Sizes:
    """Sizes and constants (0 where the architecture has no use for one)."""

    d_model: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    d_ff: int
    num_layers: int
    batch_size: int
    seq_len: int
    vocab_size: int = 0
    num_classes: int = 0
    window_size: int = 0
    rope_theta: float = 0.0
    norm_eps: float = 1e-6
    attn_softcap: float = 0.0
    final_softcap: float = 0.0
    mesh_shape: tuple[int, ...] = ()
    hidden_size: int = 0
    state_size: int = 0
    conv_width: int = 0
    dt_rank: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    expert_d_ff: int = 0
    capacity_factor: float = 0.0
    aux_loss_coef: float = 0.0
    z_loss_coef: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """Everything one program is: its architecture, sizes and how it is written."""

    category: str
    style: str
    arch: Architecture
    sizes: Sizes
    dtype: str
    library_layers: bool
    einsum: bool
    function_name: str
    config_name: str
    model_name: str

    def structure(self) -> str:
        """What the program computes, without sizes, names, dtype, style or idioms."""
        arch = self.arch
        if arch.layer.recurrent is not None and arch.layer.recurrent.library:
            recurrent = dataclasses.replace(arch.layer.recurrent, library=False)
            arch = dataclasses.replace(arch, layer=dataclasses.replace(arch.layer, recurrent=recurrent))
        return f"{self.category}\n{arch!r}"

    def digest(self) -> bytes:
        """A hash of every choice: a program's shard follows from it."""
        return hashlib.sha256(repr(self).encode()).digest()
