"""README and docs/ say what the code does: commands, flags, configs, fields and links exist."""

from __future__ import annotations

import dataclasses
import re

import pytest

from generator.core.config import BuildOptions
from generator.tools import cli

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
COMMAND = re.compile(r"python -m generator ([a-z]+)((?:[^`\n]|\\\n)*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _subparsers() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def _commands():
    for path in DOCS:
        for m in COMMAND.finditer(path.read_text()):
            yield path.relative_to(ROOT), m.group(1), FLAG.findall(m.group(2).split("#")[0])


def test_every_documented_command_and_flag_exists():
    subparsers = _subparsers()
    seen = 0
    for path, command, flags in _commands():
        assert command in subparsers, f"{path}: python -m generator {command}: no such command"
        known = {o for a in subparsers[command]._actions for o in a.option_strings}
        for flag in flags:
            assert flag in known, f"{path}: python -m generator {command} {flag}: no such flag"
        seen += 1
    assert seen >= 20  # the docs show the commands; this test reads them


def test_every_documented_make_target_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    for path in DOCS:
        for target in re.findall(r"(?:^|`)make ([a-z][a-z-]*)", path.read_text(), re.M):
            assert target in targets, f"{path.relative_to(ROOT)}: make {target}: no such target"


def test_readme_fields_are_the_builders_fields():
    text = (ROOT / "README.md").read_text()
    table = text.split("| field | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`(\w+)`", cell)}
    assert documented == {f.name for f in dataclasses.fields(BuildOptions)}


def test_readme_cost_table_is_the_cards():
    """README's "What a million rows costs" shows the table the card renders from
    dataset_card/costs.json for this version (or says it was not measured)."""
    import jinja2

    from generator import __version__
    from generator.tools.hub.card import CARD_TEMPLATE, load_costs

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## What a million rows costs") :]
    section = section[: section.index("\n## ", 1)]
    costs = load_costs(__version__)
    if costs is None:
        assert "not measured" in section
        return
    template = CARD_TEMPLATE.read_text()
    card = template[template.index("## What a million rows costs") : template.index("## Limitations")]
    table = [line for line in jinja2.Template(card).render(costs=costs).splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(costs["costs"])
    assert all(line in section for line in table), (
        "README's cost table differs from the card's (dataset_card/costs.json)"
    )


def test_documented_links_resolve():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)}: link to {target} resolves to nothing"


def _documented_configs() -> set[str]:
    """Config names the docs load or pass to ``--config``/``--configs`` (placeholders such as ``C`` aside)."""
    text = "\n".join(p.read_text() for p in DOCS)
    names = set(re.findall(r'load_dataset\(\s*"\./jax_stablehlo_pairs\.py",\s*"(\w+)"', text))
    for words in re.findall(r"--configs? ((?:[A-Za-z_]+ ?)+)", text):
        names.update(w for w in words.split() if not w.isupper())
    return names


@pytest.mark.parametrize("config", sorted(_documented_configs()))
def test_each_documented_config_builds_a_row(config, builder_module):
    from generator.runtime.shards import generate_shard

    names = {c.name for c in builder_module.JaxStablehloPairs.BUILDER_CONFIGS}
    assert config in names
    cfg = next(c for c in builder_module.JaxStablehloPairs.BUILDER_CONFIGS if c.name == config)
    cfg = dataclasses.replace(cfg, train_size=1, validation_size=0, test_size=0)
    (task,) = cfg.shard_plan()["train"]
    rows = list(generate_shard(task))
    assert len(rows) == 1 and rows[0]["category"] in cfg.categories
