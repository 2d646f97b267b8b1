"""The package's layout: imports flow one way, the cache key follows only what decides rows,
and text-only paths import no JAX."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import generator

PACKAGE = Path(generator.__file__).resolve().parent
LAYERS = ("core", "runtime", "tools")  # a module may import from its own layer and the ones before it


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """Every generator module -> the generator modules it imports, anywhere in its body
    (inside functions and ``TYPE_CHECKING`` blocks too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                # ``from . import x`` imports the submodule x when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t.startswith("generator") and t != name:
                    graph[name].add(t)
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_imports_have_no_cycles():
    graph = import_graph()
    # the package itself is the public facade: it may load anything lazily, and nothing imports it
    assert not [m for m, deps in graph.items() if "generator" in deps], "modules importing the package facade"
    visiting, done, cycles = set(), set(), []

    def visit(m, path):
        visiting.add(m)
        for d in sorted(graph[m]):
            if d in visiting:
                cycles.append(path[path.index(d) :] + [d] if d in path else [m, d])
            elif d not in done:
                visit(d, path + [d])
        visiting.discard(m)
        done.add(m)

    for m in sorted(graph):
        if m not in done:
            visit(m, [m])
    assert cycles == []


def test_layers_import_downward_only():
    upward = [
        f"{m} -> {d}"
        for m, deps in import_graph().items()
        for d in deps
        if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)
    ]
    assert upward == []


def test_nothing_reads_from_tests_at_run_time():
    """No string in the package names a path through ``tests/`` (a source checkout's folder)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" not in node.value:
                if "tests" in node.value.replace("\\", "/").split("/"):
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.value!r}")
    assert offenders == []


def test_every_public_name_resolves():
    import generator.runtime.shards
    import generator.tools.api

    assert {name: getattr(generator, name) is not None for name in generator.__all__} == dict.fromkeys(
        generator.__all__, True
    )
    assert generator.reproduce_ir is generator.runtime.shards.reproduce_ir
    assert generator.SynthesisPipeline is generator.tools.api.SynthesisPipeline


def _fingerprint_of(root: Path) -> str:
    code = "import generator; print(generator.code_fingerprint())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def package_copy(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "generator", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    "edited, changes_rows",
    [
        ("tools/cli.py", False),
        ("tools/validate/__init__.py", False),
        ("tools/hub/__init__.py", False),
        ("tools/stats.py", False),
        ("runtime/forksafe.py", False),
        ("core/sampler.py", True),
        ("core/ops/arithmetic.py", True),
        ("version.py", True),
    ],
)
def test_cache_key_follows_only_what_decides_rows(package_copy, edited, changes_rows):
    before = _fingerprint_of(package_copy)
    path = package_copy / "generator" / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    assert (_fingerprint_of(package_copy) != before) == changes_rows


def test_cache_key_follows_the_jax_version(monkeypatch):
    import generator.core as core

    before = core.fingerprint()
    real = core.version
    monkeypatch.setattr(core, "version", lambda name: "9.9.9" if name == "jax" else real(name))
    assert core.fingerprint() != before


LIGHT = """
import json, sys
from generator.tools import cli
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "jax": sorted(m for m in sys.modules if m == "jax" or m.startswith("jax."))}))
"""


@pytest.mark.parametrize("command", [["validate", "--structure-only"], ["stats"]])
def test_text_only_paths_import_no_jax(tmp_path, command):
    from tests.rowkit import make_rows, write_jsonl

    folder = write_jsonl(make_rows(train=3, validation=1), tmp_path / "rows")
    done = subprocess.run(
        [sys.executable, "-c", LIGHT, command[0], str(folder), *command[1:]], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "jax": []}


def test_the_project_speaks_only_of_itself():
    """Code, tests and docs cite no tracker issues and no documents outside the repository."""
    import re

    root = PACKAGE.parent
    pattern = re.compile(r"\bissue\s*#?\d+|\(issue[:)]|\bthe issue\b|DESIGN\.md|STYLE\.md", re.I)
    files = [
        p
        for folder in ("generator", "tests", "benchmarks", "examples", "dataset_card")
        for p in (root / folder).rglob("*")
        if p.suffix in (".py", ".md") and p.name != "test_layout.py"
    ]
    files += [root / name for name in ("README.md", "CHANGELOG.md", "Makefile", "jax_stablehlo_pairs.py")]
    found = [
        f"{p.relative_to(root)}:{i}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
