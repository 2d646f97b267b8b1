"""examples/sft_trl.py, as far as it runs without a model: loading a staged view, the budget, the dry run."""

import importlib.util
import sys

import pytest

pytest.importorskip("jinja2", reason="needs the hub extra: pip install -e '.[hub]'")

from generator.tools import hub

from .conftest import ROOT


@pytest.fixture(scope="module")
def sft():
    spec = importlib.util.spec_from_file_location("sft_trl", ROOT / "examples" / "sft_trl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    return hub.stage(
        tmp_path_factory.mktemp("ex") / "staged", ["composite"], train_size=8, validation_size=2, test_size=2
    )


def test_load_view_and_budget(sft, staged):
    ds = sft.load_view(str(staged.path), "composite-forward", "train")
    assert ds.num_rows == 8 and {"prompt", "completion", "prompt_tokens", "completion_tokens"} <= set(ds.column_names)
    tokens = sft.total_tokens(ds)
    budget = sorted(tokens)[4]
    kept = sft.within_budget(ds, budget)
    assert kept.num_rows == sum(n <= budget for n in tokens) < 8
    assert all(p + c <= budget for p, c in zip(kept["prompt_tokens"], kept["completion_tokens"]))
    # dropped whole, never truncated: a kept row's completion is the pair's IR
    pairs = {r["id"]: r for r in sft.load_view(str(staged.path), "composite", "train")}
    assert all(r["completion"] == pairs[r["id"]]["stablehlo_ir"] for r in kept)
    assert sft.summary(ds, budget) == {
        "rows": 8,
        "median_tokens": sorted(tokens)[3] / 2 + sorted(tokens)[4] / 2,
        "max_tokens": max(tokens),
        "over_max_length": 8 - kept.num_rows,
    }


def test_dry_run_needs_no_model_libraries(sft, staged, capsys):
    sft.main(["--dataset", str(staged.path), "--config", "composite-conversational", "--dry-run"])
    out = capsys.readouterr().out
    assert "messages: [{'role': 'user', 'content': " in out
    assert "train (Tekken tokens): {'rows': 8," in out and "validation (Tekken tokens): {'rows': 2," in out
    # the last step: the test split's answers scored (the reference baseline standing in for the model)
    assert "scoring the reference baseline's answers on composite/test (forward):" in out
    overall = next(line for line in out.splitlines() if line.startswith("overall"))
    assert overall.split()[1:] == ["2", "100.0%", "100.0%", "100.0%", "100.0%", "100.0%"]
    assert not {"torch", "trl", "transformers"} & set(sys.modules)


def test_dry_run_scores_copied_answers_as_wrong(sft, staged, capsys):
    sft.main(["--dataset", str(staged.path), "--config", "composite-cost", "--dry-run", "--dry-run-answers", "copy"])
    out = capsys.readouterr().out
    overall = next(line for line in out.splitlines() if line.startswith("overall"))
    assert overall.split()[2:] == ["0.0%"] * 5  # StableHLO text is no cost figures
    assert "wrong answers by class: unparseable 2" in out
