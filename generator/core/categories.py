"""Every category a build can draw from: the op-table categories, then the model categories.

Op-table categories (``ops.CATEGORIES``) are programs the sampler composes from op entries;
model categories (``models.MODEL_CATEGORIES``) are real model code drawn by model families.
A balanced build's round-robin follows ``CATEGORIES``' order.
"""

from __future__ import annotations

from .models import MODEL_CATEGORIES
from .ops import CATEGORIES as OP_CATEGORIES

CATEGORIES: tuple[str, ...] = OP_CATEGORIES + MODEL_CATEGORIES

# Categories whose programs may be lowered on a mesh of host devices (``host_devices > 1``): the
# multi_device op table and the model families that draw sharded layouts.
SHARDED_CATEGORIES: tuple[str, ...] = ("multi_device", "transformer", "moe", "recurrent", "train_step")


def may_need_host_devices(categories: tuple[str, ...]) -> bool:
    """Whether a build of ``categories`` may draw programs that need a mesh of host devices."""
    return any(c in SHARDED_CATEGORIES for c in categories)


__all__ = ["CATEGORIES", "MODEL_CATEGORIES", "OP_CATEGORIES", "SHARDED_CATEGORIES", "may_need_host_devices"]
