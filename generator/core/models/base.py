"""What a model family is, the conventions its sources follow, and the sizes real models use.

A model family turns random draws into a *spec* (a frozen dataclass of every choice: style,
variant, hyperparameters) and a spec into a ``ModelProgram`` (the module text). Sampling
and rendering are separate stages: ``render`` draws no random numbers, so a spec is the
program.

Conventions every model source follows (``tests/test_models.py`` checks them all):

- It is self-contained: imports, then exactly one module-level ``@dataclasses.dataclass(frozen=True)``
  class whose name ends in ``Config``, holding every size as an ``int`` field with a literal
  default (``reduce.REDUCTIONS`` knows each name), then the model code, the jitted function,
  and ``example_args()``.
- The model code never hard-codes a size: it reads the config. So the same source with
  smaller defaults (``reduce.reduce_source``) is the same program at a size a CPU runs.
- ``example_args()`` builds abstract arguments from ``Config()`` without allocating:
  ``jax.eval_shape`` of an init function, ``nnx.eval_shape`` then ``nnx.split``, or
  ``eqx.filter_eval_shape`` then ``eqx.partition``; data as ``jax.ShapeDtypeStruct``.
  Arguments are passed the way real code passes them: pytrees of arrays are traced, hashable
  non-array values (a Flax ``GraphDef``, an Equinox static partition, the config) are static.
- Random keys are typed (``jax.random.key``; key arguments as
  ``jax.eval_shape(jax.random.key, 0)``), so the validator makes concrete keys for them; no
  Flax ``Rngs`` live in the module state.
- Every value the function computes is used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

STYLES = ("jax", "flax_nnx", "equinox")
# Libraries a model source may import besides jax and numpy (recorded per row with their versions).
MODEL_LIBRARIES = ("flax", "optax", "equinox")
_IMPORT_RE = re.compile(r"^(?:import|from)\s+(\w+)", re.M)


def imported_libraries(source: str) -> tuple[str, ...]:
    """The ``MODEL_LIBRARIES`` a source imports, in that order."""
    imported = set(_IMPORT_RE.findall(source))
    return tuple(lib for lib in MODEL_LIBRARIES if lib in imported)


@dataclass(frozen=True)
class ModelProgram:
    """A rendered model program: everything a row needs before lowering.

    Attributes:
      category: the model category (``MODEL_CATEGORIES``).
      style: ``"jax"`` (plain functions over parameter pytrees), ``"flax_nnx"`` or ``"equinox"``.
      function_name: the jitted function in ``source``.
      source: the self-contained module text.
      transforms: JAX transforms the function applies inside ``jit``, in order of first use
        (``"value_and_grad"``, ``"scan"``, ``"checkpoint"``, ``"vmap"``...).
      structure: the ``structure`` key of its spec (``core.structure``); set by ``sample_model``.
      host_devices: the devices its mesh spans (1: not sharded); ``mesh``: that mesh's axes,
        ``"data=2,model=4"``.
    """

    category: str
    style: str
    function_name: str
    source: str
    transforms: tuple[str, ...] = ()
    structure: str = ""
    host_devices: int = 1
    mesh: str | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; valid styles: {', '.join(STYLES)}")
        if f"def {self.function_name}(" not in self.source:
            raise ValueError(f"source has no function {self.function_name!r}")

    @property
    def libraries(self) -> tuple[str, ...]:
        """The model libraries the source imports, in ``MODEL_LIBRARIES`` order."""
        return imported_libraries(self.source)

    @property
    def python_lines(self) -> int:
        """Lines of model code: the source without its imports and ``example_args()``."""
        code = self.source.split("\ndef example_args(", 1)[0]
        return sum(1 for line in code.splitlines() if line.strip() and not _IMPORT_RE.match(line))


@dataclass(frozen=True)
class Family:
    """One model category: how its specs are drawn and how a spec becomes a program.

    Attributes:
      category: the category name (a config of its own).
      sample: ``rng -> spec``; the spec (``compose``: a frozen dataclass) holds every choice and
        nothing its program does not use, and says its own ``structure()`` (what decides its
        split, ``core.structure``) and ``digest()`` (what decides its shard).
      render: ``spec -> ModelProgram``; draws no random numbers.
    """

    category: str
    sample: Callable[[random.Random], Any]
    render: Callable[[Any], ModelProgram]

    def structure_of(self, spec: Any) -> str:
        """The spec's structure, as text (``core.structure.structure_key`` hashes it)."""
        return spec.structure()


# --- sizes real models use ----------------------------------------------------------------
# (d_model 128-4096 in multiples of 128; head_dim 64/128/256; 4-32 heads; 1/2/4/8 or
# all KV heads; FFN 4*D or about 8/3*D; sequence 128-8192; batch 1-64; vocabulary 32k-262k;
# images 32-224 pixels; 64-512 channels)

D_MODELS = (128, 256, 384, 512, 640, 768, 896, 1024, 1280, 1536, 2048, 2560, 3072, 4096)
HEAD_DIMS = (64, 128, 256)
SEQ_LENS = (128, 256, 512, 1024, 2048, 4096, 8192)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
VOCAB_SIZES = (32_000, 32_768, 50_257, 65_536, 100_352, 128_256, 151_936, 256_000, 262_144)
IMAGE_SIZES = (32, 64, 96, 128, 160, 224)
CHANNELS = (64, 96, 128, 192, 256, 384, 512)


def pick(rng: random.Random, options: Sequence[Any]) -> Any:
    """One of ``options``, uniformly (a named helper, so specs read as what they draw)."""
    return options[rng.randrange(len(options))]


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def attention_heads(rng: random.Random, d_model: int) -> tuple[int, int, int]:
    """``(num_heads, num_kv_heads, head_dim)`` as real decoders choose them.

    Usually ``num_heads * head_dim == d_model``; heads 4-32; KV heads all (MHA), 1 (MQA) or a
    divisor 2/4/8 (GQA).
    """
    options = [(d_model // hd, hd) for hd in HEAD_DIMS if d_model % hd == 0 and 4 <= d_model // hd <= 32]
    if not options or rng.random() < 0.15:  # Gemma-style: head_dim independent of d_model
        hd = pick(rng, HEAD_DIMS)
        options = [(h, hd) for h in (4, 8, 16, 32)]
    num_heads, head_dim = pick(rng, options)
    kv = pick(rng, [num_heads, 1] + [k for k in (2, 4, 8) if k < num_heads and num_heads % k == 0])
    return num_heads, kv, head_dim


def ffn_dim(rng: random.Random, d_model: int, gated: bool) -> int:
    """The MLP width: 4*D for GELU MLPs, about 8/3*D (rounded up to 256) for gated ones."""
    if gated:
        return round_up(8 * d_model // 3, 256)
    return 4 * d_model


def seq_len(rng: random.Random, longest: int = 8192) -> int:
    return pick(rng, [s for s in SEQ_LENS if s <= longest])


def batch_size(rng: random.Random, tokens_cap: int = 1 << 18, seq: int = 1) -> int:
    """A batch size from ``BATCH_SIZES`` with ``batch * seq`` at most ``tokens_cap``."""
    return pick(rng, [b for b in BATCH_SIZES if b * seq <= tokens_cap] or [1])


# --- source text helpers ------------------------------------------------------------------


def config_class(name: str, fields: Sequence[tuple[str, str, Any]], doc: str | None = None) -> str:
    """A frozen config dataclass: ``fields`` are ``(name, annotation, default)``."""
    lines = ["@dataclasses.dataclass(frozen=True)", f"class {name}:"]
    if doc:
        lines.append(f'    """{doc}"""')
        lines.append("")
    for field_name, annotation, default in fields:
        text = f'"{default}"' if isinstance(default, str) and '"' not in default else repr(default)
        lines.append(f"    {field_name}: {annotation} = {text}")
    return "\n".join(lines) + "\n"


def dtype_expr(name: str) -> str:
    """``"bfloat16"`` -> ``"jnp.bfloat16"``."""
    return f"jnp.{name}"
