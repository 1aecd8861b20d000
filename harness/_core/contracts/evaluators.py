"""What ``register_evaluators`` components implement: the evaluator, and what it adds to summaries and reports.

An evaluator measures the finished run on held-out samples (win rate, gold reward, alignment
tax, …) and returns a fragment of ``results.json``. Naming its headline numbers, drawing plots
and writing notes for ``harness compare`` are optional capabilities, tested with ``isinstance``;
the plot and note ones apply to any registered component class, not only evaluators.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

from harness._core.contracts.context import StageContext
from harness._core.options import Options
from harness._core.records import Cell, EvalSamples, Plot, ReportRun


class Evaluator(Protocol):
    """Runs at the end of a run; returns a fragment deep-merged into results.json.

    An evaluator that sets ``periodic = True`` also runs every ``[evaluation] every`` steps during
    training on the in-memory policy (so it must not need ``ctx.artifacts['policy']``); its numbers
    are logged as ``eval/<path>`` and kept in the policy stage's summary under ``periodic``.
    """

    Options: ClassVar[type[Options]]
    periodic: ClassVar[bool]

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict[str, Any]:
        """Measure; ``ctx.components.reward`` is the run's prepared reward source."""


@runtime_checkable
class DescribedEvaluator(Protocol):
    """Optional: an evaluator that names its headline numbers (see :class:`~harness._core.records.Cell`)."""

    def headline(self, fragment: dict[str, Any]) -> list[Cell]:
        """The cells of what this evaluator's ``evaluate`` returned (``fragment``), for the summary and reports."""


@runtime_checkable
class PlottingComponent(Protocol):
    """Optional, for any registered component class (evaluator, optimizer, …): the plots it adds to a
    ``harness compare`` report. A classmethod (the report builds no component); ``[]`` when the runs lack its numbers."""

    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]: ...


@runtime_checkable
class NotingComponent(Protocol):
    """Optional, likewise: markdown paragraphs under the report's table (what its numbers mean, findings)."""

    @classmethod
    def report_notes(cls, runs: Sequence[ReportRun]) -> list[str]: ...
