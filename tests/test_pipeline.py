import dataclasses
import re
import statistics
from collections import Counter

import pytest

from generator.core.categories import CATEGORIES, MODEL_CATEGORIES
from generator.core.irtext import normalize_ir
from generator.core.lowering import lower_source
from generator.core.plan import ShardTask, plan_shards
from generator.core.rows import ShardStats
from generator.core.schema import COLUMNS
from generator.runtime.shards import generate_shard, reproduce_ir


@pytest.fixture(scope="module")
def plan():
    return plan_shards(train_size=51, validation_size=17, seed=3, rows_per_shard=17)


@pytest.fixture(scope="module")
def rows(plan):
    return {split: [r for t in tasks for r in generate_shard(t)] for split, tasks in plan.items()}


def test_plan_is_independent_of_anything_but_sizes_and_seed(plan):
    # every split gets eight shards (a multiple of MIN_SHARDS_PER_SPLIT), its rows dealt out in turn
    assert [t.num_rows for t in plan["train"]] == [7, 7, 7, 6, 6, 6, 6, 6]
    assert [(t.row_offset, t.row_stride) for t in plan["train"][:2]] == [(0, 8), (1, 8)]
    assert {s: [t.bucket for t in ts] for s, ts in plan.items()} == {
        "train": list(range(8)),
        "validation": list(range(8)),
        "test": [],
    }
    assert plan == plan_shards(train_size=51, validation_size=17, seed=3, rows_per_shard=17)


def test_shard_is_a_pure_function_of_its_task(plan, rows):
    again = list(generate_shard(plan["train"][1]))
    assert again == rows["train"][7:14]
    # a shard's first rows are a shorter shard: what the benches sample JAX's floor on
    assert list(generate_shard(dataclasses.replace(plan["train"][1], num_rows=3))) == rows["train"][7:10]


def test_every_shard_draws_the_same_mix_of_categories(plan, rows):
    """Shard k holds the split's rows k, k + 8, ...: round-robin categories spread over every shard."""
    start = 0
    for task in plan["train"]:
        shard = rows["train"][start : start + task.num_rows]
        start += task.num_rows
        assert [r["category"] for r in shard] == [
            CATEGORIES[(task.row_offset + i * task.row_stride) % len(CATEGORIES)] for i in range(task.num_rows)
        ]


def test_task_survives_json(plan):
    task = plan["validation"][0]
    assert ShardTask.from_json(task.to_json()) == task


STATIC = r"static_argnums=(\d|\(\d(,\d)+\))"  # the lowering column's static arguments


def test_rows_have_every_documented_column(rows):
    for row in rows["train"]:
        assert set(row) == set(COLUMNS)
        assert row["jax_transforms"][0] == "jit"
        if row["category"] == "multi_device":
            assert row["lowering"] == "jit:host_devices=8" and row["mesh"] == "data=4,model=2"
        elif row["mesh"] is not None:  # a sharded model program: its own mesh of 8 devices
            assert row["category"] in MODEL_CATEGORIES
            assert re.fullmatch(rf"jit:({STATIC},)?host_devices=8", row["lowering"])
            sizes = [int(axis.split("=")[1]) for axis in row["mesh"].split(",")]
            assert sizes[0] * (sizes[1] if len(sizes) > 1 else 1) == 8
        elif row["category"] in MODEL_CATEGORIES:  # a GraphDef, an Equinox static part or a config may be static
            assert re.fullmatch(rf"jit(:{STATIC})?", row["lowering"])
        else:  # op-table programs take arrays only
            assert row["lowering"] == "jit"
        if row["category"] != "dynamic_shapes":  # XLA's cost analysis needs static shapes
            assert row["flops"] is not None and row["bytes_accessed"] > 0


def test_balanced_gives_equal_shares(rows):
    # round-robin over the 23 categories: 51 rows are two of each and a third of the first five
    counts = Counter(r["category"] for r in rows["train"])
    n = len(rows["train"])
    assert counts == {c: n // len(CATEGORIES) + (i < n % len(CATEGORIES)) for i, c in enumerate(CATEGORIES)}


def test_no_duplicates_and_no_ir_in_both_splits(rows):
    all_rows = rows["train"] + rows["validation"]
    assert not {r["structure"] for r in rows["train"]} & {r["structure"] for r in rows["validation"]}
    assert len({r["id"] for r in all_rows}) == len(all_rows)
    assert len({r["python_source"] for r in all_rows}) == len(all_rows)
    train_ir = {normalize_ir(r["stablehlo_ir"]) for r in rows["train"]}
    assert not train_ir & {normalize_ir(r["stablehlo_ir"]) for r in rows["validation"]}


def test_sources_reproduce_their_ir(rows):
    for row in rows["train"][::3] + rows["validation"][::3]:
        assert reproduce_ir(row) == row["stablehlo_ir"]
    for row in [r for r in rows["train"] if r["lowering"] == "jit"][:5]:
        pair = lower_source(row["python_source"], row["function_name"])
        assert [list(s) for s, _ in pair.input_signature] == [s["shape"] for s in row["input_signature"]]


def test_programs_are_multi_statement_with_several_dtypes_and_ranks(rows):
    all_rows = rows["train"] + rows["validation"]
    assert statistics.median(r["python_lines"] for r in all_rows) >= 6
    dtypes = {s["dtype"] for r in all_rows for s in r["input_signature"]}
    ranks = {len(s["shape"]) for r in all_rows for s in r["input_signature"]}
    assert {"float32", "int32"} <= dtypes and len(dtypes) >= 3
    assert {0, 1, 2, 3} <= ranks


def test_lowering_failures_are_resampled_and_counted(monkeypatch, plan):
    import generator.core.lowering as lowering

    real = lowering.lower_source
    calls = {"n": 0}

    def flaky(source, name, **kwargs):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("injected lowering failure")
        return real(source, name, **kwargs)

    monkeypatch.setattr(lowering, "lower_source", flaky)
    stats = ShardStats()
    task = plan_shards(train_size=0, validation_size=12, seed=3)["validation"][0]  # 8 shards: 2, 2, 2, 2, 1...
    out = list(generate_shard(dataclasses.replace(task, num_rows=12, row_stride=1), stats))
    assert len(out) == 12
    assert stats.lowering_failures >= 3 and "injected" in stats.failure_examples[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_size": -1}, "train_size must be a non-negative integer, got -1"),
        ({"validation_size": 2.5}, "validation_size must be a non-negative integer, got 2.5"),
        ({"seed": "7"}, "seed must be a non-negative integer, got '7'"),
        ({"categories": ("matrix", "bogus")}, "unknown categories.*bogus.*valid categories: arithmetic"),
        ({"mixture": "uniform"}, "unknown mixture 'uniform'; valid mixtures: balanced, mixed"),
    ],
)
def test_bad_plan_arguments_name_the_value(kwargs, message):
    args = {"train_size": 1, "validation_size": 1, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        plan_shards(**args)


def test_optimized_hlo_is_opt_in_and_free_of_machine_paths():
    (task,) = plan_shards(min_shards_per_split=1, train_size=3, validation_size=0, seed=0, with_optimized_hlo=True)[
        "train"
    ]
    rows = list(generate_shard(task))
    for row in rows:
        assert row["optimized_hlo"].startswith("HloModule ") and "ENTRY" in row["optimized_hlo"]
        assert "FileNames" not in row["optimized_hlo"] and "stack_frame_id" not in row["optimized_hlo"]
        assert row["compiled_flops"] is not None
    (plain,) = plan_shards(min_shards_per_split=1, train_size=3, validation_size=0, seed=0)["train"]
    assert all(r["optimized_hlo"] is None for r in generate_shard(plain))


def test_program_size_presets_order_program_lengths():
    from generator.core.policy import policy_for

    medians = {}
    for size in ("small", "medium", "large"):
        (task,) = plan_shards(
            min_shards_per_split=1, train_size=14, validation_size=0, seed=1, policy=policy_for(size)
        )["train"]
        medians[size] = statistics.median(r["python_lines"] for r in generate_shard(task))
    assert medians["small"] < medians["medium"] < medians["large"]
    with pytest.raises(ValueError, match="unknown program_size 'huge'; valid sizes: small, medium, large"):
        policy_for("huge")


def test_near_duplicates_ignore_names_and_constants_but_not_shapes():
    from generator.tools.stats import near_duplicates

    a = "module @jit_f {\n  %0 = stablehlo.add %arg0, %cst : tensor<3xf32>\n  %cst = stablehlo.constant dense<1.0> : tensor<f32>\n}"
    renamed = a.replace("@jit_f", "@jit_g").replace("%0", "%5").replace("dense<1.0>", "dense<2.5>")
    other_shape = a.replace("tensor<3xf32>", "tensor<4xf32>")
    assert near_duplicates([a, renamed, other_shape]) == {"rows": 1, "rate": 1 / 3}


def test_shard_count_is_bounded_and_narrow_categories_fill_many_shards():
    from generator.core.plan import MAX_SHARDS

    big = plan_shards(train_size=1_000_000, validation_size=10_000, seed=0)
    assert sum(len(t) for t in big.values()) <= MAX_SHARDS
    assert sum(t.num_rows for ts in big.values() for t in ts) == 1_010_000
    # 120 one-row shards: every bucket of the narrowest categories still has programs.
    plan = plan_shards(
        train_size=120,
        validation_size=0,
        seed=0,
        categories=("multi_device", "dynamic_shapes", "random"),
        rows_per_shard=1,
        min_shards_per_split=1,
    )
    for task in plan["train"][::20]:
        assert len(list(generate_shard(task))) == 1


def test_a_sample_of_every_category_runs_with_finite_outputs(rows):
    """Rows of every category compile with XLA and run on their example inputs."""
    from generator.tools.validate import validate_rows

    first = {}  # the module's rows (51 balanced train rows): the first of each category
    for row in rows["train"]:
        first.setdefault(row["category"], row)
    rows = list(first.values())
    assert {r["category"] for r in rows} == set(CATEGORIES) and len(rows) == len(CATEGORIES)
    report = validate_rows({"train": rows}, trust_code=True, sample=None)
    assert report.ok, report.format()
    assert report.checks["execute"].passed == len(rows)


def test_dynamic_rows_have_no_costs_and_build_with_optimized_hlo():
    (task,) = plan_shards(
        min_shards_per_split=1,
        train_size=2,
        validation_size=0,
        seed=2,
        categories=("dynamic_shapes",),
        with_optimized_hlo=True,
    )["train"]
    for row in generate_shard(task):
        assert -1 in row["input_signature"][0]["shape"]
        assert row["flops"] is None and row["bytes_accessed"] is None and row["optimized_hlo"] is None


def test_shard_keeps_the_collector_off_older_objects_and_restores_it():
    import gc

    from generator.runtime import shards

    (task,) = plan_shards(min_shards_per_split=1, train_size=2, validation_size=0, seed=1, categories=("arithmetic",))[
        "train"
    ]
    # CPython 3.12 starts with objects of its own frozen; only more than those is a caller's freeze
    assert gc.get_freeze_count() <= shards.FROZEN_AT_IMPORT
    rows = shards.generate_in_process(task, ShardStats())
    next(rows)
    assert gc.get_freeze_count() > shards.FROZEN_AT_IMPORT  # during the shard
    list(rows)
    assert gc.get_freeze_count() == 0  # and never after
    gc.freeze()  # a caller that froze objects itself keeps its freeze (frozen objects may still die)
    try:
        frozen = gc.get_freeze_count()
        assert len(list(shards.generate_in_process(task, ShardStats()))) == 2
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


def test_no_row_embeds_a_large_constant(monkeypatch):
    """A lowering whose IR holds a dense literal longer than the cap is resampled and counted."""
    from generator.core import rows as rows_module
    from generator.core.irtext import largest_constant

    assert largest_constant('%0 = stablehlo.constant dense<"0x' + "00" * 4096 + '"> : tensor<1024xf32>') > 8000
    assert largest_constant("%0 = stablehlo.constant dense<0.000000e+00> : tensor<f32>") < 40
    cap = 19  # "dense<1.000000e-03>": every longer literal (a negative float, a table) goes over it
    monkeypatch.setattr(rows_module, "MAX_CONSTANT_CHARS", cap)
    (task,) = plan_shards(
        min_shards_per_split=1, train_size=12, validation_size=0, seed=4, categories=("indexing", "nn")
    )["train"]
    stats = ShardStats()
    out = list(rows_module.generate_rows(task, stats))
    assert len(out) == 12 and all(largest_constant(r["stablehlo_ir"]) <= cap for r in out)
    assert stats.large_constants > 0
