"""The model families' diversity: distinct call sequences and structures as draws grow."""

from __future__ import annotations

import pytest

from generator.tools import cli
from generator.tools.diversity import format_diversity, model_diversity


def test_counts_grow_with_draws_and_are_reproducible():
    report = model_diversity(("vision", "train_step"), draws=1200)
    assert report == model_diversity(("vision", "train_step"), draws=1200)
    for r in report.values():
        assert list(r["call_sequences"]) == [1000, 1200]
        assert r["call_sequences"][1000] <= r["call_sequences"][1200] <= 1200
        assert 0.0 <= r["new_in_last"] <= 1.0
    # vision is composed from blocks and train steps vary their loss, optimizer and loop: most draws are new
    for r in report.values():
        assert r["call_sequences"][1200] > 800 and r["new_in_last"] > 0.5
    assert "vision" in format_diversity(report) and "at 1,200" in format_diversity(report)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown model categories \\['matrix'\\]"):
        model_diversity(("matrix",), draws=10)
    with pytest.raises(ValueError, match="draws must be a positive integer, got 0"):
        model_diversity(draws=0)
    assert cli.main(["stats", "somewhere", "--diversity"]) == 2
