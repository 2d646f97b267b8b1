"""Baseline predictions for each task, to put a model's scores in context.

- ``reference``: the reference answer itself (every layer 1.0: checks the scorer);
- ``copy``: the prompt's text as the answer (forward: the Python source; reverse, cost,
  optimize: the StableHLO);
- ``nearest``: the answer of the train row whose prompt text is most alike (TF-IDF over word
  unigrams and bigrams, cosine), a retrieval baseline that memorization alone would reach.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...core.views import cost_text
from .data import load_split
from .irtools import reference_cost
from .scoring import REFERENCE_COLUMN, check_task

BASELINES = ("reference", "nearest", "copy")
# What the model sees (its prompt text) per task.
PROMPT_COLUMN = {
    "forward": "python_source",
    "reverse": "stablehlo_ir",
    "cost": "stablehlo_ir",
    "optimize": "stablehlo_ir",
}
# Texts are compared by their first characters: model IR runs to 150,000 characters, and its
# head (the signature and first layers) already tells programs apart.
SIMILARITY_CHARS = 20_000
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


def answer_of(task: str, row: Mapping[str, Any]) -> str | None:
    """A row's reference answer for ``task`` (``None`` if it has none)."""
    if task == "cost":
        return cost_text(row) if reference_cost(row) is not None else None
    return row.get(REFERENCE_COLUMN[task]) or None


def _features(texts: Sequence[str], vocabulary: dict[str, int], grow: bool):
    """Sparse term counts of word unigrams and bigrams (new terms added to ``vocabulary`` if ``grow``)."""
    import numpy as np
    import scipy.sparse as sp

    indptr, indices = [0], []
    for text in texts:
        words = _WORD.findall(text[:SIMILARITY_CHARS])
        for term in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
            j = vocabulary.get(term)
            if j is None and grow:
                j = vocabulary[term] = len(vocabulary)
            if j is not None:
                indices.append(j)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    m = sp.csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(texts), len(vocabulary))
    )
    m.sum_duplicates()
    return m


def nearest_neighbours(queries: Sequence[str], corpus: Sequence[str], chunk: int = 256) -> list[int]:
    """For each query, the index of the most similar corpus text (TF-IDF cosine; ties: the first)."""
    import numpy as np
    import scipy.sparse as sp

    vocabulary: dict[str, int] = {}
    c = _features(corpus, vocabulary, grow=True)
    q = _features(queries, vocabulary, grow=False)
    df = np.bincount(c.indices, minlength=c.shape[1])
    idf = (np.log((1 + c.shape[0]) / (1 + df)) + 1).astype(np.float32)

    def weigh(m):
        m = m.tocsr(copy=True)
        m.data = (1 + np.log(m.data)) * idf[m.indices]  # sublinear tf: a long text's repeats count less
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sp.diags(1 / np.maximum(norms, 1e-12)) @ m

    c, q = weigh(c), weigh(q)
    out: list[int] = []
    ct = c.T.tocsc()
    for i in range(0, q.shape[0], chunk):
        sims = (q[i : i + chunk] @ ct).toarray()
        out.extend(int(j) for j in sims.argmax(axis=1))
    return out


def baseline_predictions(
    baseline: str,
    task: str,
    staged: str | os.PathLike,
    config: str,
    split: str = "test",
    *,
    train_split: str = "train",
) -> list[dict[str, str]]:
    """One prediction per row of ``split`` (that has the task's reference) from a baseline.

    Args:
      baseline: ``reference``, ``nearest`` or ``copy``.
      task: ``forward``, ``reverse``, ``cost`` or ``optimize``.
      staged, config, split: the rows to answer (as ``evaluate`` reads them).
      train_split: where ``nearest`` looks for neighbours.

    Raises:
      ValueError: an unknown baseline, task, config or split (naming the valid ones).
    """
    check_task(task)
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; valid baselines: {', '.join(BASELINES)}")
    rows = [r for r in load_split(staged, config, split) if answer_of(task, r) is not None]
    if baseline == "reference":
        return [{"id": r["id"], "prediction": answer_of(task, r)} for r in rows]
    if baseline == "copy":
        return [{"id": r["id"], "prediction": r[PROMPT_COLUMN[task]]} for r in rows]
    train = [r for r in load_split(staged, config, train_split) if answer_of(task, r) is not None]
    if not train:
        raise ValueError(f"no row of {config}/{train_split} has an answer for task {task!r}: nothing to retrieve")
    column = PROMPT_COLUMN[task]
    best = nearest_neighbours([r[column] for r in rows], [t[column] for t in train])
    return [{"id": r["id"], "prediction": answer_of(task, train[j])} for r, j in zip(rows, best)]
