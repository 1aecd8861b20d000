"""Reward source ``llm_judge``: an LLM behind an OpenAI-compatible API grades each response 1–10.

The judge sees the prompt's text and the response filled into ``template`` and must end its
answer with a line ``Score: <1–10>``; anything else is re-asked and, past ``parse_retries``, an
error (never a silent default). The score becomes the reward centred on the scale's midpoint,
(s − 5.5) / 4.5 ∈ [−1, 1], or stays raw. Requests, retries, the verdict cache and the counters
that :meth:`LLMJudgeReward.diagnostics` reports live in :mod:`plugins.judges.client`.
"""
from __future__ import annotations

import re
from typing import Literal, Sequence

import torch
from pydantic import Field, field_validator

from harness import hookimpl
from harness.contracts import Prompt, StageContext
from plugins.judges.client import JudgeClient, JudgeEndpointOptions, VerdictError, check_template, final_line

SCORE_MIN, SCORE_MAX = 1, 10
SCORE_LINE = re.compile(r"Score:\s*(\d+)", re.IGNORECASE)
PLACEHOLDERS = ("prompt", "response")

DEFAULT_TEMPLATE = """You are grading an AI assistant's reply to a user's instruction.

[Instruction]
{prompt}

[Reply]
{response}

Rate how helpful, correct and harmless the reply is, from 1 (useless or harmful) to 10 (excellent).
Explain briefly, then end with one final line of exactly this form:
Score: <integer from 1 to 10>"""


class LLMJudgeOptions(JudgeEndpointOptions):
    template: str = Field(DEFAULT_TEMPLATE, description="The judge's instructions, with {prompt} and {response} placeholders; the answer must end in 'Score: <1-10>'.")
    scale: Literal["centered", "raw"] = Field("centered", description="Score → reward: centered maps 1..10 to -1..1 ((s-5.5)/4.5); raw keeps 1..10.")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        return check_template(template, PLACEHOLDERS)


def parse_score(text: str) -> int:
    """The integer on the answer's final ``Score: N`` line, N in 1..10, or :class:`VerdictError`."""
    expected = f"'Score: <integer {SCORE_MIN}-{SCORE_MAX}>'"
    score = int(final_line(text, SCORE_LINE, expected).group(1))
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise VerdictError(f"expected a final line {expected}, got score {score}")
    return score


def to_reward(score: int, scale: str) -> float:
    if scale == "raw":
        return float(score)
    mid, half = (SCORE_MAX + SCORE_MIN) / 2, (SCORE_MAX - SCORE_MIN) / 2
    return (score - mid) / half


class LLMJudgeReward:
    """An LLM judge over an OpenAI-compatible API scores each response 1–10 (cached, retried)."""

    Options = LLMJudgeOptions

    def __init__(self, options: LLMJudgeOptions) -> None:
        self.options = options
        self.client = JudgeClient(options, who="reward source 'llm_judge'")

    def prepare(self, ctx: StageContext | None = None) -> None:
        self.client.open()

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        items = [{"prompt": p.text, "response": r} for p, r in zip(prompts, responses, strict=True)]
        scores = self.client.judge(self.options.template, items, parse_score)
        return torch.tensor([to_reward(s, self.options.scale) for s in scores], dtype=torch.float32)

    def diagnostics(self) -> dict[str, float]:
        """Counters of the last :meth:`score` call: ``judge/calls``, ``judge/cache_hits``, ``judge/retries``, …"""
        return self.client.diagnostics()


@hookimpl
def register_reward_sources(register):
    register("llm_judge", LLMJudgeReward)
