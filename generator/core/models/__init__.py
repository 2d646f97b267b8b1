"""The model categories: real model code (transformers, decoding, MoE, vision, recurrent
nets, train steps) in the styles JAX users write (plain JAX over parameter pytrees, Flax NNX,
Equinox; optax for optimizers), at the sizes real models use.

Each category is one module with a ``FAMILY`` (``base.Family``): ``sample(rng) -> spec`` draws
every choice, ``render(spec) -> ModelProgram`` writes the module text. ``sample_model`` is
what ``rows`` calls; it keeps to a split's structures (``core.structure``; checked on the spec,
before rendering) and a shard's part of them by redrawing specs (a spec is cheap; lowering is
not). Every family is composed from blocks (``compose``): a spec holds nothing its program does
not use, so its hash names the shard before rendering.
"""

from __future__ import annotations

import dataclasses
import random

from ..structure import check_split, split_of, structure_key
from . import decoding, moe, recurrent, train_step, transformer, vision
from .base import MODEL_LIBRARIES, STYLES, Family, ModelProgram, imported_libraries
from .reduce import reduce_source

FAMILIES: dict[str, Family] = {
    m.FAMILY.category: m.FAMILY for m in (transformer, decoding, moe, vision, recurrent, train_step)
}
MODEL_CATEGORIES: tuple[str, ...] = tuple(FAMILIES)
# A shard gives up on finding a program of its own part of program space after this many draws.
MAX_DRAWS = 100_000


def bucket_of(spec, num_buckets: int) -> int:
    """The shard bucket (of its split's shards) that owns the program of ``spec``: a hash of the
    spec, which holds every choice and nothing its program does not use (two specs that render
    one program are equal), so the owner is known before rendering."""
    return int.from_bytes(spec.digest()[:8], "big") % num_buckets


def sample_model(
    rng: random.Random, category: str, *, split: str | None = None, bucket: int = 0, num_buckets: int = 1
) -> ModelProgram:
    """A program of ``category`` whose structure is in ``split`` (any split when ``None``), owned by
    ``bucket`` of that split's ``num_buckets`` shards; specs are redrawn until one is."""
    if category not in FAMILIES:
        raise ValueError(f"unknown model category {category!r}; valid: {', '.join(MODEL_CATEGORIES)}")
    if split is not None:
        check_split(split)
    family = FAMILIES[category]
    for _ in range(MAX_DRAWS):
        spec = family.sample(rng)
        structure = structure_key(family.structure_of(spec))
        if split is not None and split_of(structure) != split:
            continue  # another split's: redrawn before it is rendered
        if bucket_of(spec, num_buckets) == bucket:  # only the program kept is rendered
            return dataclasses.replace(family.render(spec), structure=structure)
    raise RuntimeError(
        f"no {category} program of split {split} in bucket {bucket} of {num_buckets} after {MAX_DRAWS} draws"
    )


__all__ = [
    "FAMILIES",
    "MODEL_CATEGORIES",
    "MODEL_LIBRARIES",
    "STYLES",
    "Family",
    "ModelProgram",
    "bucket_of",
    "imported_libraries",
    "reduce_source",
    "sample_model",
]
