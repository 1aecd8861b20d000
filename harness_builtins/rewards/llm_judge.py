"""Reward source ``llm_judge``: a registered judge grades each response, and its grade is the reward.

The judge is looked up by name in the judge registry (``judge``, default ``llm_score``: an LLM
behind an OpenAI-compatible API grading 1–10, :mod:`harness_builtins.judges.scoring_llm`), as the win-rate
evaluator looks up its judge; any judge that grades one response at a time
(:class:`~harness.api.GradingJudge`), a plugin's included, will do. Its options sit in the
same table, beside ``judge`` and ``scale``:

    [reward.llm_judge]
    base_url = "http://localhost:8000/v1"
    model = "judge-7b"
    scale = "centered"

The grade becomes the reward centred on the judge's scale, (g − mid) / half-range ∈ [−1, 1]
((s − 5.5) / 4.5 for 1–10), or stays raw. ``diagnostics()`` passes on the judge's counters.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import ConfigDict, Field, ValidationInfo, model_validator

from harness.api import (GradingJudge, HarnessError, Options, Prompt, StageContext, WithDiagnostics, hookimpl,
                         validate_inline_component)

DEFAULT_JUDGE = "llm_score"


class LLMJudgeOptions(Options):
    """The judge by name and how its grade becomes a reward; every other key of the table is the judge's."""

    model_config = ConfigDict(extra="allow", frozen=True)  # the judge's options: checked below

    judge: str = Field(DEFAULT_JUDGE, description="A registered judge that grades one response at a time (`harness "
                                                  "plugins`); llm_score: an LLM over an OpenAI-compatible API. Its "
                                                  "options (base_url, model, template, …) go in this table.")
    scale: Literal["centered", "raw"] = Field("centered", description="Grade → reward: centered maps the judge's "
                                                                      "scale to -1..1 (1..10: (s-5.5)/4.5); raw keeps it.")

    @model_validator(mode="before")
    @classmethod
    def _judge_options(cls, data: Any, info: ValidationInfo) -> Any:
        return validate_inline_component(data, info.context, family="judge", selector="judge", default=DEFAULT_JUDGE,
                                         fields=cls.model_fields)

    def judge_options(self) -> dict[str, Any]:
        """The judge's options: every key of the table but ``judge`` and ``scale``."""
        return dict(self.model_extra or {})


def to_reward(grade: float, grades: tuple[float, float], scale: str) -> float:
    """A grade on the judge's scale ``grades`` (lowest, highest) as a reward."""
    if scale == "raw":
        return float(grade)
    low, high = grades
    mid, half = (high + low) / 2, (high - low) / 2
    return (grade - mid) / half


class LLMJudgeReward:
    """A registered judge (an LLM over an OpenAI-compatible API by default) grades each response; cached, retried."""

    Options = LLMJudgeOptions

    def __init__(self, options: LLMJudgeOptions) -> None:
        self.options = options
        self.judge: GradingJudge | None = None

    def prepare(self, ctx: StageContext) -> None:
        """Build the judge by name and bind it to the run (an LLM judge reads its API key here)."""
        if self.judge is not None:
            return
        if ctx.build is None:
            raise HarnessError("reward source 'llm_judge' builds its judge through ctx.build; prepare it with the "
                               "runner's StageContext.")
        judge = ctx.build("judge", self.options.judge, self.options.judge_options())
        if not isinstance(judge, GradingJudge):
            raise HarnessError(f"[reward.llm_judge] judge = {self.options.judge!r}: that judge compares two responses "
                               f"but grades none on its own; name one that grades (built in: {DEFAULT_JUDGE}).")
        judge.bind(ctx)
        self.judge = judge

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        if self.judge is None:
            raise HarnessError("reward source 'llm_judge' was not prepared (call prepare(ctx) first).")
        grades = self.judge.grade(prompts, responses)
        return torch.tensor([to_reward(g, self.judge.grades, self.options.scale) for g in grades], dtype=torch.float32)

    def diagnostics(self) -> dict[str, float]:
        """The judge's counters of the last :meth:`score` call: ``judge/calls``, ``judge/cache_hits``, …"""
        return self.judge.diagnostics() if isinstance(self.judge, WithDiagnostics) else {}


@hookimpl
def register_reward_sources(register):
    register("llm_judge", LLMJudgeReward)
