"""Task views and token counts: the rows TRL's SFTTrainer takes, their token counts and budgets."""

import re

import datasets
import pytest

from generator.core import rows as rows_module
from generator.core import views
from generator.core.categories import CATEGORIES
from generator.core.plan import plan_shards
from generator.core.rows import ShardStats
from generator.core.tokens import count_tokens
from generator.errors import BudgetTooSmall
from generator.runtime.shards import generate_in_process

from .conftest import SCRIPT

SEED = 5


def build(categories=CATEGORIES, n=None, seed=SEED, **kwargs):
    n = n or len(categories)
    plan = plan_shards(train_size=n, validation_size=0, seed=seed, categories=categories, rows_per_shard=n, **kwargs)
    stats = ShardStats()
    return [r for task in plan["train"] for r in generate_in_process(task, stats)], stats


@pytest.fixture(scope="module")
def rows():
    """One row of every category (model categories included), lowered here."""
    return build()[0]


@pytest.fixture(scope="module")
def optimized_rows():
    return build(("arithmetic", "matrix", "reduction"), n=6, with_optimized_hlo=True)[0]


def test_rows_count_tokens_of_their_texts(rows, optimized_rows):
    for r in rows + optimized_rows:
        assert r["python_tokens"] == count_tokens(r["python_source"]) > 0
        assert r["stablehlo_tokens"] == count_tokens(r["stablehlo_ir"]) > r["stablehlo_lines"]
        expected = None if r["optimized_hlo"] is None else count_tokens(r["optimized_hlo"])
        assert r["optimized_hlo_tokens"] == expected
    assert all(r["optimized_hlo_tokens"] > 0 for r in optimized_rows)
    assert count_tokens("") == 0 and count_tokens("module") == 1


def test_counts_use_tekkens_own_encoding(rows):
    """The encoding counts are made with is the one ``Tekkenizer.from_file`` builds: the same
    merge ranks, pattern and (no) special tokens, so the same counts on every text."""
    from importlib import resources

    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    from generator.core import tokens

    path = resources.files("mistral_common") / "data" / tokens.TOKENIZER_FILE
    with resources.as_file(path) as file:
        tekken = Tekkenizer.from_file(file)._model
    ours = tokens._encoding()
    assert ours._mergeable_ranks == tekken._mergeable_ranks and len(ours._mergeable_ranks) > 100_000
    assert (ours._pat_str, ours._special_tokens, ours.name) == (tekken._pat_str, tekken._special_tokens, tekken.name)
    for text in [r[column] for r in rows for column in ("python_source", "stablehlo_ir")] + ["<s>[INST] ü 🙂\t\n"]:
        assert ours.encode_ordinary(text) == tekken.encode_ordinary(text)


@pytest.mark.parametrize("name", list(views.VIEWS))
def test_every_template_counts_prompt_tokens_exactly(rows, optimized_rows, name):
    """A prompt's tokens are its instruction's plus its text's (what lets a build check budgets cheaply)."""
    view = views.VIEWS[name]
    for r in rows + optimized_rows:
        for index in range(len(view.templates)):
            head = views.instruction(view, index, r)
            text = r[view.source]
            assert count_tokens(head + text) == count_tokens(head) + r[views.TOKEN_COLUMNS[view.source]], (
                name,
                index,
                r["category"],
            )


def test_forward_and_reverse_rows(rows):
    for r in rows:
        fwd = views.view_row(r, "forward", SEED)
        assert fwd["completion"] == r["stablehlo_ir"]  # exact, never truncated
        assert fwd["prompt"].endswith("\n\n" + r["python_source"])
        assert f"`{r['function_name']}`" in fwd["prompt"] or "Translate" in fwd["prompt"]
        assert (fwd["id"], fwd["category"]) == (r["id"], r["category"])
        assert fwd["prompt_tokens"] == count_tokens(fwd["prompt"])
        assert fwd["completion_tokens"] == r["stablehlo_tokens"]
        rev = views.view_row(r, "reverse", SEED)
        assert rev["completion"] == r["python_source"] and rev["prompt"].endswith("\n\n" + r["stablehlo_ir"])
        assert rev["prompt_tokens"] == count_tokens(rev["prompt"])
        assert set(fwd) == set(views.PROMPT_COMPLETION_FEATURES)


def test_conversational_rows_are_messages(rows):
    for r in rows:
        conv = views.view_row(r, "conversational", SEED)
        assert set(conv) == set(views.MESSAGES_FEATURES)
        user, assistant = conv["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"] == r["stablehlo_ir"] and user["content"].endswith(r["python_source"])
        assert conv["prompt_tokens"] == count_tokens(user["content"])


def test_multi_device_prompts_say_how_many_devices(rows):
    (r,) = [r for r in rows if r["category"] == "multi_device"]
    n = r["lowering"].split("=")[1]
    assert f"with {n} host CPU devices" in views.instruction(views.VIEWS["forward"], 0, r)
    (single,) = [r for r in rows if r["category"] == "arithmetic"]
    assert "devices" not in views.instruction(views.VIEWS["forward"], 0, single)


def test_cost_view_states_the_rows_cost_figures(rows):
    with_cost = [r for r in rows if r["flops"] is not None]
    assert with_cost
    for r in with_cost:
        completion = views.view_row(r, "cost", SEED)["completion"]
        figures = dict(re.findall(r"^([a-z ]+): (\S+)$", completion, re.M))
        assert set(figures) == {"flops", "transcendentals", "bytes accessed"}
        assert float(figures["flops"]) == r["flops"] and float(figures["bytes accessed"]) == r["bytes_accessed"]
    symbolic = [r for r in rows if r["flops"] is None]  # dynamic_shapes: symbolic shapes have no cost figures
    assert symbolic and all(views.view_row(r, "cost", SEED) is None for r in symbolic)
    assert views.cost_text({"flops": 2.5, "transcendentals": 0.0, "bytes_accessed": 8.0}) == (
        "flops: 2.5\ntranscendentals: 0\nbytes accessed: 8"
    )


def test_optimize_view_needs_optimized_hlo(rows, optimized_rows):
    assert all(views.view_row(r, "optimize", SEED) is None for r in rows)
    for r in optimized_rows:
        opt = views.view_row(r, "optimize", SEED)
        assert opt["completion"] == r["optimized_hlo"] and opt["completion"].startswith("HloModule")
        assert opt["completion_tokens"] == r["optimized_hlo_tokens"]


def test_templates_are_drawn_from_seed_and_id(rows):
    picks = {views.template_index(SEED, "forward", r["id"]) for r in rows}
    assert len(picks) > 1  # 23 rows do not all draw the same of three templates
    for r in rows:
        assert views.view_row(r, "forward", SEED) == views.view_row(dict(r), "forward", SEED)
    ids = [f"{i:016x}" for i in range(200)]
    assert [views.template_index(1, "reverse", i) for i in ids] != [views.template_index(2, "reverse", i) for i in ids]


def test_unknown_view_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown view 'fwd'; valid views: pairs, forward, conversational"):
        views.check_view("fwd")


def test_a_budget_keeps_every_view_row_within_it():
    """max_tokens resamples (never truncates) until every view row of a pair fits."""
    cats = ("arithmetic", "indexing", "control_flow")
    free, _ = build(cats, n=9, seed=2)
    longest = sorted(max(views.view_tokens(r, 2).values()) for r in free)
    budget = longest[len(longest) // 2]  # about half of the free build's rows would not fit
    kept, stats = build(cats, n=9, seed=2, max_tokens=budget)
    assert len(kept) == 9 and stats.over_budget > 0
    for r in kept:
        assert all(n <= budget for n in views.view_tokens(r, 2).values())
        assert r["python_tokens"] + r["stablehlo_tokens"] <= budget
    # The rows that fitted anyway are kept as they were: a budget only resamples.
    assert {r["id"] for r in free if max(views.view_tokens(r, 2).values()) <= budget} <= {r["id"] for r in kept}


def test_a_budget_too_small_for_a_category_says_so(monkeypatch):
    assert rows_module.MAX_OVER_BUDGET_PER_ROW == 200
    monkeypatch.setattr(rows_module, "MAX_OVER_BUDGET_PER_ROW", 20)  # the same stop, sooner
    with pytest.raises(
        BudgetTooSmall, match=r"max_tokens=50 is too small for 'arithmetic': 20 programs.*raise max_tokens"
    ):
        build(("arithmetic",), n=1, max_tokens=50)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "16k"])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="max_tokens must be a positive integer or None"):
        plan_shards(train_size=1, validation_size=0, seed=0, max_tokens=bad)


def test_builder_gives_a_view(cache_dir):
    kw = {"train_size": 6, "validation_size": 2, "trust_remote_code": True, "cache_dir": cache_dir}
    pairs = datasets.load_dataset(SCRIPT, "arithmetic", **kw)
    fwd = datasets.load_dataset(SCRIPT, "arithmetic", view="forward", **kw)
    conv = datasets.load_dataset(SCRIPT, "arithmetic", view="conversational", **kw)
    assert fwd.num_rows == pairs.num_rows == {"train": 6, "validation": 2, "test": 2}
    assert fwd["train"].column_names == list(views.PROMPT_COMPLETION_FEATURES)
    assert conv["train"].features == views.MESSAGES_FEATURES
    for pair, row in zip(pairs["train"], fwd["train"]):
        assert row == views.view_row(pair, "forward", 0)  # the config's seed
    with pytest.raises(ValueError, match="view 'optimize' needs with_optimized_hlo=True"):
        datasets.load_dataset(SCRIPT, "arithmetic", view="optimize", **kw)


def test_budgeted_builder_rows_fit(cache_dir):
    kw = {"train_size": 6, "validation_size": 0, "trust_remote_code": True, "cache_dir": cache_dir}
    ds = datasets.load_dataset(SCRIPT, "arithmetic", view="reverse", max_tokens=2000, **kw)["train"]
    assert ds.num_rows == 6
    assert all(p + c <= 2000 for p, c in zip(ds["prompt_tokens"], ds["completion_tokens"]))
