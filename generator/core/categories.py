"""Every category a build can draw from: the op-table categories, then the model categories.

Op-table categories (``ops.CATEGORIES``) are programs the sampler composes from op entries;
model categories (``models.MODEL_CATEGORIES``) are real model code drawn by model families.
A balanced build's round-robin follows ``CATEGORIES``' order.
"""

from __future__ import annotations

from .models import MODEL_CATEGORIES
from .ops import CATEGORIES as OP_CATEGORIES

CATEGORIES: tuple[str, ...] = OP_CATEGORIES + MODEL_CATEGORIES

__all__ = ["CATEGORIES", "MODEL_CATEGORIES", "OP_CATEGORIES"]
