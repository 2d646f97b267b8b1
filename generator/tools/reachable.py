"""The StableHLO/CHLO ops JAX (curated on 0.10, checked on 0.12; CPU) can emit: the yardstick for op coverage.

Curated from the lowering rules in ``jax/_src/lax`` (and ``jax/_src/cpu``, ``chlo``
decompositions JAX keeps) for ordinary jax.numpy / lax / linalg / random code, collectives
under ``shard_map`` and dynamic shapes under ``jax.export``. ``stablehlo.return`` is the
region terminator that reductions, sorts, loops and conditionals carry.
"""

from __future__ import annotations

STABLEHLO = (
    "abs add after_all all_gather all_reduce all_to_all and atan2 bitcast_convert broadcast_in_dim "
    "case cbrt ceil clamp collective_permute compare complex composite concatenate constant convert "
    "convolution cosine count_leading_zeros custom_call divide dot_general dynamic_broadcast_in_dim "
    "dynamic_iota dynamic_reduce_window dynamic_reshape dynamic_slice dynamic_update_slice exponential exponential_minus_one "
    "fft floor gather get_dimension_size imag iota is_finite log log_plus_one logistic maximum minimum "
    "multiply negate not optimization_barrier or pad partition_id popcnt power real reduce "
    "reduce_precision reduce_scatter reduce_window remainder replica_id reshape return reverse "
    "rng_bit_generator round_nearest_afz round_nearest_even rsqrt scatter select select_and_scatter "
    "shift_left shift_right_arithmetic shift_right_logical sign sine slice sort sqrt subtract tan tanh "
    "transpose triangular_solve while xor"
).split()
CHLO = (
    "acos acosh asin asinh atan atanh bessel_i1e cosh digamma erf erf_inv erfc is_inf lgamma next_after "
    "polygamma sinh square top_k zeta"
).split()

REACHABLE_OPS: frozenset[str] = frozenset([f"stablehlo.{n}" for n in STABLEHLO] + [f"chlo.{n}" for n in CHLO])


def coverage(ops_seen) -> dict:
    """How many reachable ops ``ops_seen`` covers, which are missing, and which are unexpected."""
    seen = set(ops_seen)
    return {
        "covered": len(seen & REACHABLE_OPS),
        "reachable": len(REACHABLE_OPS),
        "missing": sorted(REACHABLE_OPS - seen),
        "unlisted": sorted(seen - REACHABLE_OPS),
    }
