"""jax-stablehlo-pairs generator: synthesize JAX programs and pair them with their StableHLO.

Stages, each its own module: ``ops`` (the op table), ``sampler`` (typed programs),
``render`` (Python text), ``extract`` (the only module that lowers with JAX) and
``pipeline`` (shards -> rows). ``extract_ir``, ``extract_with_grad`` and
``SynthesisPipeline`` are loaded on first use so that importing the package (as the
dataset builder does in the parent process) does not import JAX.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__version__ = "1.1.0"

from . import _forksafe  # noqa: E402,F401  (registers the fork hooks before any fork)
from .ops import CATEGORIES  # noqa: E402

_LAZY = {
    "extract_ir": "extract",
    "extract_with_grad": "extract",
    "lower_source": "extract",
    "IRPair": "extract",
    "GradPair": "extract",
    "SynthesisPipeline": "api",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def code_fingerprint() -> str:
    """Hash of the generator's source files: part of the builder's cache key."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


__all__ = [
    "CATEGORIES",
    "GradPair",
    "IRPair",
    "SynthesisPipeline",
    "code_fingerprint",
    "extract_ir",
    "extract_with_grad",
    "lower_source",
    "__version__",
]
