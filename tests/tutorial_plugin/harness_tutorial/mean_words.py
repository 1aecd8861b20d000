"""Evaluator ``mean_words``: mean words of the held-out answers of the policy and of π_SFT."""
from __future__ import annotations

from statistics import fmean

from harness.contracts import Cell, NoOptions


class MeanWords:
    """Mean words of the policy's held-out answers, beside π_SFT's."""

    Options = NoOptions
    periodic = False

    def __init__(self, options):
        self.options = options

    def evaluate(self, ctx, samples):
        words = lambda texts: fmean(len(t.split()) for t in texts)  # noqa: E731
        return {"mean_words": {"policy": words(samples.policy), "sft": words(samples.sft)}}

    def headline(self, fragment):
        own = fragment["mean_words"]
        return [Cell("mean words", own["policy"], before=own["sft"], better="lower", fmt=".1f")]
