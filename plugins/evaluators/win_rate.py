"""Evaluator ``win_rate``: π_θ vs π_SFT on held-out prompts, positions swapped, ties half, 95% CI.

Each prompt is judged twice — (policy, sft) and (sft, policy) — and the two verdicts averaged,
which cancels a judge's position bias; a tie counts half. The interval is Wilson's.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness import hookimpl
from harness.contracts import EvalSamples, Options, StageContext
from harness.stats import wilson_interval


class WinRateOptions(Options):
    judge: Literal["gold", "reward"] = Field(
        "gold", description="gold: the world's judge; reward: the run's reward source (higher score wins)."
    )


def _reward_judge(reward):
    def compare(prompt, a, b):
        ra, rb = reward.score([prompt, prompt], [a, b]).tolist()
        return 1.0 if ra > rb else 0.0 if rb > ra else 0.5
    return compare


class WinRate:
    """Win rate of the policy against the SFT model, positions swapped, ties half, Wilson 95% CI."""

    Options = WinRateOptions

    def __init__(self, options: WinRateOptions) -> None:
        self.options = options

    def judge(self, ctx: StageContext):
        if self.options.judge == "gold":
            return ctx.world.gold().compare
        return _reward_judge(ctx.components["reward"])

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict:
        compare = self.judge(ctx)
        scores = [
            (compare(p, mine, theirs) + 1.0 - compare(p, theirs, mine)) / 2
            for p, mine, theirs in zip(samples.prompts, samples.policy, samples.sft)
        ]
        n = len(scores)
        rate = sum(scores) / n
        low, high = wilson_interval(rate, n)
        ties = sum(1 for s in scores if s == 0.5)
        return {"win_rate_vs_sft": {"rate": rate, "ci_low": low, "ci_high": high, "n": n,
                                    "ties": ties, "judge": self.options.judge}}


@hookimpl
def register_evaluators(register):
    register("win_rate", WinRate)
