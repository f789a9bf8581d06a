"""The package's layers: every import goes down (or sideways within a layer), and no import cycle exists.

The graph is read from the source with ``ast``: every ``import`` statement counts, the ones inside
functions included, and the folders are mapped to module names the way ``pyproject.toml``'s
``package-dir`` installs them. A layer may import its own modules and the layers below it only.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: the tests below ask for it through require_module
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: dict[str, tuple[str, ...]] = {
    "ground": ("medinjection.core", "medinjection", "medinjection.cards"),
    "data": ("medinjection.dataset_builders", "medinjection.quality", "medinjection.cards.dataset_card"),
    "model": (
        "medinjection.models",
        "medinjection.training",
        "medinjection.evaluation",
        "medinjection.cards.model_card",
    ),
    "entry": (
        "medinjection.publish",
        "medinjection.cli",
        "medinjection.demo",
        "medinjection.recipes",
        "medinjection.trl_configs",
    ),
}
RANK = {name: rank for rank, name in enumerate(LAYERS)}
EXACT_ONLY = {"medinjection", "medinjection.cards"}  # package roots: their own __init__ only


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """module name -> file, for every module ``pyproject.toml`` installs."""
    if tomllib is None:
        from conftest import require_module

        require_module("tomllib", "reading pyproject.toml needs Python 3.11's tomllib")
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = settings["package-dir"]
    modules = {}
    for package in settings["packages"]:
        top = max((p for p in folders if package == p or package.startswith(p + ".")), key=len)
        folder = (
            root / folders[top] / Path(*package[len(top) :].strip(".").split(".") if package != top else ())
        )
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (an import of a package's child counts as the child)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                found = resolve(target)
                # importing a child loads its parent package first: not an edge of the child's own making
                if found and found != name and not name.startswith(found + "."):
                    edges.add(found)
                    break
        graph[name] = edges
    return graph


def layer_of(module: str) -> str:
    best = ("", "")
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or (prefix not in EXACT_ONLY and module.startswith(prefix + "."))
            if matches and len(prefix) > len(best[1]):
                best = (layer, prefix)
    if not best[0]:
        raise AssertionError(f"{module}: in no layer of tests/test_layers.py LAYERS; give it one")
    return best[0]


def test_the_graph_sees_the_installed_package():
    modules = project_modules()
    for name in ("medinjection.core.layout", "medinjection.dataset_builders.mixes", "medinjection.cli"):
        assert name in modules
    graph = import_graph(modules)
    assert "medinjection.core.layout" in graph["medinjection.dataset_builders.mixes"]
    # an import inside a function counts (the CLI imports the build lazily, for start-up time)
    assert "medinjection.dataset_builders.build" in graph["medinjection.cli"]


def test_no_import_cycle():
    graph = import_graph(project_modules())
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail("import cycle: " + " -> ".join(err.args[1]))


def test_every_import_goes_down_or_sideways():
    graph = import_graph(project_modules())
    upward = sorted(
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if RANK[layer_of(target)] > RANK[layer_of(module)]
    )
    assert not upward, "imports from a higher layer:\n  " + "\n  ".join(upward)


def test_the_ground_imports_nothing_else_of_the_project():
    graph = import_graph(project_modules())
    ground = {m for m in graph if layer_of(m) == "ground"}
    outside = sorted(f"{m} imports {t}" for m in ground for t in graph[m] if t not in ground)
    assert not outside, "\n".join(outside)


def test_a_cycle_and_an_upward_import_are_caught(tmp_path):
    """The checks above are not vacuous: a planted cycle and a planted upward import are found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from medinjection.pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from medinjection.pkg.a import f\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackages = ["medinjection.pkg"]\n'
        '[tool.setuptools.package-dir]\n"medinjection.pkg" = "pkg"\n'
    )
    graph = import_graph(project_modules(tmp_path))
    assert graph == {
        "medinjection.pkg": set(),
        "medinjection.pkg.a": {"medinjection.pkg.b"},
        "medinjection.pkg.b": {"medinjection.pkg.a"},
    }
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())
    assert RANK[layer_of("medinjection.cli")] > RANK[layer_of("medinjection.core.layout")]
