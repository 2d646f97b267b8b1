"""Small helpers for the validation, fault and bad-input tests: tiny row sets on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from generator.core.irtext import stablehlo_ops
from generator.core.plan import plan_shards
from generator.core.tokens import count_tokens
from generator.runtime.shards import generate_shard


def make_rows(train: int = 7, validation: int = 3, seed: int = 0) -> dict[str, list[dict]]:
    """A small, real build (no ``datasets``): rows per split."""
    plan = plan_shards(
        train_size=train, validation_size=validation, seed=seed, rows_per_shard=max(train, validation, 1)
    )
    return {split: [r for task in tasks for r in generate_shard(task)] for split, tasks in plan.items() if tasks}


def rederive(row: dict, **changes) -> dict:
    """``row`` with ``changes`` and its derived columns (id, op list, line and token counts) made consistent."""
    r = {**row, **changes}
    ops = stablehlo_ops(r["stablehlo_ir"])
    r["id"] = hashlib.sha256(r["python_source"].encode()).hexdigest()[:16]
    r["stablehlo_ops"] = sorted(ops)
    r["num_stablehlo_ops"] = sum(ops.values())
    r["stablehlo_lines"] = r["stablehlo_ir"].count("\n")
    r["python_tokens"] = count_tokens(r["python_source"])
    r["stablehlo_tokens"] = count_tokens(r["stablehlo_ir"])
    return r


def write_jsonl(rows_by_split: dict[str, list[dict]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_parquet(rows: list[dict], path: Path) -> Path:
    import datasets

    from generator.core.schema import FEATURES

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=FEATURES).to_parquet(str(path))
    return path
