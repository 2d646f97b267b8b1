"""Every row of README's "Bad input" table: the error it gets, and no partial output left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from generator.tools import cli
from tests import rowkit


@pytest.fixture(scope="module")
def good_rows():
    return rowkit.make_rows(train=2, validation=1, seed=21)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- builder fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(config_name="nope"), "BuilderConfig 'nope' not found"),
        (dict(config_name="balanced", train_size=-1), "train_size must be a non-negative integer, got -1"),
        (
            dict(config_name="balanced", validation_size="10"),
            "validation_size must be a non-negative integer, got '10'",
        ),
        (dict(config_name="balanced", train_size=True), "train_size must be a non-negative integer, got True"),
        (dict(config_name="balanced", seed=-5), "seed must be a non-negative integer, got -5"),
        (dict(config_name="balanced", rows_per_shard=0), "rows_per_shard must be a positive integer, got 0"),
        (dict(config_name="balanced", categories=("matrix", "bogus")), "unknown categories ['bogus']"),
        (dict(config_name="balanced", mixture="random"), "unknown mixture 'random'"),
    ],
)
def test_bad_builder_fields(builder_module, tmp_path, kwargs, message):
    with pytest.raises(ValueError) as info:
        builder_module.JaxStablehloPairs(cache_dir=str(tmp_path / "cache"), **kwargs)
    assert message in str(info.value)
    assert not list(tmp_path.rglob("*.arrow")) and not list(tmp_path.rglob("dataset_info.json"))


# --- command line -----------------------------------------------------------------------------


def test_bad_generate_arguments_write_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv, message in [
        (["--count", "2", "--category", "bogus", "--output-dir", str(tmp_path / "a")], "unknown category 'bogus'"),
        (["--count", "-3", "--output-dir", str(tmp_path / "b")], "expected a non-negative integer, got '-3'"),
        (["--count", "2", "--seed", "x", "--output-dir", str(tmp_path / "c")], "got 'x'"),
        (
            ["--count", "2", "--batch-size", "0", "--output-dir", str(tmp_path / "d")],
            "argument --batch-size: expected a positive integer, got '0'",
        ),
        (["--count", "2", "--batch-size", "ten", "--output-dir", str(tmp_path / "e")], "got 'ten'"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(["generate", *argv])
        assert info.value.code == 2 and message in capsys.readouterr().err
    assert cli.main(["generate", "--count", "2", "--output-dir", str(blocker / "sub")]) == 2
    assert "output directory" in capsys.readouterr().err
    assert cli.main(["generate", "--count", "0", "--output-dir", str(tmp_path / "f")]) == 2
    assert "--count must be at least 1, got 0" in capsys.readouterr().err
    assert _listing(tmp_path) == ["file"]


def test_generate_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    import generator.core.rows as rows

    real, calls = rows.sample_program, []

    def fails_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(rows, "sample_program", fails_on_third)
    with pytest.raises(RuntimeError, match=r"shard train/0 \(seed 0"):
        cli.main(["generate", "--count", "5", "--output-dir", str(tmp_path / "out"), "--format", "parquet"])
    assert _listing(tmp_path / "out") == []


def test_generate_that_fails_midway_keeps_only_its_complete_batches(tmp_path, monkeypatch):
    import generator.runtime.shards as shards

    real = shards.generate_shard

    def fails_after_three_rows(task, stats=None):
        for i, row in enumerate(real(task, stats)):
            if i == 3:
                raise RuntimeError("killed midway")
            yield row

    monkeypatch.setattr(shards, "generate_shard", fails_after_three_rows)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed midway"):
        cli.main(["generate", "--count", "5", "--batch-size", "2", "--output-dir", str(out)])
    # batch 0 (rows 0-1) was written when it filled; batch 1 had one row and never got a file
    assert _listing(out) == ["train-00000-of-00003.jsonl"]
    assert len((out / "train-00000-of-00003.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("writer", ["jsonl", "parquet", "json"])
def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, good_rows, writer):
    from generator.tools import io

    path = tmp_path / f"train.{writer}"
    path.write_text("old")
    rows = good_rows["train"]
    if writer == "parquet":
        import pyarrow.parquet as pq

        def half_then_fail(table, where):
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError("disk full")

        monkeypatch.setattr(pq, "write_table", half_then_fail)
        call = lambda: io.write_parquet(rows, path)  # noqa: E731
    else:
        rows = [*rows, {"not json": object()}]  # the write fails after the good rows are out
        call = (lambda: io.write_jsonl(rows, path)) if writer == "jsonl" else (lambda: io.write_json(rows, path))
    with pytest.raises((OSError, TypeError)):
        call()
    assert _listing(tmp_path) == [path.name] and path.read_text() == "old"


# --- validate inputs --------------------------------------------------------------------------


def _corrupt(folder: Path, rows) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    return folder


def _truncated(folder: Path, rows) -> Path:
    path = rowkit.write_parquet(rows["train"], folder / "train.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return folder


def _bad_jsonl(folder: Path, rows) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text('{"id": "x"}\n{not json\n')
    return folder


def _missing_column(folder: Path, rows) -> Path:
    return rowkit.write_jsonl(
        {"train": [{k: v for k, v in r.items() if k != "python_source"} for r in rows["train"]]}, folder
    )


def _wrong_type(folder: Path, rows) -> Path:
    return rowkit.write_jsonl({"train": [{**r, "num_stablehlo_ops": "7"} for r in rows["train"]]}, folder)


def _empty_folder(folder: Path, rows) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("no data here")
    return folder


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda f, rows: f / "missing", 2, "does not exist"),
        (_empty_folder, 2, "holds no .jsonl or .parquet files"),
        (_corrupt, 2, "cannot read"),
        (_truncated, 2, "cannot read"),
        (_bad_jsonl, 2, "cannot read"),
        (_missing_column, 1, "missing columns: python_source"),
        (_wrong_type, 1, "num_stablehlo_ops is not an int32: '7'"),
    ],
)
def test_bad_validate_input(tmp_path, capsys, good_rows, make, code, message):
    path = make(tmp_path / "data", good_rows)
    before = _listing(tmp_path)
    assert cli.main(["validate", str(path), "--structure-only"]) == code
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert _listing(tmp_path) == before  # validate never writes


def test_validate_iree_without_iree_installed(tmp_path, capsys, good_rows, monkeypatch):
    monkeypatch.setitem(sys.modules, "iree.compiler", None)  # import fails as if not installed
    rowkit.write_jsonl(good_rows, tmp_path / "d")
    assert cli.main(["validate", str(tmp_path / "d"), "--trust-code", "--iree"]) == 2
    assert "pip install 'jax-stablehlo-pairs[iree]'" in capsys.readouterr().err


def test_validate_bad_time_limit(tmp_path, capsys, good_rows):
    rowkit.write_jsonl(good_rows, tmp_path / "d")
    assert cli.main(["validate", str(tmp_path / "d"), "--trust-code", "--time-limit", "0"]) == 2
    assert "time_limit must be positive, got 0.0" in capsys.readouterr().err


# --- Hub ------------------------------------------------------------------------------------


def test_push_without_token_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    out = tmp_path / "staged"
    assert cli.main(["push", "--repo", "someone/pairs", "--output-dir", str(out), "--configs", "matrix"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    assert not out.exists()


def test_push_with_malformed_repo_id_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_token_for_a_test")
    out = tmp_path / "staged"
    code = cli.main(
        [
            "push",
            "--repo",
            "not a/valid//repo",
            "--output-dir",
            str(out),
            "--configs",
            "matrix",
            "--train-size",
            "1",
            "--validation-size",
            "0",
        ]
    )
    assert code == 2 and "bad repo id 'not a/valid//repo'" in capsys.readouterr().err
    assert not out.exists()
    assert not out.exists()
