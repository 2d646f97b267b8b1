"""What a shard spends besides JAX's own work: the collector kept off what rows leave alive,
and a source's execution apart from its ``example_args()`` (the benchmark times them apart)."""

import gc
import sys

from generator.core import rows as rows_module
from generator.core.lowering import ROW_MODULE, exec_source, load_source
from generator.core.plan import plan_shards
from generator.core.rows import ShardStats
from generator.runtime import shards

SOURCE = """\
import dataclasses
import sys

import jax
import jax.numpy as jnp

CALLS = []


@dataclasses.dataclass(frozen=True)
class Config:
    size: int = 4


def double(x):
    return 2 * x


def example_args():
    CALLS.append(sys.modules[__name__])  # registered while example_args runs
    return [jax.ShapeDtypeStruct((Config().size,), jnp.float32)]
"""


def test_exec_source_executes_without_calling_example_args():
    fn, example_args = exec_source(SOURCE, "double")
    calls = fn.__globals__["CALLS"]
    assert calls == [] and ROW_MODULE not in sys.modules
    (spec,) = example_args()  # a tuple, as load_source returns it
    assert spec.shape == (4,)
    assert len(calls) == 1 and calls[0].__name__ == ROW_MODULE and ROW_MODULE not in sys.modules
    loaded_fn, args = load_source(SOURCE, "double")
    assert loaded_fn.__name__ == "double" and args == (spec,)


class _SpyGC:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_a_row_freezes_its_survivors_and_a_cache_clear_collects_everything(monkeypatch):
    spy = _SpyGC()
    monkeypatch.setattr(shards, "gc", spy)
    for _ in range(3):
        shards._freeze_row_survivors(caches_cleared=False)
    # young collection, then freeze; after the row that cleared JAX's caches, a full collection
    assert spy.calls == [("collect", 1), ("freeze",)] * 3
    spy.calls.clear()
    shards._freeze_row_survivors(caches_cleared=True)
    assert spy.calls == [("unfreeze",), ("collect",), ("freeze",)]


def test_rows_do_not_depend_on_when_memory_is_reclaimed(monkeypatch):
    """Freezing what rows leave alive (and collecting when caches are cleared) changes no row:
    the same shard with the collector left alone (a caller that froze objects itself turns the
    freezing off) makes the same rows."""
    monkeypatch.setattr(rows_module, "CLEAR_CACHES_EVERY", 2)
    (task,) = plan_shards(
        min_shards_per_split=1, train_size=5, validation_size=0, seed=4, categories=("arithmetic", "reduction")
    )["train"]
    frozen = []
    managed = []
    for row in shards.generate_in_process(task, ShardStats()):
        managed.append(row)
        frozen.append(gc.get_freeze_count())
    assert gc.get_freeze_count() == 0  # everything unfrozen after the shard
    assert frozen[1] > frozen[0]  # row 0's survivors were frozen before row 1
    gc.freeze()
    try:
        start = gc.get_freeze_count()
        left_alone = list(shards.generate_in_process(task, ShardStats()))
        assert gc.get_freeze_count() <= start  # nothing more frozen (frozen objects may still die)
    finally:
        gc.unfreeze()
    assert left_alone == managed
