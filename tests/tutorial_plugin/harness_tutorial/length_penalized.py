"""Reward source ``length_penalized``: another reward source's score minus a penalty per word.

It names the source it wraps (``inner``) and takes that source's options in its own table, so
``harness validate`` checks them as it checks the wrapper's (``validate_inline_component``) — a
misspelt option of the inner source fails before SFT trains, not when the policy stage builds it.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import ConfigDict, Field, ValidationInfo, model_validator

from harness.api import Options, validate_inline_component


class LengthPenalizedOptions(Options):
    """The wrapped source by name and the penalty; every other key of the table is the wrapped source's option."""

    model_config = ConfigDict(extra="allow", frozen=True)  # the inner source's options: checked below

    inner: str = Field("learned", description="The reward source this one wraps; its options go in this table too.")
    per_word: float = Field(0.05, ge=0, description="Reward lost per word.")

    @model_validator(mode="before")
    @classmethod
    def _inner_options(cls, data: Any, info: ValidationInfo) -> Any:
        return validate_inline_component(data, info.context, family="reward_source", selector="inner",
                                         default="learned", fields=cls.model_fields)


class LengthPenalized:
    """Another reward source's score minus a penalty per word."""

    Options = LengthPenalizedOptions

    def __init__(self, options):
        self.options, self.inner = options, None

    def prepare(self, ctx):
        inner_options = dict(self.options.model_extra or {})  # every key but inner and per_word
        self.inner = ctx.build("reward_source", self.options.inner, inner_options)
        self.inner.prepare(ctx)

    def score(self, prompts, responses):
        words = torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)
        return self.inner.score(prompts, responses) - self.options.per_word * words
