"""Reward source ``length_penalized``: another reward source's score minus a penalty per word."""
from __future__ import annotations

import torch
from pydantic import Field

from harness.api import Options


class LengthPenalizedOptions(Options):
    inner: str = Field("learned", description="The reward source this one wraps.")
    inner_options: dict = Field(default_factory=dict, description="Its options, as its TOML table holds them.")
    per_word: float = Field(0.05, ge=0, description="Reward lost per word.")


class LengthPenalized:
    """Another reward source's score minus a penalty per word."""

    Options = LengthPenalizedOptions

    def __init__(self, options):
        self.options, self.inner = options, None

    def prepare(self, ctx):
        self.inner = ctx.build("reward_source", self.options.inner, self.options.inner_options)
        self.inner.prepare(ctx)

    def score(self, prompts, responses):
        words = torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)
        return self.inner.score(prompts, responses) - self.options.per_word * words
