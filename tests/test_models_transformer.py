"""The transformer model family: draws cover its styles and variants, sources follow the model
source conventions, real-size programs lower to the ops their variant implies, and the
validator's own checks (reproduce; reduced-size execute with XLA; IREE) pass on them."""

from __future__ import annotations

import ast
import dataclasses
import random
import re

import pytest

from generator.core import lowering
from generator.core.models import reduce_source, transformer
from generator.core.models.reduce import REDUCTIONS, config_defaults
from generator.core.models.transformer import Spec
from tests.modelkit import draw, lower_real, validator_checks

CATEGORY = "transformer"
N_DRAWS = 40


def _specs(n: int, seed: int = 0) -> list[Spec]:
    """The specs behind ``draw(CATEGORY, n, seed)`` (the same seeds)."""
    return [transformer.sample(random.Random(f"{seed}:{CATEGORY}:{i}")) for i in range(n)]


def test_draws_cover_styles_and_variants():
    programs = draw(CATEGORY, N_DRAWS)
    specs = _specs(N_DRAWS)
    assert [transformer.render(s) for s in specs] == programs

    def seen(attr: str) -> set:
        return {getattr(s, attr) for s in specs}

    assert seen("style") == {"jax", "flax_nnx", "equinox"}
    assert {p.style for p in programs} == {"jax", "flax_nnx", "equinox"}
    assert seen("variant") == {"lm", "block"}
    assert seen("layout") == {"unrolled", "scan"}
    assert seen("remat") == {"none", "checkpoint", "policy"}
    assert seen("attention") == {"mha", "grouped", "repeat", "dpa"}
    assert seen("norm") == {"rms", "layer"}
    assert seen("mlp") == {"swiglu", "geglu", "gelu"}
    assert seen("rope") == {"half", "interleaved"}
    assert seen("dtype") == {"bfloat16", "float32"}
    lm = [s for s in specs if s.variant == "lm"]
    assert {s.tied for s in lm} == {True, False}
    assert any(s.return_hidden for s in lm)
    assert any(s.num_kv_heads == 1 for s in specs), "multi-query attention"
    assert any(1 < s.num_kv_heads < s.num_heads for s in specs), "grouped-query attention"
    assert any(s.num_kv_heads == s.num_heads for s in specs), "multi-head attention"
    assert any(s.window_size for s in specs) and any(not s.window_size for s in specs)
    assert any(s.attn_softcap for s in specs) and any(s.final_softcap for s in specs)
    assert any(s.layout == "scan" and s.num_layers >= 6 for s in specs)
    assert all(1 <= s.num_layers <= 4 for s in specs if s.layout == "unrolled")
    assert len({p.source for p in programs}) == N_DRAWS


def test_sources_follow_the_conventions():
    op_words = {"einsum", "softmax", "dot", "matmul", "tanh", "gelu", "silu", "add", "mul", "rsqrt"}
    for spec, program in zip(_specs(N_DRAWS), draw(CATEGORY, N_DRAWS)):
        tree = ast.parse(program.source)
        assert not set(program.function_name.split("_")) & op_words, program.function_name
        defaults = config_defaults(program.source)
        assert all(k in REDUCTIONS for k, v in defaults.items() if type(v) is int)
        reduce_source(program.source)
        imported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert imported - {"jax.numpy"} <= used | {"jax"}, f"unused imports in {program.function_name}"
        assert "numpy as np" not in program.source
        # the sizes come from the config: no model size appears as a literal in the code
        code = program.source.split("class " + spec.config_name, 1)[1].split("\n\n\n", 1)[1]
        literals = {int(t) for t in re.findall(r"(?<![\w.])\d+(?![\w.])", code)}
        assert literals <= {0, 1, 2, 3, 4, 6, 7}, literals
        assert program.libraries == {"jax": (), "flax_nnx": ("flax",), "equinox": ("equinox",)}[spec.style]
        assert ("scan" in program.transforms) == (spec.layout == "scan")


# Specs chosen to cover the styles and variants at real (moderate) size.
_BASE = Spec(
    style="jax",
    variant="lm",
    layout="scan",
    remat="policy",
    checkpoint_policy="dots_with_no_batch_dims_saveable",
    attention="grouped",
    norm="rms",
    mlp="swiglu",
    rope="half",
    dtype="bfloat16",
    tied=True,
    scale_embeddings=True,
    return_hidden=False,
    d_model=1024,
    num_layers=16,
    num_heads=8,
    num_kv_heads=2,
    head_dim=128,
    d_ff=2816,
    vocab_size=32_000,
    seq_len=1024,
    batch_size=4,
    window_size=0,
    attn_softcap=50.0,
    final_softcap=30.0,
    rope_theta=10_000.0,
    norm_eps=1e-6,
    function_name="forward",
    config_name="TransformerConfig",
)
CASES = {
    "jax-scan-policy-gqa-softcap-tied": (_BASE, ("stablehlo.while", "stablehlo.tanh", "stablehlo.dot_general")),
    "nnx-scan-checkpoint-repeat-window-layernorm": (
        dataclasses.replace(
            _BASE,
            style="flax_nnx",
            remat="checkpoint",
            checkpoint_policy="",
            attention="repeat",
            norm="layer",
            mlp="geglu",
            tied=False,
            scale_embeddings=False,
            window_size=256,
            attn_softcap=0.0,
            final_softcap=0.0,
            function_name="apply_model",
        ),
        ("stablehlo.while", "stablehlo.and", "stablehlo.broadcast_in_dim"),
    ),
    "equinox-unrolled-dpa-mqa-gelu-f32": (
        dataclasses.replace(
            _BASE,
            style="equinox",
            layout="unrolled",
            remat="none",
            checkpoint_policy="",
            attention="dpa",
            mlp="gelu",
            rope="interleaved",
            dtype="float32",
            tied=False,
            num_layers=2,
            num_kv_heads=1,
            d_ff=4096,
            attn_softcap=0.0,
            return_hidden=True,
        ),
        ("stablehlo.gather", "stablehlo.tanh", "stablehlo.exponential"),
    ),
    "nnx-block-mha-window": (
        dataclasses.replace(
            _BASE,
            style="flax_nnx",
            variant="block",
            layout="unrolled",
            remat="none",
            checkpoint_policy="",
            attention="mha",
            num_heads=8,
            num_kv_heads=8,
            num_layers=1,
            vocab_size=0,
            tied=False,
            scale_embeddings=False,
            final_softcap=0.0,
            window_size=512,
            function_name="apply_block",
            config_name="BlockConfig",
        ),
        ("stablehlo.and", "stablehlo.tanh", "stablehlo.rsqrt"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_size_lowering_and_validator(name):
    spec, ops = CASES[name]
    program = transformer.render(spec)
    pair = lower_real(program)
    ir = pair.stablehlo_ir
    for op in ops:
        assert op in ir, f"{name}: no {op}"
    assert ("stablehlo.while" in ir) == (spec.layout == "scan")
    assert 100 <= len(ir.splitlines()) <= 5000
    out_dtype = "float32" if spec.variant == "lm" else spec.dtype
    if spec.variant == "lm":
        want = ((spec.batch_size, spec.seq_len, spec.vocab_size), out_dtype)
    else:
        want = ((spec.batch_size, spec.seq_len, spec.d_model), out_dtype)
    assert pair.output_signature[0] == want
    if spec.return_hidden:
        assert pair.output_signature[1] == ((spec.batch_size, spec.seq_len, spec.d_model), spec.dtype)
    results = validator_checks(program, ir)
    assert results["reproduce"].status.value == "pass", results["reproduce"]
    assert results["execute"].status.value == "pass", results["execute"]
    assert results["iree"].status.value == "pass", results["iree"]


def test_reduced_source_changes_only_config_defaults():
    for spec, program in list(zip(_specs(N_DRAWS), draw(CATEGORY, N_DRAWS)))[:12]:
        reduced = reduce_source(program.source)
        changed = [(a, b) for a, b in zip(program.source.splitlines(), reduced.splitlines(), strict=True) if a != b]
        assert changed, "the real program is bigger than the reduced one"
        fields = set(config_defaults(program.source))
        for before, after in changed:
            name = before.strip().split(":", 1)[0]
            assert name in fields and after.strip().split(":", 1)[0] == name, (before, after)
        small = config_defaults(reduced)
        assert small["d_model"] <= 64 and small["seq_len"] <= 16 and small["batch_size"] <= 2
        assert small["num_heads"] % small["num_kv_heads"] == 0
        if spec.variant == "lm":
            assert small["vocab_size"] <= 512 and small["num_layers"] <= 2
        _, args = lowering.load_source(reduced, program.function_name)
        leaves = lowering.traced_leaves(args, lowering.static_argnums(args))
        assert max(int(x.size) for x in leaves) <= 512 * 64
        assert sum(int(x.size) for x in leaves) <= 200_000
