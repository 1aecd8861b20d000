"""Pairwise feedback: an annotator sees two responses and picks the better one.

The simplest format and the one Bradley–Terry was made for: each record is one
(winner, loser) pair of weight 1. Agreement is the fraction of annotator pairs that picked
the same response (InstructGPT reports ~73%) and Fleiss' kappa over the same choices.
"""
from __future__ import annotations

import random

from harness.api import (Annotator, FeedbackFormatBase, FeedbackRecord, Pair, Prompt, check_range, fleiss_kappa, hookimpl,
                         percent_agreement)


class Pairwise(FeedbackFormatBase):
    """Pairwise choice between two responses (record field ``choice``: 0 or 1)."""

    field = "choice"
    k = 2

    def annotate(self, annotator: Annotator, prompt: Prompt, responses: list[str], rng: random.Random) -> int:
        choice = annotator.choose(prompt, responses[0], responses[1], rng)
        return check_range("choice", choice, 0, 1, annotator.name)

    def pairs(self, record: FeedbackRecord) -> tuple[Pair, ...]:
        winner = record.answer
        return ((winner, 1 - winner, 1.0),)

    def item_agreement(self, items: list[list[FeedbackRecord]]) -> dict[str, float]:
        labels = [[r.answer for r in item] for item in items]
        return {"pair_agreement": percent_agreement(labels), "fleiss_kappa": fleiss_kappa(labels, n_categories=2)}


@hookimpl
def register_feedback_formats(register):
    register("pairwise", Pairwise)
