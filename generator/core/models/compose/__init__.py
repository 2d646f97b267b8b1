"""Model programs composed from blocks: typed specs (``spec``) drawn by a grammar
(``grammar``), written by one emitter (``emit``) from a block library (``blocks``) into one
self-contained module per program (``render``)."""

from . import grammar, render
from .spec import ModelSpec

__all__ = ["ModelSpec", "grammar", "render"]
