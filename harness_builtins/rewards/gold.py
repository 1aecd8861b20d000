"""Reward source ``gold``: the world's ground-truth judge, for upper-bound runs only.

No optimizer sees gold unless an experiment names this source; then "proxy" and "gold" are
the same signal and over-optimization is impossible by construction (a useful control).
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness.api import HarnessError, NoOptions, Prompt, StageContext, hookimpl


class GoldReward:
    """The world's gold judge as a reward (upper bound: no proxy gap)."""

    Options = NoOptions

    def __init__(self, options: NoOptions) -> None:
        self.options = options
        self._judge = None

    def prepare(self, ctx: StageContext) -> None:
        self._judge = ctx.world.gold()
        if self._judge is None:
            raise HarnessError(f"reward source 'gold': world {ctx.world.name!r} has no gold judge (real data); "
                               f"use [reward] name = \"learned\" (or another reward source).")

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self._judge.score(p, r) for p, r in zip(prompts, responses)], dtype=torch.float32)


@hookimpl
def register_reward_sources(register):
    register("gold", GoldReward)
