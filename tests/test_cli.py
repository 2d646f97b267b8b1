import json
import subprocess
import sys

from .conftest import ROOT


def run(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], capture_output=True, text=True, cwd=ROOT, timeout=600, **kw
    )


def test_generate_validate_stats(tmp_path):
    out = tmp_path / "out"
    done = run("generate", "--count", "14", "--balanced", "--output-dir", str(out), "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["train.parquet"]
    report = run("validate", str(out), "--all", "--trust-code")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "reproduce  14/14 pass (100.0%)" in report.stdout and "unique: ids 100.0%, sources 100.0%" in report.stdout
    stats = run("stats", str(out))
    assert "by category: arithmetic 1, autodiff 1," in stats.stdout and "op coverage:" in stats.stdout
    table = json.loads(run("stats").stdout)
    assert table["ops"] >= 100


def test_generate_jsonl_one_category(tmp_path):
    done = run("generate", "--count", "3", "--category", "matrix", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
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
