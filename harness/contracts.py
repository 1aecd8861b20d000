"""The contracts plugins implement: worlds, feedback formats, reward sources, stages, optimizers.

The core never imports ``plugins/``; it only talks to objects shaped like these. Each
component class carries an ``Options`` pydantic model (``extra="forbid"``, a description per
field) that the config layer validates from the experiment's TOML before anything runs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, Sequence, runtime_checkable

from harness.options import NoOptions, Options  # noqa: F401  (re-exported: plugins import both from here)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from harness.config import Experiment


# --------------------------------------------------------------------------- data records
Split = Literal["sft", "rm", "rl", "eval"]


@dataclass(frozen=True)
class Prompt:
    """One instruction. ``answer`` is the checkable answer (None where the right move is to decline)."""

    id: str
    kind: str
    text: str
    answer: str | None = None
    harmful: bool = False


@dataclass(frozen=True)
class Demonstration:
    """A prompt and a demonstrator's response (SFT data)."""

    prompt: Prompt
    response: str
    demonstrator: str = ""


@dataclass(frozen=True)
class PreferenceGroup:
    """Responses to one prompt with weighted (winner, loser) index pairs.

    Every feedback format reduces its records to these, so one Bradley–Terry loss
    ``sum(weight * -log σ(r[w] - r[l]))`` trains a reward model from pairs, K-wise rankings
    (all C(K,2) pairs, weight 1/C(K,2), InstructGPT §3.5) or Likert ratings (derived pairs).
    DPO reads the same groups as (chosen, rejected) pairs.
    """

    prompt: Prompt
    responses: tuple[str, ...]
    pairs: tuple[tuple[int, int, float], ...]


# --------------------------------------------------------------------------- the world
@runtime_checkable
class GoldJudge(Protocol):
    """The world's ground truth. For evaluation; optimizers see it only as reward source ``gold``."""

    def score(self, prompt: Prompt, response: str) -> float:
        """Gold quality of one response (higher is better)."""

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        """1.0 if ``a`` is better, 0.0 if ``b`` is, 0.5 for a tie."""


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

    def recorded_feedback(self, field: str) -> list[dict[str, Any]]:
        """Records in the schema of the format whose record key is ``field`` (``choice``, ``ranking``,
        ``ratings``); a HarnessError naming the right format when the data holds another."""


# --------------------------------------------------------------------------- feedback formats
class FeedbackFormat(Protocol):
    """The schema of one annotation, how it is collected, and how it becomes preference pairs.

    The reward-model stage calls ``collect`` on the world's ``rm`` prompts and writes the records to
    ``feedback.jsonl`` in its stage directory (DPO reads them there). A record is a JSON-ready dict
    with at least ``prompt_id``, ``prompt`` (the :class:`Prompt` as a dict) and ``responses``; the
    schema and a public base class that implements ``collect`` are in :mod:`harness.feedback`.
    """

    Options: ClassVar[type[Options]]
    options: Options  # the validated options; an optional ``candidates`` ("world" | "sft" | "mixed") asks
    #                   the stage for π_SFT samples as candidates (passed to ``collect`` as ``source``)
    k: int  # responses per item: how many candidates a ``source`` must supply

    def collect(self, world: World, prompts: Sequence[Prompt], rng: random.Random,
                source: Callable[[Prompt, int, random.Random], tuple[list[str], list[str]]] | None = None,
                ) -> list[dict[str, Any]]:
        """Records (one per prompt×annotator asked), deterministic given ``rng``. ``source(prompt, k, rng)``
        returns an item's responses and where each came from; None means ``world.candidate_responses``."""

    def preference_groups(self, records: Sequence[dict[str, Any]]) -> list[PreferenceGroup]:
        """Records → weighted (winner, loser) pairs: exactly one group per record, in order."""

    def agreement(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Inter-annotator agreement over items labelled by several annotators."""


# --------------------------------------------------------------------------- reward sources
class RewardSource(Protocol):
    """``score(prompts, responses) -> tensor``; learned sources load what a stage trained."""

    Options: ClassVar[type[Options]]

    def prepare(self, ctx: "StageContext") -> None:
        """Load models / open clients. Called once before the first ``score``."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> "torch.Tensor":
        """One float per (prompt, response), higher is better (shape ``[len(prompts)]``)."""


# --------------------------------------------------------------------------- stages & optimizers
MetricsLogger = Callable[[dict[str, float], int], None]


class _SilentBar:
    def update(self, n: int = 1) -> None:
        """Progress is not shown (tests, ``--no-progress``)."""


@dataclass
class StageContext:
    """What a stage or optimizer gets from the runner. ``log(metrics, step)`` broadcasts ``metrics_logged``."""

    experiment: "Experiment"
    stage: str
    stage_dir: Path
    world: World
    seed: int
    log: MetricsLogger
    # "base", "sft", "policy": HF model directories; "reward_model": the RM stage directory (model/ inside)
    artifacts: dict[str, Path] = field(default_factory=dict)
    checkpoint_dir: Path | None = None  # where to save/resume checkpoints (inside stage_dir)
    progress: Callable[..., Any] | None = None  # progress(total=..., desc=...) -> context manager with .update(n)
    components: dict[str, Any] = field(default_factory=dict)  # resolved slot instances (reward, feedback, ...)
    hook: Any = None  # the plugin manager's hook relay (None in unit tests)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # what finished upstream stages returned
    evaluate: Callable[[Any, int], dict[str, float]] | None = None  # runner's mid-training evaluation (policy stage)
    evaluate_every: int = 0
    # build(family, name, options) -> another registered component, options validated (harness.building)
    build: Callable[..., Any] | None = None

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

    Optional: ``evaluation_policy(ctx) -> PolicySampler`` for an optimizer whose policy is a way of
    sampling, not only weights (best-of-n); evaluation then samples the policy through it.
    """

    Options: ClassVar[type[Options]]
    mode: ClassVar[Literal["online", "offline"]]

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        """Optimize the policy (starting from ``ctx.artifacts['sft']``); save HF model to ``ctx.stage_dir/'model'``."""


class PolicySampler(Protocol):
    """A policy that is a sampling procedure (best-of-n: π_SFT sampled n times, the reward source picks).

    An optimizer offers one through ``evaluation_policy(ctx)`` (``ctx.components['reward']`` is the run's
    prepared reward source); the evaluation stage draws the policy's held-out responses through
    ``respond`` instead of sampling the saved weights, and every evaluator sees them like any policy's.
    """

    def respond(self, prompts: Sequence[Prompt], settings: Any, seed: int) -> tuple[list[str], list[float]]:
        """One response per prompt (``settings``: the ``[evaluation]`` table: length, temperature, batch size)
        and its KL(π‖π_SFT) in nats (exact where known, as best-of-n's log n − (n−1)/n)."""


@dataclass(frozen=True)
class EvalSamples:
    """One sample per held-out prompt from the policy and from π_SFT, drawn once and shared by evaluators.

    ``kl`` is the per-prompt sum over the policy's response tokens of log π_θ − log π_SFT.
    """

    prompts: tuple[Prompt, ...]
    policy: tuple[str, ...]
    sft: tuple[str, ...]
    kl: tuple[float, ...]


@dataclass(frozen=True)
class Cell:
    """One headline number an evaluator declares: a row of the run summary, a column of ``harness compare``.

    ``value`` (and ``before``, the SFT model's value where one is compared, shown ``before → value``) are
    formatted with ``fmt``; ``low``/``high`` is its interval (shown ``[95% CI low, high]``); ``better`` says
    which direction is an improvement; ``note`` qualifies it in the summary (``gold judge, n=200``); ``text``
    replaces the number for a cell that is not one (a breakdown). The core knows no evaluator's keys: it
    shows the cells evaluators declare, in order.
    """

    name: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    better: Literal["higher", "lower"] | None = None
    before: float | None = None
    fmt: str = ".3f"
    note: str = ""
    text: str | None = None

    def render(self) -> str:
        """The cell as read: ``0.460 [95% CI 0.392, 0.529]``, ``0.015 → 0.414``, or its ``text``."""
        if self.text is not None:
            return self.text
        shown = _number(self.value, self.fmt)
        if self.before is not None:
            shown = f"{_number(self.before, self.fmt)} → {shown}"
        if self.low is not None or self.high is not None:
            shown += f" [95% CI {_number(self.low, self.fmt)}, {_number(self.high, self.fmt)}]"
        return shown


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and value == value else "—"


class Evaluator(Protocol):
    """Runs at the end of a run; returns a fragment deep-merged into results.json.

    An evaluator that sets ``periodic = True`` also runs every ``[evaluation] every`` steps during
    training on the in-memory policy (so it must not need ``ctx.artifacts['policy']``); its numbers
    are logged as ``eval/<path>`` and kept in the policy stage's summary under ``periodic``.
    """

    Options: ClassVar[type[Options]]
    periodic: ClassVar[bool]

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict[str, Any]:
        """Measure; ``ctx.components['reward']`` is the run's prepared reward source."""


class DescribedEvaluator(Protocol):
    """Optional: an evaluator that names its headline numbers (see :class:`Cell`)."""

    def headline(self, fragment: dict[str, Any]) -> list[Cell]:
        """The cells of what this evaluator's ``evaluate`` returned (``fragment``), for the summary and reports."""


# (prompt, a, b) triples -> 1.0 if a is better, 0.0 if b is, 0.5 for a tie
CompareMany = Callable[[Sequence[tuple[Prompt, str, str]]], list[float]]


class Judge(Protocol):
    """Decides which of two responses to a prompt is better (registered with ``register_judges``).

    Built from its ``Options`` (the evaluator's ``[evaluation.<evaluator>.<judge>]`` table), then
    bound to a run. Optional: ``explainer(ctx)`` returns an :class:`ExplainedJudge` whose terms
    explain the verdicts (the win rate then reports ``decided_by`` and a length-controlled rate),
    and ``diagnostics()`` returns counters reported beside the verdicts (``judge_stats``).
    """

    Options: ClassVar[type[Options]]
    name: str  # how results name it: "gold", "reward", "llm:<model>"

    def bind(self, ctx: StageContext) -> CompareMany:
        """This run's comparisons; raise :class:`~harness.errors.HarnessError` if the run cannot have this judge."""
