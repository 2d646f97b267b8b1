"""Typed values: the shape and dtype of every value a sampled program holds."""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOATS = ("float32", "float16", "bfloat16")
FLOAT32 = ("float32",)
INTS = ("int32",)
BITS = ("int8", "int32", "uint32")
COMPLEX64 = ("complex64",)
BOOL = ("bool",)
NUMERIC = FLOATS + INTS
ALL_DTYPES = FLOATS + BITS + COMPLEX64 + BOOL
# Typed PRNG keys (``jax.random.key``), by JAX's dtype name, with the implementation each names
# (``jax.random.key_dtype(impl)``): an array of them lowers to its key data, uint32 with a
# trailing dimension of 2 (threefry2x32) or 4 (rbg).
KEY_IMPLS = {"key<fry>": "threefry2x32", "key<rbg>": "rbg"}


def is_key_dtype(dtype: str) -> bool:
    """Whether ``dtype`` names a typed PRNG key (``key<fry>``...), which no array op takes."""
    return dtype in KEY_IMPLS


@dataclass(frozen=True)
class TensorType:
    """The static type of an array value.

    Attributes:
      shape: dimension sizes; ``()`` is a scalar.
      dtype: a NumPy/JAX dtype name such as ``"float32"``.
    """

    shape: tuple[int, ...]
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS

    @property
    def is_int(self) -> bool:
        return self.dtype in BITS

    @property
    def is_complex(self) -> bool:
        return self.dtype in COMPLEX64

    @property
    def is_key(self) -> bool:
        """A typed PRNG key or key array (``jax.random.key``: ``key<fry>``...), as ``random`` passes them."""
        return is_key_dtype(self.dtype)

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    def spec(self) -> str:
        """Short text form, e.g. ``f32[3,4]``; used in statistics and hashing."""
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of two shapes, or ``None`` when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            return None
        out.append(da if db == 1 else db)  # not max(): (0,) with () is (0,)
    return tuple(reversed(out))
