"""Evaluator ``mean_words``: mean words of the held-out answers of the policy and of π_SFT."""
from __future__ import annotations

from statistics import fmean

from harness.api import Cell, NoOptions, Plot


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

    @classmethod
    def report_plots(cls, runs):
        measured = [(run["label"], run["results"]["mean_words"]) for run in runs if "mean_words" in run["results"]]
        if not measured:
            return []  # none of these runs used this evaluator: no plot

        def draw(plt):
            fig, ax = plt.subplots(figsize=(6, 3))
            labels = [label for label, _ in measured]
            ax.barh(labels, [own["policy"] for _, own in measured], label="policy")
            ax.scatter([own["sft"] for _, own in measured], labels, color="k", marker="|", s=200, label="SFT")
            ax.set_xlabel("mean words per held-out answer")
            ax.legend()
            return fig

        return [Plot("mean_words.png", draw, note="Mean words of the held-out answers; the tick is π_SFT's.")]
