"""jax-stablehlo-pairs generator: synthesize JAX programs and pair them with their StableHLO.

The package has three floors, imports flowing down only:

- ``core`` decides rows: op tables, sampler, renderer, lowering, the shard plan and rows;
- ``runtime`` runs processes: shards in this process or a shard server, the device server;
- ``tools`` validate, publish and drive it: validation, Hub, statistics, Ray, API, CLI.

The public names below are loaded on first use, so ``import generator`` (as the dataset
builder does in the parent process) imports neither JAX nor ``datasets``.
"""

from __future__ import annotations

import importlib

from .runtime import forksafe as _forksafe  # noqa: F401  (registers the fork hooks before any fork)
from .version import __version__

_PUBLIC = {
    "CATEGORIES": "core.categories",
    "extract_ir": "core.lowering",
    "extract_with_grad": "core.lowering",
    "lower_source": "core.lowering",
    "IRPair": "core.lowering",
    "GradPair": "core.lowering",
    "reproduce_ir": "runtime.shards",
    "parse_lowering": "core.plan",
    "Lowering": "core.plan",
    "SynthesisPipeline": "tools.api",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def code_fingerprint() -> str:
    """Hash of the code that decides rows: part of the builder's cache key (see ``core.fingerprint``)."""
    from .core import fingerprint

    return fingerprint()


__all__ = [
    "CATEGORIES",
    "GradPair",
    "IRPair",
    "Lowering",
    "SynthesisPipeline",
    "code_fingerprint",
    "extract_ir",
    "extract_with_grad",
    "lower_source",
    "parse_lowering",
    "reproduce_ir",
    "__version__",
]
