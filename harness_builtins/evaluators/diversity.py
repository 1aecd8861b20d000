"""Evaluator ``diversity``: did RL collapse the policy's outputs? Distinct n-grams and unique responses.

Mode collapse is the quiet cost of RLHF: a policy that found one high-reward phrasing repeats it.
Distinct-n (Li et al. 2016) over the held-out samples and the share of unique responses are
reported for the policy and for π_SFT, so the drop is visible beside the reward gain.
"""
from __future__ import annotations

from statistics import fmean
from typing import Any, Sequence

from harness.api import Cell, EvalSamples, NoOptions, StageContext, distinct_n, hookimpl


def diversity(texts: Sequence[str]) -> dict[str, float]:
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "unique_responses": len(set(texts)) / len(texts) if texts else 0.0,
            "mean_words": fmean(len(t.split()) for t in texts) if texts else 0.0}


class Diversity:
    """Distinct-1/2 and unique-response share of the policy's and SFT's held-out samples."""

    Options = NoOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: NoOptions) -> None:
        self.options = options

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict[str, Any]:
        out = {"policy": diversity(samples.policy), "sft": diversity(samples.sft)}
        ctx.log({f"diversity/{who}/{k}": v for who, d in out.items() for k, v in d.items()}, 0)
        return {"diversity": out}

    def headline(self, fragment: dict[str, Any]) -> list[Cell]:
        """Distinct-2 of the held-out samples (SFT → policy)."""
        out = fragment["diversity"]
        return [Cell("distinct-2 (SFT → policy)", out["policy"]["distinct_2"], better="higher",
                     before=out["sft"]["distinct_2"])]


@hookimpl
def register_evaluators(register):
    register("diversity", Diversity)
