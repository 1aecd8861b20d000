"""The core's import graph: no circle among ``harness/`` modules and no ``harness/`` → ``harness_builtins/`` import.

Every import counts — module level, inside functions and under ``TYPE_CHECKING`` — because a
circle that only a lazy import keeps from crashing is still two modules that cannot be read apart.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """{module: modules it imports}, for every module of ``package`` (a top-level directory of the repo)."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.add(node.module)
                # ``from harness import config`` imports the module harness.config
                targets.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        graph[name] = targets
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


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"os"}}) is None


def test_the_core_has_no_import_circle():
    graph = import_graph("harness")
    assert "harness._core.config" in graph and graph["harness._core.cli"]  # the walk found the core
    assert find_cycle(graph) is None


def test_the_core_never_imports_plugins():
    offenders = {m: sorted(t for t in targets if t == "harness_builtins" or t.startswith("harness_builtins."))
                 for m, targets in import_graph("harness").items()}
    assert {m: t for m, t in offenders.items() if t} == {}



def test_the_built_in_plugins_have_no_import_circle():
    graph = import_graph("harness_builtins")
    assert "harness_builtins.optimizers.ppo" in graph and "harness_builtins.judges.client" in graph
    assert find_cycle(graph) is None


def test_online_optimizers_stand_on_the_toolkit_not_on_each_other():
    graph = import_graph("harness_builtins")
    for algo in ("ppo", "a2c", "grpo", "rloo"):
        siblings = {t for t in graph[f"harness_builtins.optimizers.{algo}"] if t.startswith("harness_builtins.")}
        assert siblings == set(), (algo, siblings)
    assert not any(t.startswith("harness_builtins.") for t in graph["harness_builtins.optimizers.best_of_n"])  # the core's seams only
    assert not any(t.startswith("harness_builtins.rewards") for t in graph["harness_builtins.evaluators.win_rate"])


def test_no_core_or_plugin_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for d in ("harness", "harness_builtins") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_feedback_records_come_from_the_core_not_from_another_plugin():
    graph = import_graph("harness_builtins")
    for module in ("harness_builtins.worlds.hf_data.records", "harness_builtins.worlds.hf_data.world", "harness_builtins.stages.reward_model",
                   "harness_builtins.optimizers.dpo", "harness_builtins.rewards.llm_judge"):
        assert not {t for t in graph[module] if t.startswith(("harness_builtins.feedback", "harness_builtins.judges"))}, module
