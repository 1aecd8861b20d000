"""Evaluator ``rewards``: proxy and gold reward of π_θ and π_SFT on held-out prompts, KL, length.

The gold means come with their standard error (``reward_gold_se``), so a curve of mid-training
evaluations can say whether a drop is larger than the sampling noise.

These are the numbers that tell a real improvement (gold up) from reward hacking (proxy up,
gold flat or down), and what it cost in KL to the reference.
"""
from __future__ import annotations

import math
from statistics import fmean, stdev

from harness import hookimpl
from harness.contracts import Cell, EvalSamples, NoOptions, StageContext


def _lengths(texts) -> list[int]:
    return [len(t.split()) for t in texts]


class RewardsEvaluator:
    """Proxy/gold reward, KL and response length of the policy and the SFT model (held-out)."""

    Options = NoOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: NoOptions) -> None:
        self.options = options

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict:
        prompts, gold = list(samples.prompts), ctx.world.gold()
        reward = ctx.components.reward
        out = {}
        for who, texts in (("", samples.policy), ("sft_", samples.sft)):
            out[f"{who}reward_proxy"] = float(reward.score(prompts, list(texts)).mean())
            if gold is not None:  # a world of real data has no gold judge: omitted, never faked
                scores = [gold.score(p, t) for p, t in zip(prompts, texts)]
                out[f"{who}reward_gold"] = fmean(scores)
                out[f"{who}reward_gold_se"] = stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else float("nan")
            out[f"{who}response_len"] = fmean(_lengths(texts))
        out["kl"] = fmean(samples.kl)
        return {"policy": out}

    def headline(self, fragment: dict) -> list[Cell]:
        """Proxy and gold reward (SFT → policy), KL and response length."""
        out = fragment["policy"]
        cells = [Cell("proxy (SFT → policy)", out.get("reward_proxy"), better="higher", before=out.get("sft_reward_proxy"))]
        if "reward_gold" in out:
            cells.append(Cell("gold (SFT → policy)", out["reward_gold"], better="higher", before=out.get("sft_reward_gold")))
        return cells + [Cell("KL (nats)", out.get("kl"), better="lower", note="policy ‖ SFT, per response"),
                        Cell("len", out.get("response_len"), fmt=".1f", note="words per response")]


@hookimpl
def register_evaluators(register):
    register("rewards", RewardsEvaluator)
