"""What every model category must be: drawn from its family, written by the conventions
(one config dataclass, no hard-coded sizes, abstract example_args), reducible to a CPU size,
and a part of the builder's configs. Per-category tests (lowering, validator checks) are in
``test_models_<category>.py``."""

from __future__ import annotations

import ast
import dataclasses
import random
import subprocess
import sys
from collections import Counter

import pytest

from generator.core.categories import CATEGORIES, MODEL_CATEGORIES, OP_CATEGORIES
from generator.core.models import FAMILIES, STYLES, bucket_of, reduce_source, sample_model
from generator.core.models.reduce import REDUCTIONS, config_defaults, reduced_config
from generator.core.naming import name_ops
from generator.core.structure import split_of, structure_key
from generator.tools.realism import liveness
from tests.modelkit import draw

N = 30


@pytest.fixture(scope="module")
def drawn():
    return {c: draw(c, N) for c in MODEL_CATEGORIES}


def test_categories_are_the_op_tables_then_the_models():
    assert CATEGORIES == OP_CATEGORIES + MODEL_CATEGORIES
    assert set(MODEL_CATEGORIES) == {"transformer", "decoding", "moe", "vision", "recurrent", "train_step"}


def test_builder_has_a_models_config_and_one_per_model_category(builder_module):
    configs = {c.name: c for c in builder_module.JaxStablehloPairs.BUILDER_CONFIGS}
    assert configs["models"].categories == MODEL_CATEGORIES
    assert configs["balanced"].categories == CATEGORIES
    for category in MODEL_CATEGORIES:
        assert configs[category].categories == (category,)


@pytest.mark.parametrize("category", MODEL_CATEGORIES)
def test_sources_follow_the_conventions(drawn, category):
    programs = drawn[category]
    assert len({p.source for p in programs}) == N, "the family repeats programs"
    for p in programs:
        tree = ast.parse(p.source)
        configs = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")]
        assert len(configs) == 1
        decorators = [ast.unparse(d) for d in configs[0].decorator_list]
        assert "dataclasses.dataclass(frozen=True)" in decorators
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {p.function_name, "example_args"} <= functions
        # no module-level arrays: tables are built inside functions
        for node in tree.body:
            if isinstance(node, ast.Assign):
                assert "np." not in ast.unparse(node.value) and "jnp." not in ast.unparse(node.value), ast.unparse(node)
        # the function name says what the function is for, not which ops it calls (an idiom
        # such as train_step may share its name with one op entry, never a chain of them)
        assert len(name_ops(p.function_name) or ()) <= 1, p.function_name


@pytest.mark.parametrize("category", MODEL_CATEGORIES)
def test_every_computed_value_is_used(drawn, category):
    dead = []
    for p in drawn[category]:
        for node in ast.walk(ast.parse(p.source)):
            if isinstance(node, ast.FunctionDef) and node.name != "__init__":
                dead += [
                    f"{p.function_name}/{node.name}: {ast.unparse(s)[:80]}" for s, live in liveness(node) if not live
                ]
    assert not dead, dead[:5]


@pytest.mark.parametrize("category", MODEL_CATEGORIES)
def test_reduced_source_changes_only_config_defaults(drawn, category):
    for p in drawn[category]:
        reduced = reduce_source(p.source)
        real_lines, small_lines = p.source.splitlines(), reduced.splitlines()
        assert len(real_lines) == len(small_lines)
        changed = [(a, b) for a, b in zip(real_lines, small_lines) if a != b]
        fields = config_defaults(p.source)
        for a, b in changed:
            name = a.strip().split(":", 1)[0]
            assert name in fields and name in REDUCTIONS, a
            assert a.split("=", 1)[0] == b.split("=", 1)[0]
        small = config_defaults(reduced)
        assert all(small[k] <= v for k, v in fields.items() if type(v) is int)
        assert reduced_config(small) == small  # reducing twice changes nothing


def test_styles_span_plain_jax_flax_nnx_and_equinox(drawn):
    per_category = {c: Counter(p.style for p in ps) for c, ps in drawn.items()}
    assert set().union(*per_category.values()) == set(STYLES)
    assert all(len(styles) >= 2 for styles in per_category.values()), per_category
    libraries = Counter(lib for ps in drawn.values() for p in ps for lib in p.libraries)
    assert set(libraries) == {"flax", "optax", "equinox"}
    assert all("optax" in p.libraries for p in drawn["train_step"])


def test_sample_model_refuses_unknown_categories_and_splits():
    with pytest.raises(ValueError, match="unknown model category 'cnn'.*transformer"):
        sample_model(random.Random(0), "cnn")
    with pytest.raises(ValueError, match="unknown split 'dev'.*train, validation, test"):
        sample_model(random.Random(0), "decoding", split="dev")


@pytest.mark.parametrize("category", MODEL_CATEGORIES)
def test_a_spec_names_its_shard_without_rendering(category, monkeypatch):
    family = FAMILIES[category]
    rendered = []
    counting = dataclasses.replace(family, render=lambda spec: rendered.append(spec) or family.render(spec))
    monkeypatch.setitem(FAMILIES, category, counting)
    split = ("train", "validation", "test")[MODEL_CATEGORIES.index(category) % 3]
    program = sample_model(random.Random(3), category, split=split, bucket=5, num_buckets=16)
    assert len(rendered) == 1, "only the program kept is rendered"
    assert split_of(program.structure) == split and program.structure == structure_key(rendered[0].structure())
    assert bucket_of(rendered[0], 16) == 5 and int.from_bytes(rendered[0].digest()[:8], "big") % 16 == 5
    assert sample_model(random.Random(3), category, split=split, bucket=5, num_buckets=16) == program  # deterministic


def test_reduce_source_refuses_sizes_it_does_not_know():
    source = "import dataclasses\n\n@dataclasses.dataclass(frozen=True)\nclass Config:\n    width: int = 4096\n"
    with pytest.raises(ValueError, match="width"):
        reduce_source(source)
    with pytest.raises(ValueError, match="exactly one"):
        reduce_source("x = 1\n")


def test_reduction_keeps_attention_head_groups():
    assert reduced_config({"num_heads": 32, "num_kv_heads": 32})["num_kv_heads"] == 4
    assert reduced_config({"num_heads": 32, "num_kv_heads": 8})["num_kv_heads"] == 2
    assert reduced_config({"num_heads": 16, "num_kv_heads": 1})["num_kv_heads"] == 1
    source = (
        "import dataclasses\n\n@dataclasses.dataclass(frozen=True)\nclass ModelConfig:\n"
        "    d_model: int = 2048  # hidden size\n    rope_theta: float = 500000.0\n    num_layers: int = 1\n"
    )
    assert reduce_source(source) == source.replace("2048", "64")


def test_model_families_import_no_jax():
    code = "import sys, generator.core.models, generator.core.categories; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
