"""Plugins import only the public API: ``harness`` (hookimpl) and ``harness.api``, never the private core.

The built-ins are plugins like any other (pytest's own plugins use ``pytest``'s public names too),
so they are held to the same surface a third-party author gets; so is the tutorial plugin the
docs build. Every import counts: module level, inside functions, under ``TYPE_CHECKING``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harness.api

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"harness", "harness.api"}
PLUGIN_TREES = ("harness_builtins", "tests/tutorial_plugin", "tests/example_plugin")


def harness_imports(path: Path) -> set[str]:
    """The harness modules ``path`` imports (``from harness import x`` counts as ``harness``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {m for m in found if m == "harness" or m.startswith("harness.")}


@pytest.mark.parametrize("tree", PLUGIN_TREES)
def test_plugins_import_only_the_public_api(tree):
    files = sorted((ROOT / tree).rglob("*.py"))
    assert files
    private = {str(p.relative_to(ROOT)): sorted(m - PUBLIC) for p in files if (m := harness_imports(p)) - PUBLIC}
    assert private == {}


def test_the_root_package_names_hookimpl_the_version_and_the_python_api():
    import harness

    assert set(harness.__all__) == {"hookimpl", "__version__", "run", "load_run", "load_runs", "compare", "RunResult",
                                    "ComparisonResult"}  # the Python API for users: README "From Python"
    assert harness.hookimpl is harness.api.hookimpl


def test_every_public_name_exists_and_is_listed_once():
    names = harness.api.__all__
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(harness.api, n)]
    assert missing == []


def test_the_public_names_are_documented_in_the_plugin_guide():
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    undocumented = [n for n in harness.api.__all__ if f"`{n}" not in guide]
    assert undocumented == []


def test_no_built_in_lives_under_a_collidable_top_level_name():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not (ROOT / "plugins").exists()
    assert all(p.split("*")[0].startswith("harness") for p in packages), packages
