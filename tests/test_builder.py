"""The builder as users meet it: load_dataset on the script, and the class used directly."""

import subprocess
import sys
import textwrap

import datasets
import pytest

import generator
from generator.core.ops import CATEGORIES

from .conftest import ROOT, SCRIPT

SMALL = {"train_size": 17, "validation_size": 5, "rows_per_shard": 6}


def load(config="balanced", cache_dir=None, **kwargs):
    return datasets.load_dataset(SCRIPT, config, trust_remote_code=True, cache_dir=cache_dir, **(SMALL | kwargs))


def test_load_dataset_builds_versioned_splits(cache_dir):
    ds = load(cache_dir=cache_dir)
    assert ds.num_rows == {"train": 17, "validation": 5, "test": 5}  # test: as validation by default
    assert str(ds["train"].info.version) == generator.__version__
    assert ds["train"].info.config_name == "balanced"
    assert set(ds["train"]["category"]) == set(CATEGORIES)


@pytest.mark.parametrize("config", ["mixed", *CATEGORIES])
def test_every_config_builds(config, cache_dir):
    ds = load(config, cache_dir=cache_dir, train_size=4, validation_size=2, test_size=1)
    assert ds.num_rows == {"train": 4, "validation": 2, "test": 1}
    if config in CATEGORIES:
        assert set(ds["train"]["category"]) == {config}


# The same rows with num_proc 1 and 2 is checked by the default run elsewhere: test_hub.py's forked
# workers (matrix, num_proc 1 and 2), test_determinism.py (num_proc=2 against the rows generated in
# process) and the two num_proc=2 builds below (workers in process and on a shard server).
@pytest.mark.slow
def test_rows_identical_whatever_num_proc(cache_dir, tmp_path):
    one = load(cache_dir=cache_dir, num_proc=1)
    two = load(cache_dir=str(tmp_path / "other"), num_proc=2)
    for split in ("train", "validation", "test"):
        assert one[split].to_list() == two[split].to_list()


def test_seed_changes_rows(cache_dir):
    assert load(cache_dir=cache_dir, seed=1)["train"]["id"] != load(cache_dir=cache_dir, seed=2)["train"]["id"]


def test_changed_generator_never_serves_stale_cache(cache_dir, monkeypatch):
    import generator
    import generator.core.rows as rows

    first = load(cache_dir=cache_dir)
    real_build_row = rows.build_row

    def changed_build_row(*args):
        return real_build_row(*args) | {"generator_version": "changed"}

    monkeypatch.setattr(rows, "build_row", changed_build_row)
    monkeypatch.setattr(generator, "code_fingerprint", lambda: "a-changed-generator")
    second = load(cache_dir=cache_dir)
    assert set(second["train"]["generator_version"]) == {"changed"}
    assert second["train"]["id"] == first["train"]["id"]


def test_unchanged_fingerprint_keeps_the_cached_build(cache_dir, monkeypatch):
    """What keys the cache is the script and ``code_fingerprint`` (``tests/test_layout.py``: edits
    outside ``core/`` keep the fingerprint): with both unchanged, a second load serves the first
    build's rows and generates nothing."""
    import generator.core.rows as rows

    first = load(cache_dir=cache_dir)

    def must_not_run(*args):
        raise AssertionError("rows were generated again")

    monkeypatch.setattr(rows, "build_row", must_not_run)
    second = load(cache_dir=cache_dir)
    assert second["train"].to_list() == first["train"].to_list()


def test_builder_class_used_directly(builder_module, tmp_path):
    builder = builder_module.JaxStablehloPairs(
        config_name="matrix", cache_dir=str(tmp_path), train_size=3, validation_size=1
    )
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert ds["train"].num_rows == 3 and set(ds["train"]["category"]) == {"matrix"}


def test_a_split_of_size_zero_is_left_out(cache_dir):
    ds = load("matrix", cache_dir=cache_dir, train_size=3, validation_size=0)
    assert list(ds) == ["train"] and ds["train"].num_rows == 3
    with pytest.raises(ValueError, match="all 0"):
        load("matrix", cache_dir=cache_dir, train_size=0, validation_size=0)


def test_unknown_config_lists_valid_names(cache_dir):
    with pytest.raises(ValueError, match="not found.*balanced"):
        load("nonexistent", cache_dir=cache_dir)


@pytest.mark.parametrize("field, value", [("train_size", -5), ("validation_size", 1.5), ("seed", -1)])
def test_bad_config_values_are_refused_before_work(field, value, cache_dir, tmp_path):
    with pytest.raises(ValueError, match=f"{field} must be a non-negative integer, got {value}"):
        load(cache_dir=cache_dir, **{field: value})


def _build_with_num_proc_2(tmp_path, before: str) -> tuple[str, bool]:
    """Run ``before``, then a num_proc=2 build, in a fresh interpreter.

    Returns the rows it printed and whether any worker streamed its shards from a shard
    server (``forksafe._start_worker`` is wrapped to leave a marker file; forked workers
    inherit the wrapper).
    """
    marker = tmp_path / "shard-server-started"
    program = textwrap.dedent(
        f"""
        import pathlib, jax, jax.numpy as jnp, datasets
        import generator.runtime.forksafe as fs
        _start = fs._start_worker
        def _marked():
            pathlib.Path({str(marker)!r}).touch()
            return _start()
        fs._start_worker = _marked
        {before}
        ds = datasets.load_dataset({SCRIPT!r}, "balanced", trust_remote_code=True, num_proc=2,
                                   cache_dir={str(tmp_path)!r}, train_size=8, validation_size=4, rows_per_shard=2)
        print("rows", ds.num_rows["train"], ds.num_rows["validation"])
        print("ids", *ds["train"]["id"], *ds["validation"]["id"])
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, marker.exists()


# A child forked after the parent lowered a module would hang inside JAX (MLIR's thread pool).
AFTER_LOWERING = "jax.jit(lambda x: jax.lax.fori_loop(0, 10, lambda i, c: jnp.sin(c) @ c, x)).lower(jnp.ones((64, 64)))"


@pytest.fixture(scope="module")
def after_lowering(tmp_path_factory):
    """One num_proc=2 build after the parent lowered a module (both tests below read it)."""
    return _build_with_num_proc_2(tmp_path_factory.mktemp("lowered"), AFTER_LOWERING)


def test_num_proc_after_lowering_does_not_hang(after_lowering):
    out, used_server = after_lowering
    assert "rows 8 4" in out
    assert used_server  # JAX had started threads: workers lowered in fresh interpreters


def test_num_proc_workers_lower_in_process_when_jax_was_only_imported(tmp_path, after_lowering):
    """Importing JAX starts no threads, so forked workers lower in-process: same rows, no server."""
    out, used_server = _build_with_num_proc_2(tmp_path / "imported", "pass")
    assert "rows 8 4" in out and not used_server
    again, used_server = after_lowering
    assert used_server and again == out


def test_jax_counts_as_started_once_it_has_a_backend():
    program = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        from generator.runtime.forksafe import jax_started
        print(jax_started())
        jax.make_jaxpr(jnp.sin)(1.0)
        print(jax_started())
        jax.jit(jnp.sin).lower(1.0)
        print(jax_started())
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.split() == ["False", "False", "True"], done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)  # every config at its default size: far beyond the suite's 600 s per test
def test_datasets_cli_test_all_configs(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "datasets.commands.datasets_cli",
            "test",
            SCRIPT,
            "--all_configs",
            "--trust_remote_code",
            "--num_proc",
            "2",
            "--cache_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=4 * 3600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
