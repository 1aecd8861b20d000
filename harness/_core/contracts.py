"""The contracts plugins implement: worlds, feedback formats, reward sources, stages, optimizers.

The core never imports ``harness_builtins/``; it only talks to objects shaped like these. Each
component class carries an ``Options`` pydantic model (``extra="forbid"``, a description per
field) that the config layer validates from the experiment's TOML before anything runs.
Optional capabilities (a reward source's ``diagnostics()``, its ``offloadable_modules()``, a
judge's ``explainer``) are Protocols too: the core and the built-ins test for them with
``isinstance``. The data records (:class:`Prompt`, :class:`FeedbackRecord`, :class:`Cell`, …)
live in :mod:`harness._core.records` and are re-exported here.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, Sequence, runtime_checkable

from harness._core.errors import HarnessError
from harness._core.options import NoOptions, Options  # noqa: F401  (re-exported: plugins import both from here)
from harness._core.records import (  # noqa: F401  (re-exported: plugins import the records from here)
    FEEDBACK_FILE,
    Cell,
    Demonstration,
    EvalSamples,
    FeedbackRecord,
    Plot,
    PreferenceGroup,
    Prompt,
    ReportRun,
    Split,
    read_feedback,
)

if TYPE_CHECKING:  # pragma: no cover
    import pluggy
    import torch

    from harness._core.config import Experiment


# --------------------------------------------------------------------------- the world
@runtime_checkable
class GoldJudge(Protocol):
    """The world's ground truth. For evaluation; optimizers see it only as reward source ``gold``."""

    def score(self, prompt: Prompt, response: str) -> float:
        """Gold quality of one response (higher is better)."""

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        """1.0 if ``a`` is better, 0.0 if ``b`` is, 0.5 for a tie."""

    def preference(self, prompt: Prompt, a: str, b: str) -> float:
        """P(a ≻ b) for one person of those gold stands for (``compare`` where gold stands for no one)."""


@runtime_checkable
class ExplainedJudge(Protocol):
    """A gold judge that can say why: its score split into signed terms per rubric dimension.

    Optional. Where a world's judge has it, the win-rate evaluator reports which dimension
    decided each win and loss (so "the policy loses on length, wins on correctness" is a number).
    """

    def explain(self, prompt: Prompt, response: str) -> dict[str, float]:
        """Signed contribution of each dimension (e.g. task, rudeness, length) to ``score``."""


@runtime_checkable
class Annotator(Protocol):
    """A simulated person who answers in every feedback format (with their own weights, noise, bias)."""

    name: str

    def choose(self, prompt: Prompt, a: str, b: str, rng: random.Random) -> int:
        """Pairwise choice: 0 if ``a`` is preferred, 1 if ``b``."""

    def rank(self, prompt: Prompt, responses: Sequence[str], rng: random.Random) -> list[int]:
        """K-wise ranking: indices of ``responses`` from best to worst."""

    def rate(self, prompt: Prompt, response: str, rng: random.Random) -> int:
        """Likert rating, 1 (worst) to 7 (best)."""


@runtime_checkable
class World(Protocol):
    """Where prompts, demonstrations, annotators, a gold judge and base models come from.

    A world of real data (``hf_data``) has recorded feedback instead of annotators (it also
    implements :class:`RecordedFeedback`), no gold judge and no models of its own.
    """

    name: str

    def chat_text(self, prompt: Prompt) -> str:
        """The exact text a causal LM is conditioned on for ``prompt`` (the response follows it)."""

    def prompts(self, split: Split) -> list[Prompt]:
        """Prompts of one split: ``sft``/``rm`` (training data), ``rl`` (policy optimization), ``eval``."""

    def demonstrations(self) -> list[Demonstration]:
        """SFT data: responses by imperfect demonstrators to the ``sft`` prompts."""

    def candidate_responses(self, prompt: Prompt, k: int, rng: random.Random) -> list[str]:
        """``k`` distinct responses of varied quality for annotators to compare (feedback collection)."""

    def annotators(self) -> list[Annotator]:
        """The annotator pool (empty for a world whose feedback is recorded)."""

    def gold(self) -> GoldJudge | None:
        """The ground-truth judge; None for real data (consumers then omit gold metrics)."""

    def pretraining_texts(self, split: Literal["train", "heldout"]) -> list[str]:
        """The pretraining corpus (PPO-ptx mixes it in; held-out part measures perplexity)."""

    def base_model(self, name: str) -> Path:
        """Directory of HF-format model + tokenizer for ``embedded:<name>`` (built and cached on first use)."""

    def lm_eval_tasks(self) -> tuple[Path | None, list[str]]:
        """(directory of lm-eval task YAMLs, task names) measuring the base model's capabilities; (None, []) if none."""


@runtime_checkable
class RecordedFeedback(Protocol):
    """A world whose human feedback was collected already: feedback formats read it instead of simulating."""

    def recorded_feedback(self, field: str) -> list[FeedbackRecord]:
        """Records whose answer is ``field`` (``choice``, ``ranking``, ``ratings``: the format's record key);
        a HarnessError naming the right format when the data holds another."""


# --------------------------------------------------------------------------- feedback formats
class FeedbackFormat(Protocol):
    """The schema of one annotation, how it is collected, and how it becomes preference pairs.

    The ``feedback`` stage calls ``collect(ctx)`` once per run and writes the records to
    ``runs/<experiment>/feedback/feedback.jsonl``; the reward-model stage, DPO and any plugin read
    them back with ``ctx.feedback_records()`` (or as pairs with ``ctx.preference_groups()``). The
    public base class :class:`harness._core.feedback.FeedbackFormatBase` implements all three methods.
    """

    Options: ClassVar[type[Options]]

    def collect(self, ctx: StageContext) -> list[FeedbackRecord]:
        """Records on the world's ``rm`` prompts (``ctx.world.prompts("rm")``), deterministic given ``ctx.seed``;
        π_SFT, for formats that label its samples, is at ``ctx.artifacts["sft"]``."""

    def preference_groups(self, records: Sequence[FeedbackRecord]) -> list[PreferenceGroup]:
        """Records → weighted (winner, loser) pairs: exactly one group per record, in order."""

    def agreement(self, records: Sequence[FeedbackRecord]) -> dict[str, float]:
        """Inter-annotator agreement over items labelled by several annotators."""


# --------------------------------------------------------------------------- reward sources
class RewardSource(Protocol):
    """``score(prompts, responses) -> tensor``; learned sources load what a stage trained."""

    Options: ClassVar[type[Options]]

    def prepare(self, ctx: "StageContext") -> None:
        """Load models / open clients. Called once before the first ``score``."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> "torch.Tensor":
        """One float per (prompt, response), higher is better (shape ``[len(prompts)]``)."""


@runtime_checkable
class WithDiagnostics(Protocol):
    """Optional, for a reward source or a judge: counters that describe its last call.

    An ensemble's disagreement, an LLM judge's calls and cache hits: online optimizers log a reward
    source's with every step; the win-rate evaluator reports its judge's as ``judge_stats``.
    """

    def diagnostics(self) -> dict[str, float]:
        """Named numbers about the last ``score`` (or judge) call."""


@runtime_checkable
class Offloadable(Protocol):
    """Optional, for a reward source: the torch modules it holds, which an optimizer may move off the GPU
    between scoring calls (``offload_frozen``). Without it the optimizer looks for modules among its attributes."""

    def offloadable_modules(self) -> list["torch.nn.Module"]:
        """Every module ``score`` runs."""


# --------------------------------------------------------------------------- stages & optimizers
MetricsLogger = Callable[[dict[str, float], int], None]
ProgressFactory = Callable[..., Any]  # progress(total=..., desc=...) -> context manager with .update(n)
ComponentBuilder = Callable[..., Any]  # build(family, name, options=None) -> a registered component (harness._core.building)
PeriodicEvaluator = Callable[[Any, int], dict[str, float]]  # evaluate(model, step) -> eval/… metrics


class _SilentBar:
    def update(self, n: int = 1) -> None:
        """Progress is not shown (tests, ``--no-progress``)."""


@dataclass
class Components:
    """The run's components that stages share, as the runner builds them (None before that)."""

    feedback: FeedbackFormat | None = None  # the [feedback] format (built before any stage runs)
    reward: RewardSource | None = None  # the [reward] source, prepared (after the reward-model stage)
    optimizer: PolicyOptimizer | None = None  # the [optimizer] (built before the policy stage)


@dataclass
class StageContext:
    """What a stage or optimizer gets from the runner. ``log(metrics, step)`` broadcasts ``metrics_logged``."""

    experiment: "Experiment"
    stage: str
    stage_dir: Path
    world: World
    log: MetricsLogger
    # "base", "sft", "policy": HF model directories; "feedback", "reward_model": those stages' directories
    artifacts: dict[str, Path] = field(default_factory=dict)
    checkpoint_dir: Path | None = None  # where to save/resume checkpoints (inside stage_dir)
    progress: ProgressFactory | None = None
    components: Components = field(default_factory=Components)
    hook: "pluggy.HookRelay | None" = None  # the plugin manager's hooks (None in unit tests)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # what finished upstream stages returned
    evaluate: PeriodicEvaluator | None = None  # the runner's mid-training evaluation (policy stage)
    evaluate_every: int = 0
    build: ComponentBuilder | None = None

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
        from contextlib import nullcontext

        return nullcontext(_SilentBar())

    def step(self, step: int, run_step: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Run one optimizer step through the ``optimizer_step`` hook, where guards and timers wrap it."""
        if self.hook is None:
            return run_step()
        return self.hook.optimizer_step(experiment=self.experiment, stage=self.stage, step=step, run_step=run_step)


class Stage(Protocol):
    """A pipeline step (SFT, reward-model training, …) that writes its outputs into ``ctx.stage_dir``."""

    Options: ClassVar[type[Options]]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Train/produce; return a JSON-ready summary that lands in results.json."""


class PolicyOptimizer(Protocol):
    """PPO, A2C, GRPO, RLOO (``online``: sample and score) or DPO (``offline``: preference pairs).

    Optional: :class:`SamplingOptimizer`, for an optimizer whose policy is a way of sampling, not
    only weights (best-of-n); evaluation then samples the policy through it.
    """

    Options: ClassVar[type[Options]]
    mode: ClassVar[Literal["online", "offline"]]

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        """Optimize the policy (starting from ``ctx.artifacts['sft']``); save HF model to ``ctx.stage_dir/'model'``."""


class PolicySampler(Protocol):
    """A policy that is a sampling procedure (best-of-n: π_SFT sampled n times, the reward source picks).

    An optimizer offers one through ``evaluation_policy(ctx)`` (``ctx.components.reward`` is the run's
    prepared reward source); the evaluation stage draws the policy's held-out responses through
    ``respond`` instead of sampling the saved weights, and every evaluator sees them like any policy's.
    """

    def respond(self, prompts: Sequence[Prompt], settings: Any, seed: int) -> tuple[list[str], list[float]]:
        """One response per prompt (``settings``: the ``[evaluation]`` table: length, temperature, batch size)
        and its KL(π‖π_SFT) in nats (exact where known, as best-of-n's log n − (n−1)/n)."""


@runtime_checkable
class SamplingOptimizer(Protocol):
    """Optional, for an optimizer: its policy is a sampling procedure that evaluation samples through."""

    def evaluation_policy(self, ctx: StageContext) -> PolicySampler:
        """The policy to evaluate, built after training (``ctx.components.reward`` is the prepared reward source)."""


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
    """Optional: an evaluator that names its headline numbers (see :class:`Cell`)."""

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


# (prompt, a, b) triples -> 1.0 if a is better, 0.0 if b is, 0.5 for a tie
CompareMany = Callable[[Sequence[tuple[Prompt, str, str]]], list[float]]


class Judge(Protocol):
    """Decides which of two responses to a prompt is better (registered with ``register_judges``).

    Built from its ``Options`` (the evaluator's ``[evaluation.<evaluator>.<judge>]`` table), then
    bound to a run. Optional capabilities: :class:`ExplainingJudge` (the win rate then reports
    ``decided_by`` and a length-controlled rate), :class:`GradingJudge` (it grades one response at
    a time, so the ``llm_judge`` reward source can use it) and :class:`WithDiagnostics` (counters
    reported beside the verdicts as ``judge_stats``).
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
