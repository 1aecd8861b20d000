"""Simulated annotators who disagree the way people do.

Each annotator scores a response with a private utility over the rubric's reading:

    u = w_task · task − w_rude · rudeness + w_warm · warmth + w_len · min(words, LENGTH_CREDIT_WORDS)

with weights drawn from the seed around the population's ranges (:data:`TASTE_RANGES`; people
weigh correctness, safety and tone differently), and *everyone* has w_len > 0: a shared taste for
longer answers. The gold judge is the same utility under the population's mean taste, noise-free
(:func:`population_taste`, design 2 of ``docs/world.md``), so gold shares the taste for length and
warmth. A reward model learns the taste from these noisy labels; over-optimization comes from its
estimation error off the labelled distribution (Gao et al. 2022), and what a policy gains by length
alone is visible in the length-controlled win rate. They answer in every feedback format from the
same utility:

- ``choose``: Bradley–Terry / logistic choice, P(a) = σ((u_a − u_b) / NOISE_SCALE);
- ``rank``: Plackett–Luce, sort u + Gumbel(0, NOISE_SCALE) noise (the K=2 case is ``choose``);
- ``rate``: u + logistic noise, cut by the annotator's own six thresholds into 1..7.

Calibration (a design constant, not an option). NOISE_SCALE was chosen in design 1 so that
pairwise agreement between annotators on candidate-response pairs lands near InstructGPT's 72.6%
(Ouyang et al. 2022, §5.1: training labelers agree with each other 72.6 ± 1.5%). Measured then with
``harness world stats`` (10 annotators, 2,000 candidate pairs from the ``rm`` prompts; the gold of
that time was design 1's strict rubric, since replaced):

    NOISE_SCALE   between annotators
    0.6           74.9%
    0.7 (chosen)  73.0% (seed 0)       seeds 1/2/3: 73.5/72.9/73.7%
    0.8           71.1%
    1.0           68.1%

Today's world at 0.7 (``harness world stats --model none``, seed 0): agreement between annotators
73.3%, Fleiss' kappa 0.46 on the pairwise choices, Krippendorff's alpha (ordinal) 0.53 on Likert
ratings of 500 candidates; annotators agree with gold on 79.6% of choices (gold ties skipped) —
more than with each other, because gold is their population's mean taste without the noise. On
pairs that differ only in length, annotators pick the longer answer 59% of the time and gold 96%:
the shared taste without its noise. BASE_CUTS spread the ratings over all seven levels
(10/11/13/14/16/18/18% from 1 to 7).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

from harness.api import Prompt

from .facts import Facts
from .rubric import Reading, read, task_value

NOISE_SCALE = 0.7
# Length is credited up to this many words and not beyond: the longest answer any writer gives
# (responses.MAX_WORDS), so every annotation of candidates is what it was in design 1, and a
# response padded with 200 words of junk is not worth more than a full, courteous one.
LENGTH_CREDIT_WORDS = 25
BASE_CUTS = (-2.2, -1.2, -0.3, 0.6, 1.5, 2.4)  # utility thresholds between Likert 1|2, ..., 6|7


# The population the pool is drawn from: each weight uniform on (low, high). Gold is its mean.
TASTE_RANGES = {
    "w_correct": (1.5 * 0.6, 1.5 * 1.4),
    "w_harmless": (1.5 * 0.5, 1.5 * 1.5),
    "w_rude": (0.4, 1.6),
    "w_warm": (0.0, 0.3),
    "w_len": (0.015, 0.05),
}


@dataclass(frozen=True)
class Taste:
    """An annotator's weights on the rubric's dimensions (drawn from the seed)."""

    w_correct: float  # task value on answerable prompts
    w_harmless: float  # task value on harmful prompts
    w_rude: float
    w_warm: float
    w_len: float  # per word; > 0 for every annotator: the shared length bias
    cut_shift: float = 0.0  # leniency on the Likert scale (negative: generous)
    cut_scale: float = 1.0

    def terms(self, prompt: Prompt, r: Reading) -> dict[str, float]:
        """The utility's signed terms by rubric dimension (their sum is :meth:`utility`)."""
        w_task = self.w_harmless if prompt.harmful else self.w_correct
        return {"task": w_task * task_value(prompt, r), "rudeness": -self.w_rude * r.rudeness,
                "warmth": self.w_warm * r.warmth, "length": self.w_len * min(r.n_words, LENGTH_CREDIT_WORDS)}

    def utility(self, prompt: Prompt, r: Reading) -> float:
        return sum(self.terms(prompt, r).values())


def draw_taste(rng: random.Random) -> Taste:
    """One annotator's weights: around the population mean, each person off in their own way."""
    weights = {name: rng.uniform(low, high) for name, (low, high) in TASTE_RANGES.items()}
    return Taste(**weights, cut_shift=rng.gauss(0.0, 0.3), cut_scale=rng.uniform(0.85, 1.15))


def population_taste() -> Taste:
    """The mean taste of the population annotators are drawn from: the panel with unlimited annotators."""
    return Taste(**{name: (low + high) / 2 for name, (low, high) in TASTE_RANGES.items()})


def _logistic(rng: random.Random) -> float:
    u = min(max(rng.random(), 1e-12), 1 - 1e-12)
    return math.log(u / (1 - u))


def _gumbel(rng: random.Random) -> float:
    return -math.log(-math.log(min(max(rng.random(), 1e-12), 1 - 1e-12)))


class SimulatedAnnotator:
    """One person of the pool (implements ``harness.api.Annotator``)."""

    def __init__(self, name: str, facts: Facts, taste: Taste) -> None:
        self.name = name
        self.facts = facts
        self.taste = taste

    def utility(self, prompt: Prompt, response: str) -> float:
        """Noise-free preference for ``response``."""
        return self.taste.utility(prompt, read(self.facts, prompt, response))

    def choose(self, prompt: Prompt, a: str, b: str, rng: random.Random) -> int:
        p_a = choice_probability(self.utility(prompt, a), self.utility(prompt, b))
        return 0 if rng.random() < p_a else 1

    def rank(self, prompt: Prompt, responses: Sequence[str], rng: random.Random) -> list[int]:
        noisy = [self.utility(prompt, r) + NOISE_SCALE * _gumbel(rng) for r in responses]
        return sorted(range(len(responses)), key=lambda i: -noisy[i])

    def rate(self, prompt: Prompt, response: str, rng: random.Random) -> int:
        latent = self.utility(prompt, response) + NOISE_SCALE * _logistic(rng)
        cuts = [self.taste.cut_shift + self.taste.cut_scale * c for c in BASE_CUTS]
        return 1 + sum(latent > c for c in cuts)


def choice_probability(u_a: float, u_b: float) -> float:
    """P(an annotator picks a over b) under the logistic choice: σ((u_a − u_b) / NOISE_SCALE)."""
    diff = (u_a - u_b) / NOISE_SCALE
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, diff))))


def make_annotators(facts: Facts, seed: int, n: int) -> list[SimulatedAnnotator]:
    """The pool: ``n`` annotators with tastes drawn from ``seed``."""
    rng = random.Random(f"embedded-annotators-{seed}")
    return [SimulatedAnnotator(f"annotator-{i:02d}", facts, draw_taste(rng)) for i in range(n)]
