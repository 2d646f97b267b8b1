"""What decides rows: types, op tables, programs, sampling, rendering, lowering, the shard plan.

Imports flow one way: ``types`` <- ``ops`` <- ``program``; ``policy``; then ``sampler``,
``render`` and ``plan`` on those; ``irtext`` <- ``lowering``; and ``rows`` on all of them.
Only ``lowering`` (and ``rows``, through it) imports JAX. Nothing here imports ``runtime`` or
``tools``.

``fingerprint`` hashes this folder, with the version and error types it imports, and the
versions of the libraries rows depend on (``ROW_LIBRARIES``): it keys the builder's cache, so
an edit here or an upgrade rebuilds, and an edit elsewhere (CLI, validation, Hub) does not.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path

# Distributions whose version changes the rows (recorded in every row and in the card; the
# tokenizer's package, whose version the token counts depend on, in the card).
ROW_LIBRARIES: tuple[str, ...] = ("jax", "jaxlib", "flax", "optax", "equinox", "mistral-common")

_HERE = Path(__file__).resolve().parent
# Files outside core/ that core imports: they are part of what decides rows.
_ALSO_HASHED = (_HERE.parent / "version.py", _HERE.parent / "errors.py")


def fingerprint() -> str:
    """Hash of what decides rows: ``core/**.py``, ``version.py``, ``errors.py`` and ``ROW_LIBRARIES``' versions."""
    h = hashlib.sha256()
    for name in ROW_LIBRARIES:
        h.update(f"{name}=={version(name)}\0".encode())
    files = sorted(_HERE.rglob("*.py")) + list(_ALSO_HASHED)
    for path in files:
        h.update(path.relative_to(_HERE.parent).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
