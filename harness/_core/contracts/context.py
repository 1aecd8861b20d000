"""The stage context: what the runner hands every component it calls during a run.

A stage's ``run(ctx)``, an optimizer's ``train(ctx, reward)``, an evaluator's ``evaluate(ctx, …)``,
a reward source's ``prepare(ctx)`` and a judge's ``bind(ctx)`` all get one :class:`StageContext`:
the experiment, where to write, the world, the artifacts of finished stages, the run's shared
components and the runner's services (logging, progress, mid-training evaluation, building a
component by name). Every other contract module takes it, so it sits under them and imports none
of them; :class:`Components` names their Protocols as annotations only.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from harness._core.contracts.worlds import World
from harness._core.errors import HarnessError
from harness._core.records import FEEDBACK_FILE, FeedbackRecord, PreferenceGroup, read_feedback

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from harness._core.config import Experiment

MetricsLogger = Callable[[dict[str, float], int], None]
ProgressFactory = Callable[..., Any]  # progress(total=..., desc=...) -> context manager with .update(n)
ComponentBuilder = Callable[..., Any]  # build(family, name, options=None) -> a registered component (harness._core.building)
PeriodicEvaluator = Callable[[Any, int], dict[str, float]]  # evaluate(model, step) -> eval/… metrics


class _SilentBar:
    def update(self, n: int = 1) -> None:
        """Progress is not shown (tests, ``--no-progress``)."""


@dataclass
class Components:
    """The run's components that stages share, as the runner builds them (None before that).

    The annotations name Protocols of :mod:`harness._core.contracts.feedback`, ``.rewards`` and
    ``.optimizers``; those modules import this one (their methods take a :class:`StageContext`), so
    this one does not import them back.
    """

    feedback: FeedbackFormat | None = None  # the [feedback] format (built before any stage runs)
    reward: RewardSource | None = None  # the [reward] source, prepared (after the reward-model stage)
    optimizer: PolicyOptimizer | None = None  # the [optimizer] (built before the policy stage)


@dataclass
class StageContext:
    """What a stage, optimizer, evaluator, reward source (``prepare``) or judge (``bind``) gets from the runner.

    ``log(metrics, step)`` broadcasts ``metrics_logged``. The fields that default to None are the
    runner's services; a unit test that builds a context by hand may leave them out.
    """

    experiment: Experiment
    stage: str
    stage_dir: Path
    world: World
    log: MetricsLogger
    # "base", "sft", "policy": HF model directories; "feedback", "reward_model": those stages' directories
    artifacts: dict[str, Path] = field(default_factory=dict)
    checkpoint_dir: Path | None = None  # where to save/resume checkpoints (inside stage_dir)
    progress: ProgressFactory | None = None
    components: Components = field(default_factory=Components)
    hook: pluggy.HookRelay | None = None  # the plugin manager's hooks (None in unit tests)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # what finished upstream stages returned
    evaluate: PeriodicEvaluator | None = None  # the runner's mid-training evaluation (policy stage)
    evaluate_every: int = 0
    build: ComponentBuilder | None = None  # builds a registered component by name (None in unit tests)

    @property
    def seed(self) -> int:
        """The experiment's seed (``[experiment] seed``): every stage is deterministic from it."""
        return self.experiment.seed

    def feedback_records(self) -> list[FeedbackRecord]:
        """The records the ``feedback`` stage collected this run (``feedback/feedback.jsonl``), in order."""
        if "feedback" not in self.artifacts:
            raise HarnessError(f"stage {self.stage!r} reads the run's feedback, but no feedback stage ran before it "
                               f"(ctx.artifacts has no 'feedback').")
        path = Path(self.artifacts["feedback"]) / FEEDBACK_FILE
        if not path.is_file():
            raise HarnessError(f"{path}: no feedback records; rerun, and the feedback stage collects them.")
        return read_feedback(path)

    def preference_groups(self, records: Sequence[FeedbackRecord] | None = None) -> list[PreferenceGroup]:
        """``records`` (default: all of :meth:`feedback_records`) as weighted (winner, loser) pairs by the run's
        feedback format: one group per record, in order."""
        fmt = self.components.feedback
        if fmt is None:
            raise HarnessError(f"stage {self.stage!r} reads the run's feedback, but the context has no feedback format.")
        records = self.feedback_records() if records is None else records
        groups = fmt.preference_groups(records)
        if len(groups) != len(records):
            raise HarnessError(f"feedback format {type(fmt).__name__}: preference_groups returned {len(groups)} groups "
                               f"for {len(records)} records; it must return exactly one per record, in order.")
        return groups

    def periodic_evaluation(self, step: int, model: Any) -> dict[str, float] | None:
        """Evaluate the in-training ``model`` when ``step`` is a multiple of ``evaluate_every`` (optimizers call
        this after each step; the runner decides whether and how often, from ``[evaluation] every``)."""
        if self.evaluate is None or not self.evaluate_every or step % self.evaluate_every:
            return None
        return self.evaluate(model, step)

    def progress_bar(self, total: int, desc: str):
        """A progress bar (context manager with ``update(n)``); a silent one when the run shows none."""
        if self.progress is not None:
            return self.progress(total=total, desc=desc)
        return nullcontext(_SilentBar())

    def step(self, step: int, run_step: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Run one optimizer step through the ``optimizer_step`` hook, where guards and timers wrap it."""
        if self.hook is None:
            return run_step()
        return self.hook.optimizer_step(experiment=self.experiment, stage=self.stage, step=step, run_step=run_step)
