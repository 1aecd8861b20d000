"""The contracts plugins implement: one module per component family, and the stage context they all take.

The core never imports ``harness_builtins/``; it only talks to objects shaped like these. Each
``register_*`` hook (:mod:`harness._core.hookspecs`) fills one family, and each family's
Protocols live in the module named after it: :mod:`~.worlds`, :mod:`~.feedback`,
:mod:`~.rewards`, :mod:`~.optimizers`, :mod:`~.stages`, :mod:`~.evaluators`, :mod:`~.judges`;
:mod:`~.context` holds the :class:`StageContext` the runner hands them. Each component class
carries an ``Options`` pydantic model (``extra="forbid"``, a description per field) that the
config layer validates from the experiment's TOML before anything runs. Optional capabilities
(a reward source's ``diagnostics()``, its ``offloadable_modules()``, a judge's ``explainer``) are
Protocols too: the core and the built-ins test for them with ``isinstance``.

This package re-exports every contract, and the data records (:class:`Prompt`,
:class:`FeedbackRecord`, :class:`Cell`, … of :mod:`harness._core.records`) and ``Options``/``NoOptions``
beside them, so the core imports them all from one place. Plugins import them from ``harness.api``.
"""
from __future__ import annotations

from harness._core.contracts.context import (ComponentBuilder, Components, MetricsLogger, PeriodicEvaluator,
                                             ProgressFactory, StageContext)
from harness._core.contracts.evaluators import DescribedEvaluator, Evaluator, NotingComponent, PlottingComponent
from harness._core.contracts.feedback import FeedbackFormat
from harness._core.contracts.judges import CompareMany, ExplainingJudge, GradingJudge, Judge
from harness._core.contracts.optimizers import PolicyOptimizer, PolicySampler, SamplingOptimizer
from harness._core.contracts.rewards import Offloadable, RewardSource, WithDiagnostics, WithMemberScores
from harness._core.contracts.stages import Stage
from harness._core.contracts.worlds import Annotator, ExplainedJudge, GoldJudge, RecordedFeedback, World
from harness._core.options import NoOptions, Options
from harness._core.records import (FEEDBACK_FILE, Cell, Demonstration, EvalSamples, FeedbackRecord, Plot,
                                   PreferenceGroup, Prompt, ReportRun, Split, read_feedback)

__all__ = [
    # the stage context
    "ComponentBuilder", "Components", "MetricsLogger", "PeriodicEvaluator", "ProgressFactory", "StageContext",
    # the families' contracts and their optional capabilities
    "Annotator", "ExplainedJudge", "GoldJudge", "RecordedFeedback", "World",
    "FeedbackFormat",
    "Offloadable", "RewardSource", "WithDiagnostics", "WithMemberScores",
    "PolicyOptimizer", "PolicySampler", "SamplingOptimizer",
    "Stage",
    "DescribedEvaluator", "Evaluator", "NotingComponent", "PlottingComponent",
    "CompareMany", "ExplainingJudge", "GradingJudge", "Judge",
    # re-exported: options and records
    "NoOptions", "Options",
    "FEEDBACK_FILE", "Cell", "Demonstration", "EvalSamples", "FeedbackRecord", "Plot", "PreferenceGroup", "Prompt",
    "ReportRun", "Split", "read_feedback",
]
