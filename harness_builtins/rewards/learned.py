"""Reward source ``learned``: the reward model the ``bradley_terry`` stage trained, r_φ(x, y).

It scores exactly the sequences the RM was trained on — ``chat_text(prompt)`` + response +
EOS, by the `harness.api`'s text convention — which is why it keeps the world, and subtracts the
offset stored in ``reward_normalization.json`` so SFT samples score 0 on average (the score
head has no bias to hold it). Loading, the offset and the read-out are the core's reward-model
artifact (``harness.api``: ``load_reward_model``, ``read_offset``, ``score_texts``), which the
stage that trains the model writes, so any reward model saved in that format scores here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from pydantic import Field

from harness.api import (HarnessError, Options, Prompt, StageContext, hookimpl, load_reward_model, read_offset,
                         reward_model_dir, score_texts)


class LearnedOptions(Options):
    batch_size: int = Field(32, ge=1, description="(prompt, response) pairs per reward-model forward pass.")
    max_length: int = Field(256, ge=8, description="Longest scored sequence; longer ones keep their last tokens (as in RM training).")


class LearnedReward:
    """The trained reward model (offset so SFT samples average 0)."""

    Options = LearnedOptions

    def __init__(self, options: LearnedOptions | None = None) -> None:
        self.options = options if options is not None else LearnedOptions()
        self.model = self.tokenizer = self.world = None
        self.offset = 0.0

    def prepare(self, ctx: StageContext) -> None:
        path = reward_model_dir(ctx.artifacts["reward_model"])
        if not (path / "config.json").exists():
            raise HarnessError(f"reward source 'learned': no trained reward model at {path}; run the reward_model stage first.")
        self.load(path, ctx)

    def load(self, path: Path, ctx: StageContext) -> "LearnedReward":
        """Load the reward model saved in ``path`` (an HF directory with its normalization offset)."""
        self.model, self.tokenizer = load_reward_model(path)
        self.model.eval().to(_device(ctx))
        self.offset = read_offset(path)
        self.world = ctx.world
        return self

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("LearnedReward.score called before prepare(ctx)")
        raw = score_texts(self.model, self.tokenizer, self.world, prompts, responses,
                          max_length=self.options.max_length, batch_size=self.options.batch_size)
        return raw - self.offset


def _device(ctx: StageContext) -> torch.device:
    """GPU when the run's compute options allow one, as for training."""
    return torch.device("cuda" if ctx.experiment.compute.uses_gpu else "cpu")


@hookimpl
def register_reward_sources(register):
    register("learned", LearnedReward)
