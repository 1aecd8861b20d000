"""What ``register_judges`` components implement: the judge, and what some judges can do besides comparing.

A judge decides which of two responses is better: the world's gold judge, the run's reward
source, an LLM. The win-rate evaluator builds one by name and compares the policy's responses
with π_SFT's through it; the ``llm_judge`` reward source builds one that can grade.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Protocol, Sequence, runtime_checkable

from harness._core.contracts.context import StageContext
from harness._core.contracts.worlds import ExplainedJudge
from harness._core.options import Options
from harness._core.records import Prompt

# (prompt, a, b) triples -> 1.0 if a is better, 0.0 if b is, 0.5 for a tie
CompareMany = Callable[[Sequence[tuple[Prompt, str, str]]], list[float]]


class Judge(Protocol):
    """Decides which of two responses to a prompt is better (registered with ``register_judges``).

    Built from its ``Options`` (the evaluator's ``[evaluation.<evaluator>.<judge>]`` table), then
    bound to a run. Optional capabilities: :class:`ExplainingJudge` (the win rate then reports
    ``decided_by`` and a length-controlled rate), :class:`GradingJudge` (it grades one response at
    a time, so the ``llm_judge`` reward source can use it) and
    :class:`~harness._core.contracts.rewards.WithDiagnostics` (counters reported beside the
    verdicts as ``judge_stats``).
    """

    Options: ClassVar[type[Options]]
    name: str  # how results name it: "gold", "reward", "llm:<model>"

    def bind(self, ctx: StageContext) -> CompareMany:
        """This run's comparisons; raise :class:`~harness._core.errors.HarnessError` if the run cannot have this judge."""


@runtime_checkable
class ExplainingJudge(Protocol):
    """Optional, for a judge: terms that explain its verdicts."""

    def explainer(self, ctx: StageContext) -> ExplainedJudge | None:
        """An :class:`ExplainedJudge` whose terms explain this run's verdicts; None when this run has none."""


@runtime_checkable
class GradingJudge(Protocol):
    """Optional, for a judge: a grade for each response on its own (what a reward source needs)."""

    grades: tuple[float, float]  # the lowest and the highest grade it gives

    def grade(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One grade per (prompt, response) within ``grades``, higher is better."""
