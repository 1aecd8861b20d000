"""An out-of-tree harness plugin: reward source ``brevity`` rewards answers near a target length.

It is the package docs/plugins.md builds step by step; tests install it with pip and use it by
name from a TOML, exactly as a third party would.
"""
from __future__ import annotations

import torch
from pydantic import Field

from harness.api import Options, hookimpl


class BrevityOptions(Options):
    target_words: int = Field(8, ge=1, description="Response length (words) that earns the full reward.")
    scale: float = Field(1.0, gt=0, description="Reward lost per word away from the target.")


class Brevity:
    """Reward = −scale · |words − target_words| (a hand-written reward, no model)."""

    Options = BrevityOptions

    def __init__(self, options: BrevityOptions) -> None:
        self.options = options

    def prepare(self, ctx) -> None:
        """Nothing to load."""

    def score(self, prompts, responses) -> torch.Tensor:
        words = torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)
        return -self.options.scale * (words - self.options.target_words).abs()


@hookimpl
def register_reward_sources(register):
    register("brevity", Brevity)
