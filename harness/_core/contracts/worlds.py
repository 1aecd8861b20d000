"""What ``register_worlds`` components implement: the world, its gold judge and its annotators.

A world is where every run's data comes from: prompts, demonstrations, simulated annotators (or
recorded feedback), a gold judge and base models. Nothing here takes a stage context: a world is
built once per run and answers questions, so every other contract can build on this module.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Literal, Protocol, Sequence, runtime_checkable

from harness._core.records import Demonstration, FeedbackRecord, Prompt, Split


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
