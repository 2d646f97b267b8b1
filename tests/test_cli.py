import json
import os
import subprocess
import sys

import pytest

from generator.tools import cli
from generator.tools.io import read_rows

from .conftest import ROOT


def run(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], capture_output=True, text=True, cwd=ROOT, timeout=600, **kw
    )


def test_generate_validate_stats(tmp_path):
    # four rows: the commands' plumbing; every category's rows are validated in test_pipeline.py
    out = tmp_path / "out"
    done = run("generate", "--count", "4", "--balanced", "--output-dir", str(out), "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["train-00000-of-00001.parquet"]
    report = run("validate", str(out), "--all", "--trust-code")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "reproduce  4/4 pass (100.0%)" in report.stdout and "unique: ids 100.0%, sources 100.0%" in report.stdout
    stats = run("stats", str(out))
    assert (
        "by category: arithmetic 1, conditional 1, matrix 1, reduction 1\n" in stats.stdout
        and "op coverage:" in stats.stdout
    )
    table = json.loads(run("stats").stdout)
    assert table["ops"] >= 100


def test_generate_jsonl_one_category(tmp_path):
    done = run("generate", "--count", "3", "--category", "matrix", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "train-00000-of-00001.jsonl").read_text().splitlines()]
    assert [r["category"] for r in rows] == ["matrix"] * 3


def test_bad_cli_input_names_the_value_and_writes_nothing(tmp_path):
    bad = run("generate", "--count", "2", "--category", "bogus", "--output-dir", str(tmp_path / "a"))
    assert bad.returncode == 2 and "unknown category 'bogus'; valid categories: arithmetic" in bad.stderr
    neg = run("generate", "--count", "-3", "--output-dir", str(tmp_path / "b"))
    assert neg.returncode == 2 and "'-3'" in neg.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = run("generate", "--count", "2", "--output-dir", str(blocker / "sub"))
    assert unwritable.returncode == 2 and "output directory" in unwritable.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- the original design's commands: batches, the default folder ----------------------------


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_generate_in_batches_into_the_default_folder_and_validate_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "--count", "5", "--batch-size", "2"]) == 0
    out = tmp_path / "data" / "samples"
    files = ["train-00000-of-00003.jsonl", "train-00001-of-00003.jsonl", "train-00002-of-00003.jsonl"]
    assert _names(out) == files
    assert [len((out / f).read_text().splitlines()) for f in files] == [2, 2, 1]
    rows = read_rows("data/samples")
    assert list(rows) == ["train"] and len(rows["train"]) == 5
    assert "wrote 5 rows in 3 files to data/samples" in capsys.readouterr().out

    # validate with no PATH checks data/samples, under the same trust rule as a PATH
    assert cli.main(["validate"]) == 3
    assert "5 rows (train 5)" in (refused := capsys.readouterr().out) and "REFUSED" in refused
    assert cli.main(["validate", "--structure-only"]) == 0
    assert "structure  5/5 pass (100.0%)" in capsys.readouterr().out

    # a rerun replaces the earlier run's files (and a killed run's hidden temporary), nothing else;
    # the rows do not depend on the batch size
    (out / ".train-00001-of-00003.jsonl.0badf00d.tmp").write_text('{"half": ')
    (out / "notes.txt").write_text("mine")
    assert cli.main(["generate", "--count", "5"]) == 0
    assert _names(out) == ["notes.txt", "train-00000-of-00001.jsonl"]
    assert "removed 4 files of an earlier run" in capsys.readouterr().err
    assert read_rows(out) == rows


def test_validate_without_path_or_default_folder_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", "--structure-only"]) == 2
    err = capsys.readouterr().err
    assert "the default folder 'data/samples' does not exist" in err
    assert "python -m generator generate --count N" in err and "pass a PATH or --build" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-1", "2.5"])
def test_bad_batch_size_names_the_value(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", "--count", "2", "--batch-size", value, "--output-dir", str(tmp_path / "o")])
    assert info.value.code == 2
    assert f"argument --batch-size: expected a positive integer, got '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_build_prints_progress_and_summary_not_library_notes(tmp_path):
    """A fresh modules cache reads the project README as the script's card: no warning about it."""
    env = {
        **os.environ,
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "0",
    }
    done = run(
        "build", "--config", "arithmetic", "--train-size", "3", "--validation-size", "1", "--num-proc", "2", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "rows: 5  (train: 3, validation: 1, test: 1)" in done.stdout and "pairs/s" in done.stdout
    assert "Repo card metadata" not in done.stderr and "Setting num_proc" not in done.stderr
    assert "Generating train split" in done.stderr  # the progress bars stay


def test_build_takes_every_builder_field_with_its_valid_values(capsys):
    """The build options are derived from the builder's config fields, so the two cannot drift."""
    import dataclasses

    from generator.core.config import BuildOptions

    parser = cli.build_parser()
    build = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "build")[1]
    flags = {o for a in build._actions for o in a.option_strings}
    fields = {f.name for f in dataclasses.fields(BuildOptions)}
    assert {"--" + name.replace("_", "-") for name in fields} <= flags
    help_text = " ".join(build.format_help().split())
    assert "one of: pairs, forward, conversational, reverse, optimize, cost" in help_text
    assert "one of: small, medium, large" in help_text
    args = parser.parse_args(["build", "--view", "forward", "--max-tokens", "8192", "--categories", "matrix", "nn"])
    assert cli._build_kwargs(args) == {"view": "forward", "max_tokens": 8192, "categories": ("matrix", "nn")}
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--program-size", "huge"])
    assert "invalid choice: 'huge' (choose from 'small', 'medium', 'large')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--rows-per-shard", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
