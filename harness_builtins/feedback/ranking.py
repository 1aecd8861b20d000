"""K-wise ranking (InstructGPT §3.5): an annotator orders K responses from best to worst.

One ranking yields all C(K,2) pairs; each gets weight 1/C(K,2) so a ranking counts as one
training unit (InstructGPT found that treating its pairs as independent examples overfits).
Agreement: the fraction of annotator pairs that order each response pair the same way
(comparable with the pairwise format), Fleiss' kappa over those pair orders, and the mean
Kendall tau between annotators' full rankings.
"""
from __future__ import annotations

import random
from itertools import combinations

import numpy as np
from pydantic import Field

from harness.api import (Annotator, FeedbackFormatBase, FeedbackOptions, FeedbackRecord, Pair, Prompt, fleiss_kappa,
                         hookimpl, kendall_tau, pair_labels_by_unit, pairs_from_order, percent_agreement)


class RankingOptions(FeedbackOptions):
    k: int = Field(4, ge=4, le=9, description="Responses ranked per prompt (InstructGPT used 4 to 9).")


class Ranking(FeedbackFormatBase):
    """K-wise ranking, best to worst (record field ``ranking``: response indices)."""

    Options = RankingOptions
    field = "ranking"

    @property
    def k(self) -> int:
        return self.options.k

    def annotate(self, annotator: Annotator, prompt: Prompt, responses: list[str], rng: random.Random) -> list[int]:
        ranking = [int(i) for i in annotator.rank(prompt, responses, rng)]
        if sorted(ranking) != list(range(len(responses))):
            raise ValueError(f"annotator {annotator.name!r} gave ranking {ranking}; expected a permutation of 0..{len(responses) - 1}")
        return ranking

    def pairs(self, record: FeedbackRecord) -> tuple[Pair, ...]:
        return pairs_from_order(record.answer)

    def item_agreement(self, items: list[list[FeedbackRecord]]) -> dict[str, float]:
        units = pair_labels_by_unit(items, _above)
        taus = [np.mean([kendall_tau(a.answer, b.answer) for a, b in combinations(item, 2)]) for item in items]
        return {
            "pair_agreement": percent_agreement(units),
            "fleiss_kappa": fleiss_kappa(units),
            "kendall_tau": float(np.mean(taus)),
        }


def _above(record: FeedbackRecord, i: int, j: int) -> int:
    """+1 if this annotator ranked response ``i`` above ``j``, else −1."""
    ranking = record.answer
    return 1 if ranking.index(i) < ranking.index(j) else -1


@hookimpl
def register_feedback_formats(register):
    register("ranking", Ranking)
