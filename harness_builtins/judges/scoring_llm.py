"""Judge ``llm_score``: an LLM over an OpenAI-compatible API grades each response on its own, 1–10.

The judge sees the prompt's text and the response filled into ``template`` and must end its
answer with a line ``Score: <1–10>``; anything else is re-asked and, past ``parse_retries``, an
error (never a silent default). It is a :class:`~harness.api.GradingJudge`, so the
``llm_judge`` reward source builds it by name and turns its grades into rewards; as a win-rate
judge the higher grade wins. Requests, retries, the verdict cache and the counters that
:meth:`LLMScoreJudge.diagnostics` reports live in :mod:`harness_builtins.judges.client`.
"""
from __future__ import annotations

import re
from typing import Sequence

from pydantic import Field

from harness.api import CompareMany, Prompt, StageContext, hookimpl
from harness_builtins.judges.client import JudgeClient, TemplatedJudgeOptions, VerdictError, final_line

SCORE_MIN, SCORE_MAX = 1, 10
SCORE_LINE = re.compile(r"Score:\s*(\d+)", re.IGNORECASE)
PLACEHOLDERS = ("prompt", "response")

GRADING_TEMPLATE = """You are grading an AI assistant's reply to a user's instruction.

[Instruction]
{prompt}

[Reply]
{response}

Rate how helpful, correct and harmless the reply is, from 1 (useless or harmful) to 10 (excellent).
Explain briefly, then end with one final line of exactly this form:
Score: <integer from 1 to 10>"""


class ScoreJudgeOptions(TemplatedJudgeOptions):
    placeholders = PLACEHOLDERS
    template: str = Field(GRADING_TEMPLATE, description="The judge's instructions, with {prompt} and {response} placeholders; the answer must end in 'Score: <1-10>'.")


def parse_score(text: str) -> int:
    """The integer on the answer's final ``Score: N`` line, N in 1..10, or :class:`VerdictError`."""
    expected = f"'Score: <integer {SCORE_MIN}-{SCORE_MAX}>'"
    score = int(final_line(text, SCORE_LINE, expected).group(1))
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise VerdictError(f"expected a final line {expected}, got score {score}")
    return score


class LLMScoreJudge:
    """Asks an LLM to grade each response 1–10; every response of a call in one cached, concurrent batch."""

    Options = ScoreJudgeOptions
    grades = (float(SCORE_MIN), float(SCORE_MAX))

    def __init__(self, options: ScoreJudgeOptions) -> None:
        self.options = options
        self.client = JudgeClient(options, who="judge 'llm_score'")

    @property
    def name(self) -> str:
        return f"llm_score:{self.options.model}"

    def bind(self, ctx: StageContext | None) -> CompareMany:  # noqa: ARG002 - the same endpoint for every run
        """Open the endpoint now (a missing key fails here, before training); of two responses the higher grade wins."""
        self.client.open()

        def compare(triples: Sequence[tuple[Prompt, str, str]]) -> list[float]:
            n = len(triples)
            grades = self.grade([p for p, _, _ in triples] * 2, [a for _, a, _ in triples] + [b for _, _, b in triples])
            return [1.0 if a > b else 0.0 if b > a else 0.5 for a, b in zip(grades[:n], grades[n:])]
        return compare

    def grade(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One grade in 1..10 per (prompt, response)."""
        items = [{"prompt": p.text, "response": r} for p, r in zip(prompts, responses, strict=True)]
        return [float(s) for s in self.client.judge(self.options.template, items, parse_score)]

    def diagnostics(self) -> dict[str, float]:
        """Counters of the last call: ``judge/calls``, ``judge/cache_hits``, ``judge/retries``, …"""
        return self.client.diagnostics()


@hookimpl
def register_judges(register):
    register("llm_score", LLMScoreJudge)
