"""Hub publishing: the staged folder, its card, re-staging bytes, the upload calls, the viewer's view."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.core.categories import MODEL_CATEGORIES

# The card is a Jinja template and its plots are matplotlib PNGs: the `hub` extra (make stage installs it).
pytest.importorskip("jinja2", reason="needs the hub extra: pip install -e '.[hub]'")
pytest.importorskip("matplotlib", reason="needs the hub extra: pip install -e '.[hub]'")

from importlib.metadata import version

from huggingface_hub import DatasetCard, HfApi
from huggingface_hub import constants as hf_constants

from generator import __version__
from generator.core.schema import COLUMNS
from generator.tools import cli, hub
from generator.tools.io import read_rows
from generator.tools.stats import summarize

from .conftest import ROOT

SIZES = {"train_size": 40, "validation_size": 10, "test_size": 5}
CONFIGS = ["balanced", "matrix"]


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "staged"
    return hub.stage(out, CONFIGS, **SIZES, repo_id="someone/jsp")


VIEWS = ["forward", "conversational", "reverse", "cost"]  # staged by default (optimize needs optimized HLO)


def test_layout_is_the_hub_layout(staged):
    folders = [*CONFIGS, *(f"{c}-{v}" for c in CONFIGS for v in VIEWS)]
    assert sorted(tree(staged.path)) == sorted(
        [
            "README.md",
            *(
                f"{folder}/{split}-00000-of-00001.parquet"
                for folder in folders
                for split in ("train", "validation", "test")
            ),
            "plots/op_frequency.png",
            "plots/sizes.png",
            "plots/tokens.png",
        ]
    )
    assert [p.name for p in staged.path.parent.iterdir()] == ["staged"]  # no temporary folder left behind
    for png in (staged.path / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_parquet_holds_the_builder_rows(staged):
    for name in CONFIGS:
        rows = read_rows(staged.path / name)
        assert {split: len(r) for split, r in rows.items()} == {"train": 40, "validation": 10, "test": 5}
        assert [hub.row_digest(r) for r in rows["train"]] == staged.configs[name].row_digests["train"]
        assert pq.read_schema(staged.path / name / "train-00000-of-00001.parquet").names == list(COLUMNS)
    assert {r["category"] for r in read_rows(staged.path / "matrix")["train"]} == {"matrix"}


def test_views_are_staged_beside_each_config(staged):
    from generator.core.views import features, view_row

    assert sorted(staged.views) == sorted(f"{c}-{v}" for c in CONFIGS for v in VIEWS)
    for name in CONFIGS:
        pairs = read_rows(staged.path / name)
        for view in VIEWS:
            rows = read_rows(staged.path / f"{name}-{view}")
            expected = {s: [v for v in (view_row(r, view, 0) for r in rs) if v] for s, rs in pairs.items()}
            assert rows == expected
            assert pq.read_schema(next((staged.path / f"{name}-{view}").glob("train-*"))).names == list(features(view))
    # cost has no row for symbolic shapes (balanced holds dynamic_shapes rows); the others have one per pair
    n = {split: len(rs) for split, rs in read_rows(staged.path / "balanced-cost").items()}
    assert 0 < n["train"] < 40 and len(read_rows(staged.path / "balanced-reverse")["train"]) == 40


def test_row_groups_stay_small_however_long_the_rows(tmp_path, monkeypatch):
    """Row groups hold at most ROW_GROUP_BYTES of data (the viewer refuses groups over about 286 MiB)."""
    import numpy as np

    from generator.tools.hub import staging

    table = pa.table(
        {
            "text": ["x" * n for n in (10, 5_000, 200, 40_000, 7)] * 4,
            "messages": [[{"role": "user", "content": "y" * n}] for n in (3, 9, 60_000, 1, 2)] * 4,
        }
    )
    sizes = staging.row_nbytes(table.column("text")) + staging.row_nbytes(table.column("messages"))
    # a string: its bytes + a 4-byte offset; a list: its items + an offset; a struct: its fields
    expected = [
        len(t) + 4 + sum(len(m["content"]) + 4 + len(m["role"]) + 4 for m in ms) + 4
        for t, ms in zip(table.column("text").to_pylist(), table.column("messages").to_pylist())
    ]
    assert list(sizes) == expected
    assert staging.rows_per_row_group(table, 200_000) == 200_000 // int(sizes.max())
    ds = datasets.Dataset(table)
    paths = staging._write_parquet_shards(ds, tmp_path, "train", 1 << 30, row_group_bytes=130_000)
    meta = pq.ParquetFile(paths[0]).metadata
    assert meta.num_row_groups == 10  # 2 rows per group: 2 x 60 KB rows fit in 130 KB, 3 do not
    assert all(meta.row_group(i).num_rows == 2 for i in range(meta.num_row_groups))
    assert pq.read_table(paths[0]).equals(table)
    assert staging.rows_per_row_group(table.slice(0, 0)) == staging.MAX_ROWS_PER_ROW_GROUP
    assert np.all(sizes > 0)


def test_card_yaml_describes_configs_and_splits(staged):
    data = DatasetCard.load(staged.path / "README.md").data
    assert data.pretty_name and data.license == "apache-2.0"
    assert data.task_categories and {"jax", "stablehlo"} <= set(data.tags)
    assert data.size_categories == ["n<1K"]
    configs = {c["config_name"]: c for c in data.configs}
    assert configs["balanced"]["default"] is True and "default" not in configs["matrix"]
    assert configs["matrix"]["data_files"] == [
        {"split": "train", "path": "matrix/train-*"},
        {"split": "validation", "path": "matrix/validation-*"},
        {"split": "test", "path": "matrix/test-*"},
    ]
    infos = {i["config_name"]: i for i in data.dataset_info}
    for name in CONFIGS:
        assert [f["name"] for f in infos[name]["features"]] == list(COLUMNS)
        assert {s["name"]: s["num_examples"] for s in infos[name]["splits"]} == {
            "train": 40,
            "validation": 10,
            "test": 5,
        }
        parquet = sum(p.stat().st_size for p in (staged.path / name).glob("*.parquet"))
        assert infos[name]["download_size"] == parquet
    # The YAML features are what datasets reads back for the config.
    info = datasets.DatasetInfo._from_yaml_dict(infos["matrix"])
    assert info.features == datasets.Features({n: f for n, (f, _) in COLUMNS.items()})
    from generator.core.views import features

    for view in VIEWS:
        name = f"matrix-{view}"
        assert configs[name]["data_files"][0] == {"split": "train", "path": f"{name}/train-*"}
        assert datasets.DatasetInfo._from_yaml_dict(infos[name]).features == features(view)


def test_card_numbers_come_from_the_staged_data(staged):
    text = (staged.path / "README.md").read_text()
    for name in CONFIGS:
        s = summarize(read_rows(staged.path / name))
        pl = s["python_lines"]
        assert (
            f"| `{name}` | {s['rows']} | {s['op_coverage']} | {pl['p5']:g} / {pl['median']:g} / {pl['p95']:g} |" in text
        )
    for column in COLUMNS:
        assert f"| `{column}` |" in text
    assert "(plots/op_frequency.png)" in text and "(plots/sizes.png)" in text and "(plots/tokens.png)" in text
    tokens = s["tokens"]  # matrix's, from the staged rows
    assert f"| `matrix` | 55 | {tokens['python']:,} | {tokens['stablehlo']:,} |" in text
    assert "tekken_240911.json from mistral-common 1.9.1" in text
    from generator.tools.hub.card import budget_table

    flat = [r for rs in read_rows(staged.path / "matrix").values() for r in rs]
    budgets = budget_table(flat, 0)
    assert budgets[32768]["rows"] >= budgets[2048]["rows"]
    assert "| `matrix` | " + " | ".join(f"{b['rows']} ({b['tokens']:,})" for b in budgets.values()) + " |" in text
    fwd = read_rows(staged.path / "matrix-forward")
    prompt = sum(r["prompt_tokens"] for rs in fwd.values() for r in rs)
    assert f"| `matrix-forward` | Python source -> StableHLO | 40 | 10 | 5 | {prompt:,} |" in text
    assert 'load_dataset("someone/jsp", "balanced")' in text
    assert f"jax / jaxlib | {version('jax')} / {version('jaxlib')}" in text
    assert "--configs balanced matrix --train-size 40 --validation-size 10 --test-size 5 --seed 0" in text
    # the benchmark section: leakage measured on the staged rows, structures per split
    from generator.tools import leakage

    leak = leakage.measure(read_rows(staged.path / "matrix"))
    assert leak["held_out_rows"] == 15
    assert (
        f"| `matrix` | 40 | 15 | {100 * leak['ir']:.1f}% | {100 * leak['calls']:.1f}% | {100 * leak['either']:.1f}% |"
        in text
    )
    # the baselines measured for this version (dataset_card/baselines.json) are on its card
    from generator.tools.hub.card import load_baselines

    baselines = load_baselines(__version__)
    if baselines is None:  # not measured on this version's rows yet (an unreleased version)
        assert "Baselines, measured on" not in text
    else:
        assert "Baselines, measured on" in text
        forward = next(t for t in baselines["tasks"] if t["task"] == "forward")
        ref = next(r for r in forward["rows"] if r["baseline"] == "reference" and r["config"] == "balanced")
        assert f"| `balanced` | reference | {ref['rows']} | {ref['layers']['parses']} |" in text
    assert "This is not a security sandbox" in text
    # the model rows written as sharded code, counted from the staged rows
    balanced = [r for rs in read_rows(staged.path / "balanced").values() for r in rs]
    for cat in {r["category"] for r in balanced} & set(MODEL_CATEGORIES):
        rows = [r for r in balanced if r["category"] == cat]
        assert f"{cat} {sum(1 for r in rows if r['mesh'])} of {len(rows)}" in text, cat
    # a build starts its shared lowering server ahead only for categories that may be sharded
    from generator.core.categories import SHARDED_CATEGORIES

    assert {r["category"] for r in balanced if r["mesh"]} <= set(SHARDED_CATEGORIES)
    # the model families' growth (dataset_card/diversity.json) is on the card of its version
    from generator.tools.hub.card import load_diversity

    diversity = load_diversity(__version__)
    assert ("calls / structures at" in text) == (diversity is not None)
    from generator.tools.hub.card import load_costs

    assert ("| config | pairs/s per core |" in text) == (load_costs(__version__) is not None)
    used = {t for rs in read_rows(staged.path / "balanced").values() for r in rs for t in r["jax_transforms"]}
    line = next(x for x in text.splitlines() if x.startswith("JAX transforms applied"))
    assert {t.strip("`") for t in re.findall(r"`[a-z_]+`", line)} == used | {"balanced"}
    assert f"Version {__version__}" in text and f"`v{__version__}`" in text
    assert "@misc{jax_stablehlo_pairs" in text
    # resampling was observed (shards ran in this process): every emitted row is counted once
    assert all(c.shard_stats and c.shard_stats["rows"] == 55 for c in staged.configs.values())
    assert "| `matrix` | 55 | " in text.split("**Resampling.**")[1]


def test_staged_folder_loads_without_script(staged):
    """datasets 3.6 in-process; generator/tools/hub/viewer_check.py does the same with the newest datasets (slow test)."""
    ds = datasets.load_dataset(str(staged.path), "matrix", cache_dir=str(staged.path.parent / "cache"))
    assert ds.num_rows == {"train": 40, "validation": 10, "test": 5}
    assert [hub.row_digest(r) for r in ds["validation"]] == staged.configs["matrix"].row_digests["validation"]


def test_restaging_gives_identical_bytes(staged, tmp_path):
    again = hub.stage(tmp_path / "again", ["matrix"], **SIZES)
    before, after = tree(staged.path), tree(again.path)
    assert any(f.startswith("matrix-forward/") for f in after)
    for f in after:
        if f.endswith(".parquet"):  # the pairs and their views
            assert before[f] == after[f], f
    # Restaging over an existing staging replaces it whole (balanced is gone) with the same bytes.
    readme = (again.path / "README.md").read_text()
    assert hub.stage(again.path, ["matrix"], **SIZES).path == again.path
    assert {k: v for k, v in tree(again.path).items() if k != "README.md"} == {
        k: v for k, v in after.items() if k != "README.md"
    }
    # The card too, but for the fingerprint of generator/'s files, which others may edit meanwhile.
    unfingerprinted = re.compile(r"code fingerprint `[0-9a-f]+`")
    assert unfingerprinted.sub("", (again.path / "README.md").read_text()) == unfingerprinted.sub("", readme)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_bad_input_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"unknown configs \['nope'\]; valid configs: balanced"):
        hub.stage(tmp_path / "out", ["balanced", "nope"])
    with pytest.raises(ValueError, match=r"unknown views \['fwd'\]; valid views: forward, conversational"):
        hub.stage(tmp_path / "out", ["matrix"], views=["forward", "fwd"])
    with pytest.raises(ValueError, match="view 'optimize' needs with_optimized_hlo=True"):
        hub.stage(tmp_path / "out", ["matrix"], views=["optimize"])
    with pytest.raises(ValueError, match="max_tokens must be a positive integer or None"):
        hub.stage(tmp_path / "out", ["matrix"], max_tokens=0)
    with pytest.raises(ValueError, match="train_size must be a non-negative integer, got -1"):
        hub.stage(tmp_path / "out", ["matrix"], train_size=-1)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no staged dataset"):
        hub.stage(foreign, ["matrix"], train_size=1, validation_size=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"] and (foreign / "notes.txt").exists()


def test_a_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    def broken_card(*args, **kwargs):
        raise RuntimeError("card failed")

    monkeypatch.setattr(hub.staging, "write_card", broken_card)  # the name stage() calls
    with pytest.raises(RuntimeError, match="card failed"):
        hub.stage(tmp_path / "out", ["matrix"], train_size=2, validation_size=1)
    assert list(tmp_path.iterdir()) == []


def test_size_category():
    assert [hub.size_category(n) for n in (0, 999, 1000, 99_000, 100_000, 10**12)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
        "n>1T",
    ]


# ------------------------------------------------------------------------- platforms


@pytest.fixture(scope="module")
def two_platforms(tmp_path_factory):
    """matrix staged for the CPU and for TPU in one folder (the CPU config as in ``staged``)."""
    out = tmp_path_factory.mktemp("platforms") / "staged"
    return hub.stage(out, ["matrix"], **SIZES, platforms="cpu,tpu", views=["forward"], repo_id="someone/jsp")


def test_platforms_are_staged_side_by_side(two_platforms, staged):
    result = two_platforms
    assert list(result.configs) == ["matrix", "matrix-tpu"] and list(result.views) == [
        "matrix-forward",
        "matrix-tpu-forward",
    ]
    assert [(c.config, c.platform) for c in result.configs.values()] == [("matrix", "cpu"), ("matrix", "tpu")]
    assert result.platforms == ["cpu", "tpu"]
    assert sorted(p.name for p in result.path.iterdir() if p.is_dir()) == [
        "matrix",
        "matrix-forward",
        "matrix-tpu",
        "matrix-tpu-forward",
        "plots",
    ]
    cpu, tpu = read_rows(result.path / "matrix"), read_rows(result.path / "matrix-tpu")
    assert {split: len(rows) for split, rows in tpu.items()} == {"train": 40, "validation": 10, "test": 5}
    assert {r["lowering"] for rs in cpu.values() for r in rs} == {"jit"}
    assert {r["lowering"] for rs in tpu.values() for r in rs} == {"jit:platform=tpu"}
    # the CPU config is the one a CPU-only staging writes; TPU's rows are its own lowerings
    assert result.configs["matrix"].row_digests == staged.configs["matrix"].row_digests
    assert result.configs["matrix-tpu"].row_digests["train"] != staged.configs["matrix"].row_digests["train"]
    fwd = read_rows(result.path / "matrix-tpu-forward")["train"]
    assert all(", for TPU" in r["prompt"].split("\n\n", 1)[0] for r in fwd if r["template"] == 0)
    assert hub.staged_configs(result.path) == ["matrix", "matrix-forward", "matrix-tpu", "matrix-tpu-forward"]


def test_the_card_lists_every_platforms_configs(two_platforms):
    data = DatasetCard.load(two_platforms.path / "README.md").data
    configs = {c["config_name"]: c for c in data.configs}
    assert set(configs) == {"matrix", "matrix-forward", "matrix-tpu", "matrix-tpu-forward"}
    assert configs["matrix-tpu"]["data_files"] == [
        {"split": split, "path": f"matrix-tpu/{split}-*"} for split in ("train", "validation", "test")
    ]
    infos = {i["config_name"]: i for i in data.dataset_info}
    assert {s["name"]: s["num_examples"] for s in infos["matrix-tpu"]["splits"]} == {
        "train": 40,
        "validation": 10,
        "test": 5,
    }
    text = (two_platforms.path / "README.md").read_text()
    assert "| config | what it holds | platform | train |" in text
    assert "| `matrix` | Only matrix programs. | CPU | 40 | 10 | 5 |" in text
    assert "| `matrix-tpu` | Only matrix programs. | TPU | 40 | 10 | 5 |" in text
    assert "Configs lowered for TPU sit beside the CPU's as `<config>-<platform>`" in text
    assert 'load_dataset("someone/jsp", "matrix-tpu")' in text
    assert "--configs matrix --train-size 40 --validation-size 10 --test-size 5 --seed 0 --platforms cpu,tpu" in text
    assert "- Lowered for CPU, TPU (the TPU configs on a machine without that hardware" in text
    for name in two_platforms.configs:
        assert f"| `{name}` | 55 | " in text.split("**Resampling.**")[1]


def test_one_other_platform_alone_is_named_for_it(tmp_path):
    result = hub.stage(
        tmp_path / "tpu", ["matrix"], train_size=2, validation_size=1, test_size=0, platforms=["tpu"], views=[]
    )
    assert list(result.configs) == ["matrix-tpu"] and result.platforms == ["tpu"]
    text = (result.path / "README.md").read_text()
    assert (
        'load_dataset("./jax_stablehlo_pairs.py", "matrix", trust_remote_code=True,' in text
        and 'platform="tpu")' in text
    )
    assert "Configs lowered for TPU are named `<config>-<platform>`" in text


def test_bad_platforms_fail_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown platforms \['xpu'\]; valid platforms: cpu, cuda, rocm, tpu"):
        hub.stage(tmp_path / "out", ["matrix"], platforms="cpu,xpu")
    with pytest.raises(ValueError, match="with_optimized_hlo needs the platform's compiler: 'tpu'"):
        hub.stage(tmp_path / "out", ["matrix"], platforms=["cpu", "tpu"], with_optimized_hlo=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stage", "--configs", "matrix", "--platforms", "tpu,gpu", "--output-dir", str(tmp_path / "out")])
    assert (
        exit_.value.code == 2
        and "unknown platforms ['gpu']; valid platforms: cpu, cuda, rocm, tpu" in capsys.readouterr().err
    )


# ---------------------------------------------------------------------------- upload


def fake_api(tags=(), remote_readme=None):
    api = mock.create_autospec(HfApi, instance=True)
    refs = []
    for t in tags:
        ref = mock.Mock()
        ref.name = t  # ``name`` is Mock's own keyword, so it is set afterwards
        refs.append(ref)
    api.list_repo_refs.return_value.tags = refs
    api.file_exists.return_value = remote_readme is not None
    api.hf_hub_download.return_value = str(remote_readme)
    api.upload_folder.return_value.oid = "c0ffee" * 6 + "abcd"
    return api


def test_upload_creates_repo_uploads_and_tags_the_version(staged, tmp_path):
    api = fake_api()
    commit = hub.upload(staged.path, "someone/jsp", version="1.0.0", token="hf_x", private=True, api=api)
    assert commit is api.upload_folder.return_value
    assert [c[0] for c in api.method_calls] == [
        "create_repo",
        "list_repo_refs",
        "file_exists",
        "upload_folder",
        "create_tag",
    ]
    api.create_repo.assert_called_once_with("someone/jsp", repo_type="dataset", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "someone/jsp" and kwargs["repo_type"] == "dataset"
    assert Path(kwargs["folder_path"]) == staged.path
    # Only the pushed configs' files (and the plots) may be deleted: other configs stay on the Hub.
    assert sorted(kwargs["delete_patterns"]) == sorted([f"{name}/*" for name in staged.hub_configs()] + ["plots/*"])
    assert "matrix-forward/*" in kwargs["delete_patterns"]
    assert "revision" not in kwargs or kwargs["revision"] in (None, "main")
    api.create_tag.assert_called_once_with(
        "someone/jsp",
        tag="v1.0.0",
        revision=api.upload_folder.return_value.oid,
        repo_type="dataset",
        tag_message=mock.ANY,
    )


def test_upload_of_one_config_keeps_the_others(tmp_path):
    one = hub.stage(tmp_path / "one", ["matrix"], train_size=2, validation_size=1, test_size=0)
    remote = tmp_path / "remote.md"
    remote.write_text(
        "---\nconfigs:\n- config_name: balanced\n  data_files: balanced/*\n  default: true\n"
        "- config_name: matrix\n  data_files: old/*\n"
        "dataset_info:\n- config_name: balanced\n  splits:\n  - name: train\n    num_examples: 7\n---\nold card\n"
    )
    api = fake_api(remote_readme=remote)
    hub.upload(one.path, "someone/jsp", version="1.0.0", token="hf_x", api=api)
    assert api.upload_folder.call_args.kwargs["delete_patterns"] == [
        "matrix/*",
        *(f"matrix-{v}/*" for v in sorted(VIEWS)),
        "plots/*",
    ]
    data = DatasetCard.load(one.path / "README.md").data
    configs = {c["config_name"]: c for c in data.configs}
    assert configs["balanced"] == {"config_name": "balanced", "data_files": "balanced/*", "default": True}  # kept
    assert configs["matrix"]["data_files"][0] == {"split": "train", "path": "matrix/train-*"}  # ours replaces the Hub's
    infos = {i["config_name"]: i for i in data.dataset_info}
    assert infos["balanced"]["splits"] == [{"name": "train", "num_examples": 7}]
    assert {s["name"]: s["num_examples"] for s in infos["matrix"]["splits"]} == {"train": 2, "validation": 1}


def test_released_version_is_never_overwritten(staged):
    api = fake_api(tags=["v1.0.0"])
    with pytest.raises(ValueError, match="already has tag 'v1.0.0': bump the dataset version"):
        hub.upload(staged.path, "someone/jsp", version="1.0.0", token="hf_x", api=api)
    api.upload_folder.assert_not_called()
    api.create_tag.assert_not_called()


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def test_token_from_env_or_login_cache(no_token, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        hub.resolve_token()
    Path(hf_constants.HF_TOKEN_PATH).write_text("hf_from_login_cache")
    assert hub.resolve_token() == "hf_from_login_cache"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hub.resolve_token() == "hf_from_env"


def test_push_without_token_fails_before_any_work(no_token, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["push", "--repo", "someone/jsp", "--configs", "matrix", "--output-dir", str(out)]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    assert not out.exists()


def test_push_never_shows_the_token(monkeypatch, tmp_path, capsys, caplog):
    secret = "hf_" + "s3cr3t" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    api = fake_api()
    api.upload_folder.return_value.commit_url = "https://huggingface.co/datasets/someone/jsp/commit/c0ffee"
    made = []
    monkeypatch.setattr("huggingface_hub.HfApi", lambda **kw: made.append(kw) or api)
    out = tmp_path / "out"
    argv = ["push", "--repo", "someone/jsp", "--private", "--configs", "matrix", "--output-dir", str(out)]
    assert cli.main([*argv, "--train-size", "2", "--validation-size", "1"]) == 0
    assert made == [{"token": secret}]
    api.create_repo.assert_called_once_with("someone/jsp", repo_type="dataset", private=True, exist_ok=True)
    assert api.create_tag.call_args.kwargs["tag"] == f"v{__version__}"
    captured = capsys.readouterr()
    assert f"tagged v{__version__}" in captured.out
    shown = (
        captured.out
        + captured.err
        + caplog.text
        + "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    )
    assert secret not in shown


# ---------------------------------------------------------------------------- the viewer's view


def test_viewer_report_comparison_catches_differences(staged):
    good = {
        "project_importable": False,
        "default_config": "balanced",
        "configs": {
            n: {
                s: {"columns": list(c.features) if n in staged.views else list(COLUMNS), "row_digests": d}
                for s, d in c.row_digests.items()
            }
            for n, c in staged.hub_configs().items()
        },
    }
    assert hub.compare_viewer_report(staged, good) == []
    missing = {**good, "configs": {n: c for n, c in good["configs"].items() if n != "matrix-reverse"}}
    assert any("configs seen by the viewer" in p for p in hub.compare_viewer_report(staged, missing))
    bad = {**good, "project_importable": True, "default_config": "matrix", "configs": dict(good["configs"])}
    rows = list(good["configs"]["matrix"]["train"]["row_digests"])
    rows[3] = "0" * 32
    bad["configs"]["matrix"] = {**good["configs"]["matrix"], "train": {"columns": list(COLUMNS), "row_digests": rows}}
    problems = hub.compare_viewer_report(staged, bad)
    assert any("not isolated" in p for p in problems)
    assert any("default config is 'matrix'" in p for p in problems)
    assert any(p.startswith("matrix/train: rows differ") and "first at 3" in p for p in problems)


def viewer_python() -> Path:
    """A venv with the newest datasets 5.x only (``make check-hub`` makes it); created here if missing."""
    venv = Path(os.environ.get("VIEWER_VENV", ROOT / "build" / "venv-viewer"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "datasets>=5,<6"], check=True, timeout=1200)
    return python


@pytest.mark.slow
def test_newest_datasets_loads_every_config_as_the_builder_made_it(staged, tmp_path):
    python = viewer_python()
    version = subprocess.run(
        [str(python), "-c", "import datasets; print(datasets.__version__)"], capture_output=True, text=True
    )
    assert version.stdout.startswith("5."), version
    assert hub.check_viewer(staged, python) == []
    # The check can fail: a Parquet file whose rows differ from the builder's is caught.

    changed = hub.StageResult(tmp_path / "changed", staged.version, staged.configs)
    shutil.copytree(staged.path, changed.path)
    path = changed.path / "matrix" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    names = table.column("function_name").to_pylist()
    i = table.schema.get_field_index("function_name")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(["renamed", *names[1:]])), path)
    problems = hub.check_viewer(changed, python)
    assert problems and any("matrix/train" in p for p in problems), problems


def test_resample_counts_are_collected_from_forked_workers(tmp_path):
    module = hub.load_builder_module()
    small = {"train_size": 4, "validation_size": 2, "test_size": 0, "rows_per_shard": 2}
    _, one, in_process = hub.build_config(module, "matrix", cache_dir=str(tmp_path / "a"), **small)
    _, two, workers = hub.build_config(module, "matrix", cache_dir=str(tmp_path / "b"), num_proc=2, **small)
    assert in_process == workers and workers["rows"] == 6 and workers["attempts"] >= 6
    assert one["train"].to_list() == two["train"].to_list()


def test_validate_checks_staged_views_against_their_pairs(staged, tmp_path, capsys):
    assert cli.main(["validate", str(staged.path), "--structure-only"]) == 0
    out = capsys.readouterr().out
    assert "view matrix-reverse: 55 rows; each is its pair's reverse row: ok" in out
    assert "view balanced-conversational: 55 rows; each is its pair's conversational row: ok" in out
    changed = tmp_path / "changed"
    shutil.copytree(staged.path, changed)
    path = changed / "matrix-forward" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    completions = table.column("completion").to_pylist()
    i = table.schema.get_field_index("completion")
    cut = completions[1][: len(completions[1]) // 2]  # a truncated IR is caught
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array([completions[0], cut, *completions[2:]])), path)
    assert cli.main(["validate", str(changed), "--structure-only"]) == 1
    out = capsys.readouterr().out
    assert "view matrix-forward: 55 rows; each is its pair's forward row: FAILED" in out
    assert "forward/validation row 1" in out and "differs from its pair's forward row in completion" in out


def test_optimize_view_is_staged_for_builds_with_optimized_hlo(tmp_path):
    result = hub.stage(
        tmp_path / "opt", ["arithmetic"], train_size=3, validation_size=1, with_optimized_hlo=True, views=["optimize"]
    )
    assert sorted(result.hub_configs()) == ["arithmetic", "arithmetic-optimize"]
    pairs = read_rows(result.path / "arithmetic")
    rows = read_rows(result.path / "arithmetic-optimize")
    assert [r["completion"] for r in rows["train"]] == [r["optimized_hlo"] for r in pairs["train"]]
    assert all(r["completion"].startswith("HloModule") for r in rows["train"])
    text = (result.path / "README.md").read_text()
    assert "| `arithmetic-optimize` | StableHLO -> XLA's optimized HLO" in text
    assert "without compiling: no optimized HLO" not in text


def test_baselines_reach_only_the_card_of_their_version(tmp_path):
    from generator.tools.hub.card import load_baselines

    path = tmp_path / "baselines.json"
    assert load_baselines("3.0.0", path) is None  # no file: no table
    report = {
        "rows": 4,
        "layers": {"parses": {"rate": 0.5, "denominator": 4}, "agrees": {"rate": 1.0, "denominator": 0}},
    }
    path.write_text(
        json.dumps(
            {
                "version": "3.0.0",
                "measured_on": "x",
                "command": "y",
                "note": "z",
                "reports": [{"config": "balanced", "task": "forward", "baseline": "copy", "report": report}],
            }
        )
    )
    assert load_baselines("9.9.9", path) is None
    (table,) = load_baselines("3.0.0", path)["tasks"]
    assert table["layers"] == ["parses", "agrees"]
    assert table["rows"] == [{"config": "balanced", "baseline": "copy", "rows": 4, "layers": {"parses": "50.0% of 4"}}]


def test_diversity_reaches_only_the_card_of_its_version(tmp_path):
    from generator.tools.diversity import model_diversity
    from generator.tools.hub.card import load_diversity

    path = tmp_path / "diversity.json"
    assert load_diversity("3.1.0", path) is None  # no file: no table
    report = model_diversity(["transformer"], draws=1_200)
    path.write_text(json.dumps({"version": "3.1.0", "categories": report}))
    assert load_diversity("9.9.9", path) is None
    (row,) = load_diversity("3.1.0", path)
    calls = report["transformer"]["call_sequences"]
    assert row["category"] == "transformer" and [p[0] for p in row["curve"]] == ["1,000", "1,200"]
    assert row["curve"][-1][1] == f"{calls[1200]:,}" and row["new_in_last"].endswith("%")


def test_costs_reach_only_the_card_of_their_version(tmp_path):
    import jinja2

    from generator.tools.hub.card import CARD_TEMPLATE, load_costs

    path = tmp_path / "costs.json"
    assert load_costs("3.1.0", path) is None  # not measured: no table
    cost = {
        "config": "balanced",
        "measured_rows": 20000,
        "pairs_per_second_per_core": 6.5,
        "ir_tokens_per_second_per_core": 3210.4,
        "bytes_per_row": 6712.0,
        "core_hours_per_million": 42.74,
        "gb_per_million": 6.712,
        "hours_on_64_cores": 0.668,
        "hours_on_512_cores": 0.0835,
    }
    data = {"version": "3.1.0", "measured_on": "2026-12-07", "machine": "2 cores", "command": "make bench-scaling"}
    path.write_text(json.dumps({**data, "costs": [cost]}))
    assert load_costs("9.9.9", path) is None
    costs = load_costs("3.1.0", path)
    # the card's section, rendered as the card renders it
    text = CARD_TEMPLATE.read_text()
    section = text[text.index("## What a million rows costs") : text.index("## Limitations")]
    shown = jinja2.Template(section).render(costs=costs)
    assert "| `balanced` | 6.50 | 3,210 | 6,712 | 42.7 | 6.7 | 0.67 | 0.08 | 20,000 rows |" in shown
    assert "Measured with `make bench-scaling` on 2026-12-07 (2 cores)" in shown
    assert "Ray runner" not in shown  # no Ray build of those rows, nothing said of one
    assert "was not measured" in jinja2.Template(section).render(costs=None)
    costs["costs"] = [{**cost, "ray_pairs_per_second_per_core": 7.15}]
    shown = jinja2.Template(section).render(costs=costs)
    assert (
        "built the same 20,000 `balanced` rows on a local two-node cluster at 7.15 pairs/s per core (1.10 times"
        in shown
    )


# ---------------------------------------------------------------------------- large pushes (upload in parts)


def test_large_push_threshold_and_parts(monkeypatch):
    from generator.tools.hub import uploading

    small = [hub.StagedFile(f"matrix/train-{i:05d}-of-00010.parquet", 1000) for i in range(10)]
    assert not hub.is_large_push(small)
    assert hub.is_large_push([hub.StagedFile("matrix/train-00000-of-00001.parquet", hub.LARGE_PUSH_BYTES + 1)])
    assert hub.is_large_push([hub.StagedFile(f"m/{i}.parquet", 1) for i in range(hub.LARGE_PUSH_FILES + 1)])
    monkeypatch.setattr(uploading, "PART_FILES", 4)
    monkeypatch.setattr(uploading, "PART_BYTES", 2500)
    assert [len(p) for p in hub.push_parts(small)] == [2, 2, 2, 2, 2]  # bytes bound
    monkeypatch.setattr(uploading, "PART_BYTES", 10**9)
    assert [len(p) for p in hub.push_parts(small)] == [4, 4, 2]  # files bound
    assert [f for p in hub.push_parts(small) for f in p] == small  # every file once, in order
    big = hub.StagedFile("matrix/huge.parquet", 10**10)
    assert [len(p) for p in hub.push_parts([big, *small[:1]])] == [1, 1]


def _large_push(monkeypatch, part_files=4):
    from generator.tools.hub import uploading

    monkeypatch.setattr(uploading, "LARGE_PUSH_FILES", 5)
    monkeypatch.setattr(uploading, "PART_FILES", part_files)


def _commit_api(remote=(), fail_at=None):
    """A fake ``HfApi`` whose ``create_commit`` returns a new oid each time (and fails at call ``fail_at``)."""
    api = fake_api()
    api.list_repo_tree.return_value = list(remote)

    def create_commit(*args, **kwargs):
        n = api.create_commit.call_count
        if n == fail_at:
            raise ConnectionError("connection reset")
        return mock.Mock(oid=f"{n:040x}")

    api.create_commit.side_effect = create_commit
    return api


def _ops(call, kind):
    return [op.path_in_repo for op in call.kwargs["operations"] if isinstance(op, kind)]


def test_large_push_goes_up_in_parts_data_first_card_and_deletions_last(staged, monkeypatch):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.hf_api import RepoFile

    files = hub.staged_files(staged.path)
    assert not hub.is_large_push(files)  # at the real thresholds this staging is one commit
    _large_push(monkeypatch)
    remote = [
        RepoFile(path="matrix/train-00000-of-00009.parquet", size=5, oid="1" * 40),  # stale: an older shard count
        RepoFile(path="plots/old.png", size=5, oid="2" * 40),
        RepoFile(path="other/train-00000-of-00001.parquet", size=5, oid="3" * 40),  # another config: kept
    ]
    api = _commit_api(remote)
    logs: list[str] = []
    commit = hub.upload(staged.path, "someone/jsp", version="1.0.0", token="hf_x", api=api, log=logs.append)

    api.upload_folder.assert_not_called()
    names = [c[0] for c in api.method_calls]
    assert names[:4] == ["create_repo", "list_repo_refs", "file_exists", "list_repo_tree"]
    assert names[-1] == "create_tag" and set(names[4:-1]) == {"create_commit"}
    *parts, last = api.create_commit.call_args_list
    data = [f.path for f in files if f.path != "README.md" and not f.path.startswith("plots/")]
    assert [p for c in parts for p in _ops(c, CommitOperationAdd)] == data  # every data file once, in order
    assert all(len(c.kwargs["operations"]) <= 4 and not _ops(c, CommitOperationDelete) for c in parts)
    assert all(c.kwargs["repo_type"] == "dataset" and c.args == ("someone/jsp",) for c in parts + [last])
    assert "part 1 of" in parts[0].kwargs["commit_message"]
    # The last commit switches the release over: card, plots and stale files of the pushed configs only.
    assert _ops(last, CommitOperationDelete) == ["matrix/train-00000-of-00009.parquet", "plots/old.png"]
    assert _ops(last, CommitOperationAdd) == ["README.md", *(f.path for f in files if f.path.startswith("plots/"))]
    assert last.kwargs["commit_message"].startswith("Release v1.0.0")
    assert commit.oid == f"{len(parts) + 1:040x}"  # the tag names the last commit
    api.create_tag.assert_called_once_with(
        "someone/jsp", tag="v1.0.0", revision=commit.oid, repo_type="dataset", tag_message=mock.ANY
    )
    assert f"0 of {len(data)} data files already on the Hub" in logs[0]


def test_interrupted_large_push_resumes_with_what_the_hub_holds(staged, monkeypatch):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.hf_api import RepoFile

    _large_push(monkeypatch, part_files=3)
    api = _commit_api(fail_at=3)  # parts 1 and 2 are committed, then the connection drops
    with pytest.raises(ConnectionError):
        hub.upload(staged.path, "someone/jsp", version="1.0.0", token="hf_x", api=api, log=lambda m: None)
    api.create_tag.assert_not_called()  # no tag on half a release
    committed = [p for c in api.create_commit.call_args_list[:2] for p in _ops(c, CommitOperationAdd)]
    assert len(committed) == 6

    def on_hub(path, *, lfs=True, content=None):
        data = content if content is not None else (staged.path / path).read_bytes()
        if lfs:  # as the Hub lists an LFS (or Xet) file: its SHA-256
            meta = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            return RepoFile(path=path, size=len(data), oid="0" * 40, lfs=meta)
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # a small file in git: its blob id
        return RepoFile(path=path, size=len(data), oid=blob)

    remote = [on_hub(p, lfs=i % 2 == 0) for i, p in enumerate(committed[:-1])]
    size = (staged.path / committed[-1]).stat().st_size
    remote.append(on_hub(committed[-1], content=b"x" * size))  # same name and size, other bytes: uploaded again
    again = _commit_api(remote)
    logs: list[str] = []
    commit = hub.upload(staged.path, "someone/jsp", version="1.0.0", token="hf_x", api=again, log=logs.append)

    *parts, last = again.create_commit.call_args_list
    uploaded = [p for c in parts for p in _ops(c, CommitOperationAdd)]
    files = hub.staged_files(staged.path)
    data = [f.path for f in files if f.path != "README.md" and not f.path.startswith("plots/")]
    assert uploaded == [committed[-1], *data[6:]]  # only what the Hub does not hold yet
    assert "README.md" in _ops(last, CommitOperationAdd)
    again.create_tag.assert_called_once_with(
        "someone/jsp", tag="v1.0.0", revision=commit.oid, repo_type="dataset", tag_message=mock.ANY
    )
    assert f"5 of {len(data)} data files already on the Hub" in logs[0]
