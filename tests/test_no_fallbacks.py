"""The harness trusts its own contract: no ``getattr``/``hasattr`` fallbacks for fields it declares.

``ctx.experiment.compute`` is a required field of every :class:`Experiment` and ``ctx.build`` a field
of every :class:`StageContext`, so ``getattr(ctx.experiment, "compute", None) or ComputeOptions()``
only ever served a test fake that lacked the field, and it hid the fake's gap from every reader.
Tests build real contexts instead (``tests.fakes.make_context``, ``make_experiment``). An optional
capability is a ``runtime_checkable`` Protocol, tested with ``isinstance``, never with ``hasattr``
on its method's name: the capability then has one name, one signature and one docstring.

The scan is of source text (AST), over the core and the built-ins.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness._core import contracts

ROOT = Path(__file__).resolve().parents[1]
TREES = ("harness", "harness_builtins")

# the optional capabilities a component may have (each documented as "Optional" in harness._core.contracts)
CAPABILITIES = (contracts.ExplainedJudge, contracts.RecordedFeedback, contracts.WithDiagnostics, contracts.Offloadable,
                contracts.WithMemberScores, contracts.SamplingOptimizer, contracts.DescribedEvaluator,
                contracts.PlottingComponent, contracts.NotingComponent, contracts.ExplainingJudge,
                contracts.GradingJudge)
# names whose getattr/hasattr would check the harness's own objects: the stage context and the experiment
OWN = {"ctx", "experiment"}


def capability_members() -> set[str]:
    """The methods and attributes that make up the optional capabilities (``member_scores``, ``diagnostics``, …)."""
    names = set()
    for protocol in CAPABILITIES:
        names |= {n for n in vars(protocol) if not n.startswith("_")} | set(protocol.__annotations__)
    return names


def dotted_names(node: ast.expr) -> set[str]:
    """Every name along an attribute chain: ``self.ctx.experiment`` → {self, ctx, experiment}."""
    names = set()
    while isinstance(node, ast.Attribute):
        names.add(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.add(node.id)
    return names


def fallback(call: ast.Call, members: set[str]) -> bool:
    """Whether ``call`` is a ``getattr``/``hasattr`` that doubts the harness's own contract."""
    if not (isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr") and len(call.args) >= 2):
        return False
    receiver, attr = call.args[0], call.args[1]
    name = attr.value if isinstance(attr, ast.Constant) and isinstance(attr.value, str) else None
    return bool(dotted_names(receiver) & OWN) or name == "compute" or name in members


def fallbacks(source: str, members: set[str]) -> list[str]:
    """The offending calls in ``source``, as written."""
    return [ast.get_source_segment(source, node) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and fallback(node, members)]


def found_in_tree() -> list[tuple[str, str]]:
    members = capability_members()
    return [(str(path.relative_to(ROOT)), call) for tree in TREES for path in sorted((ROOT / tree).rglob("*.py"))
            for call in fallbacks(path.read_text(encoding="utf-8"), members)]


@pytest.mark.parametrize("source", [
    'compute = getattr(ctx.experiment, "compute", None) or ComputeOptions()',
    'if getattr(ctx, "build", None) is None: pass',
    'if hasattr(self.ctx, "periodic_evaluation"): pass',
    'seed = getattr(experiment, "seed", 0)',
    'threads = getattr(options, "compute", None)',
    'if hasattr(reward, "member_scores"): pass',
    'stats = getattr(judge, "diagnostics", lambda: {})()',
])
def test_the_scan_finds_a_fallback(source):
    assert fallbacks(source, capability_members()) != []


@pytest.mark.parametrize("source", [
    "compute = ctx.experiment.compute",
    'pad = getattr(config, "pad_token_id", None)',
    'table = getattr(self.options, name)',
    "if isinstance(reward, WithMemberScores): pass",
])
def test_the_scan_leaves_other_getattrs_alone(source):
    assert fallbacks(source, capability_members()) == []


def test_every_capability_is_checked_with_isinstance():
    for protocol in CAPABILITIES:
        assert isinstance(object(), protocol) is False  # a TypeError here: the Protocol is not runtime_checkable
    assert {"member_scores", "diagnostics", "offloadable_modules", "explainer", "grade"} <= capability_members()


def test_the_core_and_the_built_ins_trust_their_own_contract():
    assert list(found_in_tree()) == []
