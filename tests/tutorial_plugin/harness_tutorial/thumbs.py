"""Feedback format ``thumbs``: a thumbs up (1) or down (0) on each of two responses."""
from __future__ import annotations

from harness.api import FeedbackFormatBase, check_range


class Thumbs(FeedbackFormatBase):
    """Thumbs up (1) or down (0) on each of two responses (record field ``thumbs``)."""

    field = "thumbs"
    k = 2

    def annotate(self, annotator, prompt, responses, rng):
        return [check_range("thumb", int(annotator.rate(prompt, r, rng) >= 4), 0, 1, annotator.name)
                for r in responses]

    def pairs(self, record):
        up, down = record.answer
        return ((0, 1, 1.0),) if up > down else ((1, 0, 1.0),) if down > up else ()

    def item_agreement(self, items):
        same = [a.answer == b.answer for item in items for a, b in zip(item, item[1:])]
        return {"thumbs_agreement": sum(same) / len(same)}
