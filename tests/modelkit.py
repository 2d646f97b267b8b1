"""Helpers for the model-category tests: draw programs, lower them at real size, and run the
validator's own checks on them (reduced-size execution with XLA and IREE)."""

from __future__ import annotations

import random

from generator.core.lowering import JAX_VERSION, IRPair, load_source, lower_source, lowering_method, static_argnums
from generator.core.models import FAMILIES, ModelProgram
from generator.tools.validate.outcome import CheckOutcome


def draw(category: str, n: int, seed: int = 0) -> list[ModelProgram]:
    """``n`` programs of ``category`` drawn from fixed seeds (the builder's own sampler)."""
    family = FAMILIES[category]
    return [family.render(family.sample(random.Random(f"{seed}:{category}:{i}"))) for i in range(n)]


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
