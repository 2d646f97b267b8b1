"""Helpers for the model-category tests: draw programs, lower them at real size, and run the
validator's own checks on them (reduced-size execution with XLA and IREE)."""

from __future__ import annotations

import random
import zlib

import numpy as np

from generator.core.lowering import JAX_VERSION, IRPair, load_source, lower_source, lowering_method, static_argnums
from generator.core.models import FAMILIES, ModelProgram
from generator.tools.validate.outcome import CheckOutcome


def draw_specs(category: str, n: int, seed: int = 0) -> list:
    """The specs behind ``draw(category, n, seed)`` (the same seeds)."""
    family = FAMILIES[category]
    return [family.sample(random.Random(f"{seed}:{category}:{i}")) for i in range(n)]


def draw(category: str, n: int, seed: int = 0) -> list[ModelProgram]:
    """``n`` programs of ``category`` drawn from fixed seeds (the builder's own sampler)."""
    return [FAMILIES[category].render(spec) for spec in draw_specs(category, n, seed)]


def _canonical(path) -> str:
    """A pytree path as names, the same in every style (dict keys, attributes, indices)."""
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
    return "/".join(n for n in names if n not in ("value", "raw_value"))


def filled(tree, dtype):
    """Every array leaf of ``tree`` replaced by values that depend only on its name and shape."""
    import jax

    def fill(path, leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        seed = zlib.crc32(f"{_canonical(path)}:{leaf.shape}".encode())
        values = np.random.default_rng(seed).normal(0.0, 0.2, leaf.shape)
        return jax.numpy.asarray(values, dtype)

    return jax.tree_util.tree_map_with_path(fill, tree)


def reduced_outputs(program: ModelProgram) -> np.ndarray:
    """The program's first output at reduced size, with parameters filled by name (``filled``) and
    token ids counting up: the same numbers in every style that names its parameters alike."""
    import jax

    from generator.core.models import reduce_source

    fn, args = load_source(reduce_source(program.source), program.function_name)
    concrete = []
    for arg in args:
        if isinstance(arg, jax.ShapeDtypeStruct) and arg.dtype == np.int32:
            concrete.append(jax.numpy.asarray(np.arange(np.prod(arg.shape)).reshape(arg.shape) % 97, np.int32))
        else:
            concrete.append(filled(arg, np.float32))
    out = jax.jit(fn, static_argnums=static_argnums(args))(*concrete)
    return np.asarray(out[0] if isinstance(out, tuple) else out)  # the model's output, not its losses


def lower_real(program: ModelProgram) -> IRPair:
    """The program lowered at its real size, as the builder lowers it."""
    return lower_source(program.source, program.function_name)


def validator_checks(
    program: ModelProgram, ir: str, checks=("reproduce", "execute", "iree")
) -> dict[str, CheckOutcome]:
    """The validator's checks on the row this program makes (in this process): its ``lowering``
    names the static arguments as the builder's row would."""
    from generator.tools.validate.runner import run_job

    _, args = load_source(program.source, program.function_name)

    job = {
        "category": program.category,
        "python_source": program.source,
        "function_name": program.function_name,
        "stablehlo_ir": ir,
        "jax_version": JAX_VERSION,
        "input_signature": None,
        "output_signature": None,
        "lowering": lowering_method(1, static_argnums=static_argnums(args)),
        "checks": list(checks),
    }
    return run_job(job)


def reduced_metrics(program: ModelProgram) -> dict[str, np.ndarray]:
    """A train step's metrics at reduced size: model parameters filled by name (as ``filled``; a
    Flax NNX state holds the model under index 0 and its optimizer under 1), other float leaves
    likewise, integer leaves (optimizer counters, token ids, labels) counting up mod 2, masks
    alternating, keys fixed. The loss is the same in every style that names parameters alike."""
    import jax

    from generator.core.models import reduce_source

    fn, args = load_source(reduce_source(program.source), program.function_name)

    def fill(path, leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        count = np.arange(int(np.prod(leaf.shape))).reshape(leaf.shape)
        if leaf.dtype == np.bool_:
            return jax.numpy.asarray(count % 3 != 2)
        if np.issubdtype(leaf.dtype, np.integer):
            return jax.numpy.asarray(count % 2, leaf.dtype)
        name = _canonical(path)
        if program.style == "flax_nnx" and name.startswith("0/"):
            name = name[2:]
        values = np.random.default_rng(zlib.crc32(f"{name}:{leaf.shape}".encode())).normal(0.0, 0.2, leaf.shape)
        return jax.numpy.asarray(values, leaf.dtype)

    concrete = [jax.tree_util.tree_map_with_path(fill, arg) for arg in args]
    out = jax.jit(fn, static_argnums=static_argnums(args))(*concrete)
    return {k: np.asarray(v) for k, v in out[-1].items()}
