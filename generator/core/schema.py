"""The row schema: column names, their ``datasets`` features and their meaning.

Names are decided once and kept stable across versions; README.md and the dataset card
document the same list (``COLUMNS``).
"""

from __future__ import annotations

import datasets

DESCRIPTION = (
    "Synthesized JAX programs and real model code (transformers, decoding, MoE, vision, recurrent "
    "nets, train steps in plain JAX, Flax NNX, Equinox and optax) paired with the StableHLO text "
    "that jax.jit lowers them to. Every python_source is self-contained and reproduces its "
    "stablehlo_ir exactly with jax.jit(fn, static_argnums=<as its lowering column says>)"
    ".lower(*example_args()).as_text() under the recorded library versions (multi_device rows in "
    "a process with 8 host CPU devices, also as their lowering column says)."
)
HOMEPAGE = "https://huggingface.co/datasets/jax-stablehlo-pairs/jax-stablehlo-pairs"
LICENSE = "apache-2.0"
CITATION = """@misc{jax_stablehlo_pairs,
  title  = {jax-stablehlo-pairs: Python-to-StableHLO pairs synthesized from JAX programs},
  author = {jax-stablehlo-pairs contributors},
  year   = {2026},
  note   = {Hugging Face dataset}
}"""

_SIGNATURE = [{"shape": [datasets.Value("int32")], "dtype": datasets.Value("string")}]

# name -> (feature, meaning)
COLUMNS: dict[str, tuple[object, str]] = {
    "id": (datasets.Value("string"), "stable id: first 16 hex digits of sha256(python_source)"),
    "category": (datasets.Value("string"), "program category (arithmetic, conditional, ..., transformer, train_step)"),
    "structure": (
        datasets.Value("string"),
        "what the program computes without sizes, names, constants and style (16 hex digits of a hash); "
        "it decides the row's split, so no structure is in two splits",
    ),
    "function_name": (datasets.Value("string"), "name of the function in python_source"),
    "python_source": (
        datasets.Value("string"),
        "self-contained module: imports, the function (model categories: config, model code, jitted function), example_args()",
    ),
    "stablehlo_ir": (
        datasets.Value("string"),
        "jax.jit(fn, static_argnums=<the lowering column's>).lower(*example_args()).as_text()",
    ),
    "input_signature": (
        _SIGNATURE,
        "shape and dtype of each traced array (pytree arguments' leaves, in order); -1 marks a symbolic dimension; "
        "a typed PRNG key has JAX's dtype name, key<fry> (jax.random.key_dtype('threefry2x32')) or key<rbg> ('rbg'), "
        "and the IR's main takes its key data (uint32, trailing dimension 2 or 4)",
    ),
    "output_signature": (_SIGNATURE, "shape and dtype of each output"),
    "flops": (datasets.Value("float64"), "XLA cost analysis of the lowered module: flops"),
    "transcendentals": (datasets.Value("float64"), "XLA cost analysis: transcendental ops"),
    "bytes_accessed": (datasets.Value("float64"), "XLA cost analysis: bytes accessed"),
    "stablehlo_ops": ([datasets.Value("string")], "sorted distinct stablehlo.*/chlo.* op names in the IR"),
    "num_stablehlo_ops": (datasets.Value("int32"), "number of stablehlo.*/chlo.* op occurrences"),
    "python_lines": (
        datasets.Value("int32"),
        "lines of the function definition (def to return); model categories: non-blank lines of model code "
        "(config, modules, functions; no imports, no example_args)",
    ),
    "stablehlo_lines": (datasets.Value("int32"), "lines of stablehlo_ir"),
    "python_tokens": (datasets.Value("int32"), "tokens of python_source (Tekken, the tokenizer the card names)"),
    "stablehlo_tokens": (datasets.Value("int32"), "tokens of stablehlo_ir (Tekken)"),
    "optimized_hlo_tokens": (datasets.Value("int32"), "tokens of optimized_hlo (Tekken; null without it)"),
    "jax_transforms": (
        [datasets.Value("string")],
        "jit, then the transforms the function applies inside it, in order of first use",
    ),
    "lowering": (
        datasets.Value("string"),
        "how to reproduce stablehlo_ir: 'jit' (jax.jit(fn).lower(*example_args())), or 'jit:' and, in this order and "
        "separated by commas, whichever apply: 'platform=P' (lowered for platform P, cuda, rocm or tpu, with "
        "jax.jit(fn).trace(*args).lower(lowering_platforms=(P,))), 'static_argnums=I' or 'static_argnums=(I,J)' "
        "(the example_args() jax.jit takes as static: jax.jit(fn, static_argnums=I)) and 'host_devices=N' (run with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N); e.g. 'jit:static_argnums=2', "
        "'jit:platform=tpu,static_argnums=(0,2),host_devices=8'",
    ),
    "mesh": (datasets.Value("string"), "device mesh of multi_device rows, e.g. 'data=4,model=2'; null otherwise"),
    "optimized_hlo": (
        datasets.Value("string"),
        "XLA-optimized HLO after compilation (configs with with_optimized_hlo=True; else null)",
    ),
    "compiled_flops": (
        datasets.Value("float64"),
        "cost analysis of the compiled executable: flops (with_optimized_hlo only)",
    ),
    "compiled_bytes_accessed": (
        datasets.Value("float64"),
        "cost analysis of the compiled executable: bytes accessed (with_optimized_hlo only)",
    ),
    "style": (
        datasets.Value("string"),
        "how the code is written: 'jax' (functions over arrays or parameter pytrees), 'flax_nnx' or 'equinox'",
    ),
    "generator_version": (datasets.Value("string"), "version of the generator package"),
    "jax_version": (datasets.Value("string"), "jax version that lowered the program"),
    "jaxlib_version": (datasets.Value("string"), "jaxlib version that lowered the program"),
    "flax_version": (datasets.Value("string"), "flax version, if python_source imports flax; else null"),
    "optax_version": (datasets.Value("string"), "optax version, if python_source imports optax; else null"),
    "equinox_version": (datasets.Value("string"), "equinox version, if python_source imports equinox; else null"),
}

FEATURES = datasets.Features({name: feature for name, (feature, _) in COLUMNS.items()})
