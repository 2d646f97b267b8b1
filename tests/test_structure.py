"""The split rule: a row's split follows from its structure key, so no structure is in two splits."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from generator.core.categories import CATEGORIES
from generator.core.models import FAMILIES, MODEL_CATEGORIES
from generator.core.plan import plan_shards
from generator.core.program import Program, Statement, Value
from generator.core.rows import ShardStats, generate_rows
from generator.core.sampler import sample_program
from generator.core.structure import HELD_OUT_SHARE, SPLITS, program_structure, split_of, structure_key
from generator.core.types import TensorType
from generator.errors import Reject

OP_TABLE = [c for c in CATEGORIES if c not in MODEL_CATEGORIES]


def _program(category: str, seed: int) -> Program:
    for attempt in range(200):
        try:
            return sample_program(random.Random(f"{seed}:{attempt}"), category)
        except Reject:
            continue
    raise AssertionError(f"no {category} program")


def _renamed_and_resized(p: Program) -> Program:
    """The same program with every value renamed and every size doubled (what a structure leaves out)."""

    def value(v):
        return Value(f"renamed_{v.name}", TensorType(tuple(2 * d for d in v.type.shape), v.type.dtype))

    def operand(o):
        return value(o) if isinstance(o, Value) else o

    statements = tuple(
        Statement(s.op, tuple(operand(o) for o in s.operands), s.params, value(s.result)) for s in p.statements
    )
    return dataclasses.replace(
        p,
        function_name="renamed",
        inputs=tuple(value(v) for v in p.inputs),
        statements=statements,
        outputs=tuple(value(v) for v in p.outputs),
    )


def test_split_of_is_a_fixed_share_of_structures():
    splits = Counter(split_of(structure_key(f"structure {i}")) for i in range(20_000))
    assert set(splits) == set(SPLITS)
    for split in ("validation", "test"):
        assert abs(splits[split] / 20_000 - HELD_OUT_SHARE) < 0.01, splits
    assert split_of("0123456789abcdef") == split_of("0123456789abcdef")


@pytest.mark.parametrize("category", ["arithmetic", "reduction", "control_flow"])
def test_op_table_structure_ignores_names_and_sizes_but_not_ops_or_flow(category):
    p = _program(category, 0)
    assert program_structure(_renamed_and_resized(p)) == program_structure(p)
    others = {program_structure(_program(category, seed)) for seed in range(1, 30)}
    assert len(others) > 20  # programs of a category differ in structure
    # another flow of the same ops is another structure
    if len(p.inputs) >= 1 and len(p.statements) >= 2:
        first = p.statements[0]
        swapped = dataclasses.replace(
            p, statements=(dataclasses.replace(first, operands=first.operands[::-1]), *p.statements[1:])
        )
        if first.operands[::-1] != first.operands:
            assert program_structure(swapped) != program_structure(p)


def _rewritten(spec, specs):
    """A composed model spec written otherwise: other sizes, style, dtype, idioms and names."""
    return dataclasses.replace(
        spec,
        sizes=next(s.sizes for s in specs if s.sizes != spec.sizes),
        style=next(s.style for s in specs if s.style != spec.style),
        dtype="float32",
        library_layers=not spec.library_layers,
        einsum=not spec.einsum,
        function_name="f",
        config_name="C",
    )


@pytest.mark.parametrize("category", MODEL_CATEGORIES)
def test_model_structure_ignores_sizes_names_and_style(category):
    family = FAMILIES[category]
    rng = random.Random(3)
    specs = [family.sample(rng) for _ in range(400)]
    keys = {family.structure_of(s) for s in specs}
    assert len(keys) >= 2
    spec = specs[0]
    if hasattr(spec, "training"):  # a train step: a composed model and how it trains
        models = [s.model for s in specs if type(s.model) is type(spec.model)]
        training = dataclasses.replace(spec.training, config_arg=not spec.training.config_arg)
        hyper = dataclasses.replace(spec.hyper, learning_rate=spec.hyper.learning_rate * 3)
        written = dataclasses.replace(
            spec, model=_rewritten(spec.model, models), training=training, hyper=hyper, function_name="f"
        )
        assert family.structure_of(written) == family.structure_of(spec)
        other = next(s for s in specs if s.training.optimizer != spec.training.optimizer)
        changed = dataclasses.replace(
            spec, training=dataclasses.replace(spec.training, optimizer=other.training.optimizer)
        )
        assert family.structure_of(changed) != family.structure_of(spec)
        other = next(s for s in models if s.arch != spec.model.arch)
        changed = dataclasses.replace(spec, model=dataclasses.replace(spec.model, arch=other.arch))
        assert family.structure_of(changed) != family.structure_of(spec)
        return
    # sizes, style, dtype, idioms and names are not structure; the architecture is
    assert family.structure_of(_rewritten(spec, specs)) == family.structure_of(spec)
    other = next(s for s in specs if s.arch != spec.arch)
    assert family.structure_of(dataclasses.replace(spec, arch=other.arch)) != family.structure_of(spec)


def test_every_category_has_structures_in_every_split():
    for category in OP_TABLE:
        found = Counter(split_of(structure_key(program_structure(_program(category, seed)))) for seed in range(120))
        assert all(found[s] for s in SPLITS), (category, found)
    for category, family in FAMILIES.items():
        rng = random.Random(0)
        found = Counter(split_of(structure_key(family.structure_of(family.sample(rng)))) for _ in range(1500))
        assert all(found[s] for s in SPLITS), (category, found)


def test_plan_has_a_test_split_with_its_own_buckets():
    plan = plan_shards(train_size=10, validation_size=4, test_size=3, seed=0, rows_per_shard=2)
    assert {s: sum(t.num_rows for t in ts) for s, ts in plan.items()} == {"train": 10, "validation": 4, "test": 3}
    for tasks in plan.values():
        assert [t.bucket for t in tasks] == list(range(len(tasks)))
        assert all(t.num_buckets == len(tasks) for t in tasks)
    with pytest.raises(ValueError, match="test_size must be a non-negative integer, got -1"):
        plan_shards(train_size=1, validation_size=1, test_size=-1, seed=0)


def test_rows_keep_to_their_split_and_no_structure_is_in_two():
    categories = ("arithmetic", "reduction", "moe", "recurrent")
    plan = plan_shards(train_size=8, validation_size=4, test_size=4, seed=5, categories=categories)
    structures: dict[str, set[str]] = {}
    for split, tasks in plan.items():
        stats = ShardStats()
        rows = [r for t in tasks for r in generate_rows(t, stats)]
        assert len(rows) == sum(t.num_rows for t in tasks)
        assert all(split_of(r["structure"]) == split for r in rows)
        structures[split] = {r["structure"] for r in rows}
        if split != "train":
            assert stats.other_split > 0  # held-out shards skip the structures of other splits
    assert not (structures["train"] & structures["validation"])
    assert not (structures["train"] & structures["test"])
    assert not (structures["validation"] & structures["test"])


def test_builder_test_split_defaults_to_validation_size(builder_module):
    cfg = builder_module.PairsConfig(name="balanced", train_size=5, validation_size=3)
    assert sum(t.num_rows for t in cfg.shard_plan()["test"]) == 3
    cfg = builder_module.PairsConfig(name="balanced", train_size=5, validation_size=3, test_size=0)
    assert cfg.shard_plan()["test"] == []
