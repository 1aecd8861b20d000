"""Likert feedback: an annotator rates each of an item's K responses on a 1–7 scale.

Why the reward model learns from *derived pairs* rather than from the ratings themselves:
annotators use the scale differently — each has their own cut points (one's 5 is another's
3) — so a rating is only comparable with other ratings by the same annotator on the same
prompt. Every pair of responses the annotator rated differently becomes a (higher, lower)
pair; ties carry no order and are dropped. The pairs of one record share weight 1 (each
1/n_pairs), as a K-wise ranking's do, so one Bradley–Terry loss trains every format and the
reward scale means the same thing whichever format produced the data.

Agreement: Krippendorff's alpha (ordinal) over the ratings each response received, and the
fraction of annotator pairs that order each response pair the same way (higher / lower /
tie), comparable with the pairwise format's agreement.
"""
from __future__ import annotations

import random
from itertools import combinations

from pydantic import Field

from harness.api import (Annotator, FeedbackFormatBase, FeedbackOptions, FeedbackRecord, Pair, Prompt, check_range,
                         hookimpl, krippendorff_alpha, pair_labels_by_unit, percent_agreement)

SCALE = (1, 7)


class LikertOptions(FeedbackOptions):
    k: int = Field(4, ge=2, le=9, description="Responses rated per prompt (pairs are derived within one annotator's ratings).")


class Likert(FeedbackFormatBase):
    """Likert 1–7 rating of each response (record field ``ratings``); trains on derived pairs."""

    Options = LikertOptions
    field = "ratings"

    @property
    def k(self) -> int:
        return self.options.k

    def annotate(self, annotator: Annotator, prompt: Prompt, responses: list[str], rng: random.Random) -> list[int]:
        return [check_range("rating", annotator.rate(prompt, r, rng), *SCALE, annotator.name) for r in responses]

    def pairs(self, record: FeedbackRecord) -> tuple[Pair, ...]:
        return derived_pairs(record.answer)

    def item_agreement(self, items: list[list[FeedbackRecord]]) -> dict[str, float]:
        ratings = [[r.answer[i] for r in item] for item in items for i in range(len(item[0].answer))]
        return {
            "pair_agreement": percent_agreement(pair_labels_by_unit(items, _order)),
            "krippendorff_alpha": krippendorff_alpha(ratings, level="ordinal"),
        }


def derived_pairs(ratings: list[int]) -> tuple[Pair, ...]:
    """(higher, lower) for every pair of differently rated responses, each weighted 1/n_pairs."""
    ordered = [(i, j) if ratings[i] > ratings[j] else (j, i) for i, j in combinations(range(len(ratings)), 2) if ratings[i] != ratings[j]]
    return tuple((w, l, 1.0 / len(ordered)) for w, l in ordered)


def _order(record: FeedbackRecord, i: int, j: int) -> int:
    """+1 / −1 / 0: this annotator rated ``i`` higher / lower / the same as ``j``."""
    a, b = record.answer[i], record.answer[j]
    return (a > b) - (a < b)


@hookimpl
def register_feedback_formats(register):
    register("likert", Likert)
