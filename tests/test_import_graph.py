"""The import graph of the core, the built-ins and the tutorial plugin: no circle anywhere, and
the ties that are allowed.

One graph over all of them, so a circle that runs through both trees is seen too. Every import
counts — absolute and relative, module level, inside functions and under ``TYPE_CHECKING`` —
because a circle that only a lazy import keeps from crashing is still two modules that cannot be
read apart. ``from X import name`` counts as importing ``X.name`` when that is a module.

Allowed ties: the core never imports a built-in; a built-in imports only built-ins of its own
family package (``harness_builtins.<family>``), and a third-party plugin (the tutorial's) none at
all — what two families share is a contract, and a contract lives in the core (``harness.api``).
"""
from __future__ import annotations

import ast
from importlib.util import resolve_name
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = (ROOT / "harness", ROOT / "harness_builtins", ROOT / "tests" / "tutorial_plugin" / "harness_tutorial")
FAMILIES = ("evaluators", "feedback", "judges", "loggers", "optimizers", "rewards", "stages", "worlds")


def _module_name(path: Path, tree: Path) -> str:
    parts = path.relative_to(tree.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, package: str, modules: dict[str, Path]) -> set[str]:
    """The modules one file imports; relative imports resolved against its ``package``."""
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            targets.add(base)
            # ``from harness import api`` and ``from . import world`` import the modules themselves
            targets.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return targets


def import_graph(*trees: Path) -> dict[str, set[str]]:
    """{module: modules it imports}, for every module under the package directories ``trees``."""
    modules = {_module_name(p, tree): p for tree in trees for p in tree.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # a package's __init__ is the package itself: ``from .x import y`` there means name.x
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(ast.parse(path.read_text(encoding="utf-8")), package, modules)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the graph's own modules, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(t for t in graph[node] if t in graph and t != node):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _builtins(targets: set[str]) -> set[str]:
    return {t for t in targets if t == "harness_builtins" or t.startswith("harness_builtins.")}


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "harness_builtins" else None


GRAPH = import_graph(*TREES)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"os"}}) is None


def test_the_cycle_finder_sees_a_circle_of_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import f\n")
    (package / "a.py").write_text("def f():\n    from .sub import g\n")
    (package / "sub" / "__init__.py").write_text("from . import b\n")
    (package / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\n")
    graph = import_graph(package)
    assert graph["pkg"] >= {"pkg.a"} and graph["pkg.sub"] >= {"pkg.sub.b"} and graph["pkg.sub.b"] >= {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.a"]


def test_the_graph_covers_the_core_the_built_ins_and_the_tutorial_plugin():
    assert {"harness._core.config", "harness._online.rollout", "harness_builtins.optimizers.ppo",
            "harness_builtins.judges.client", "harness_builtins.worlds.embedded.world", "harness_tutorial.rloo"} <= set(GRAPH)
    assert "harness_builtins.worlds.embedded.world" in GRAPH["harness_builtins.worlds.embedded"]  # relative, resolved


def test_there_is_no_import_circle():
    assert find_cycle(GRAPH) is None


def test_the_core_never_imports_plugins():
    offenders = {m: sorted(_builtins(targets)) for m, targets in GRAPH.items() if m.startswith("harness.")}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_a_built_in_imports_only_built_ins_of_its_own_family():
    assert set(FAMILIES) == {p.name for p in (ROOT / "harness_builtins").iterdir() if (p / "__init__.py").exists()}
    crossing = {(m, t) for m, targets in GRAPH.items() if (family := _family(m))
                for t in _builtins(targets) if _family(t) != family}
    assert crossing == set()


def test_the_tutorial_plugin_imports_no_built_in():
    tutorial = {m: _builtins(t) for m, t in GRAPH.items() if m.split(".")[0] == "harness_tutorial"}
    assert tutorial and not any(tutorial.values()), tutorial


def test_online_optimizers_stand_on_the_toolkit_not_on_each_other():
    for algo in ("ppo", "a2c", "grpo", "rloo"):
        siblings = _builtins(GRAPH[f"harness_builtins.optimizers.{algo}"])
        assert siblings == set(), (algo, siblings)
    assert not _builtins(GRAPH["harness_builtins.optimizers.best_of_n"])  # the core's seams only
    assert not any(t.startswith("harness_builtins.rewards") for t in GRAPH["harness_builtins.evaluators.win_rate"])


def test_no_core_or_plugin_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for d in ("harness", "harness_builtins") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_feedback_records_come_from_the_core_not_from_another_plugin():
    for module in ("harness_builtins.worlds.hf_data.records", "harness_builtins.worlds.hf_data.world", "harness_builtins.stages.reward_model",
                   "harness_builtins.optimizers.dpo", "harness_builtins.rewards.llm_judge"):
        assert not {t for t in GRAPH[module] if t.startswith(("harness_builtins.feedback", "harness_builtins.judges"))}, module
