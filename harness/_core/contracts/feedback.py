"""What ``register_feedback_formats`` components implement: the feedback format.

A format is the schema of one annotation (a pairwise choice, a K-wise ranking, Likert ratings),
how it is collected from the world's annotators, and how its records become the weighted
preference pairs every reward model and DPO train on.
"""
from __future__ import annotations

from typing import ClassVar, Protocol, Sequence

from harness._core.contracts.context import StageContext
from harness._core.options import Options
from harness._core.records import FeedbackRecord, PreferenceGroup


class FeedbackFormat(Protocol):
    """The schema of one annotation, how it is collected, and how it becomes preference pairs.

    The ``feedback`` stage calls ``collect(ctx)`` once per run and writes the records to
    ``runs/<experiment>/feedback/feedback.jsonl``; the reward-model stage, DPO and any plugin read
    them back with ``ctx.feedback_records()`` (or as pairs with ``ctx.preference_groups()``). The
    base class ``harness.api.FeedbackFormatBase`` (in :mod:`harness._core.feedback`) implements all three.
    """

    Options: ClassVar[type[Options]]

    def collect(self, ctx: StageContext) -> list[FeedbackRecord]:
        """Records on the world's ``rm`` prompts (``ctx.world.prompts("rm")``), deterministic given ``ctx.seed``;
        π_SFT, for formats that label its samples, is at ``ctx.artifacts["sft"]``."""

    def preference_groups(self, records: Sequence[FeedbackRecord]) -> list[PreferenceGroup]:
        """Records → weighted (winner, loser) pairs: exactly one group per record, in order."""

    def agreement(self, records: Sequence[FeedbackRecord]) -> dict[str, float]:
        """Inter-annotator agreement over items labelled by several annotators."""
