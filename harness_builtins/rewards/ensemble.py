"""Reward source ``ensemble``: the N reward models a ``bradley_terry`` stage with ``members = N`` trained.

Each member is scored as reward source ``learned`` scores its one model (its own
normalization offset subtracted, so every member puts SFT samples at 0 on average); the
members' scores are then aggregated per sample:

- ``mean``: their average;
- ``min``: the most pessimistic member (worst-case optimization, Coste et al. 2023, "Reward
  model ensembles help mitigate overoptimization");
- ``mean_minus_std``: mean − k·std, a penalty where the members disagree (their
  uncertainty-weighted optimization uses the variance; std keeps the reward's units).

std is the spread of these members (population std, ddof 0). ``diagnostics()`` reports the
disagreement of the last ``score`` call; ``member_scores`` gives evaluators every member's view.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import Field

from harness.api import HarnessError, Options, Prompt, StageContext, hookimpl, member_dirs
from harness_builtins.rewards.learned import LearnedOptions, LearnedReward

Aggregate = Literal["mean", "min", "mean_minus_std"]


class EnsembleOptions(Options):
    aggregate: Aggregate = Field("mean", description="How members' rewards combine: mean, min, or mean − k·std.")
    k: float = Field(1.0, ge=0, description="Weight of the members' std in aggregate = 'mean_minus_std'.")
    batch_size: int = Field(32, ge=1, description="(prompt, response) pairs per reward-model forward pass.")
    max_length: int = Field(256, ge=8, description="Longest scored sequence; longer ones keep their last tokens (as in RM training).")


class EnsembleReward:
    """Several reward models (seeds / bootstrap samples of the feedback), aggregated per sample."""

    Options = EnsembleOptions

    def __init__(self, options: EnsembleOptions | None = None) -> None:
        self.options = options if options is not None else EnsembleOptions()
        self.members: list[LearnedReward] = []
        self._last: torch.Tensor | None = None  # member scores [M, B] of the last score() call

    def prepare(self, ctx: StageContext) -> None:
        stage_dir = Path(ctx.artifacts["reward_model"])
        dirs = member_dirs(stage_dir)
        if len(dirs) < 2:
            raise HarnessError(f"reward source 'ensemble': {len(dirs)} trained reward model(s) in {stage_dir}, it needs "
                               "at least 2; set [reward_model.bradley_terry] members = N ≥ 2 and rerun.")
        options = LearnedOptions(batch_size=self.options.batch_size, max_length=self.options.max_length)
        self.members = [LearnedReward(options).load(d, ctx) for d in dirs]

    @torch.no_grad()
    def member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Every member's offset-corrected reward, shape ``[members, len(prompts)]``."""
        if not self.members:
            raise RuntimeError("EnsembleReward.member_scores called before prepare(ctx)")
        return torch.stack([m.score(prompts, responses) for m in self.members])

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        self._last = self.member_scores(prompts, responses)
        return aggregate(self._last, self.options.aggregate, self.options.k)

    def diagnostics(self) -> dict[str, float]:
        """Members' disagreement on the last ``score`` call, averaged over its samples ({} before any)."""
        if self._last is None or self._last.numel() == 0:
            return {}
        spread = self._last.max(0).values - self._last.min(0).values
        return {"reward/ensemble_std": float(self._last.std(0, correction=0).mean()),
                "reward/ensemble_range": float(spread.mean())}


def aggregate(scores: torch.Tensor, how: Aggregate, k: float = 1.0) -> torch.Tensor:
    """Combine member scores ``[M, B]`` into one reward per sample ``[B]``."""
    if how == "min":
        return scores.min(0).values
    mean = scores.mean(0)
    return mean - k * scores.std(0, correction=0) if how == "mean_minus_std" else mean


@hookimpl
def register_reward_sources(register):
    register("ensemble", EnsembleReward)
