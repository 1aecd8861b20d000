"""Judge ``llm``: an LLM over an OpenAI-compatible API asked which of responses A and B is better.

It answers on a final line ``Verdict: A``, ``B`` or ``tie``. Its requests are retried, cached and
run ``concurrency`` at a time by :mod:`harness_builtins.judges.client`; every pair of a call goes in one
cached, concurrent batch.
"""
from __future__ import annotations

import re
from typing import Sequence

from pydantic import Field

from harness.api import CompareMany, Prompt, StageContext, hookimpl
from harness_builtins.judges.client import JudgeClient, TemplatedJudgeOptions, final_line

VERDICT_LINE = re.compile(r"Verdict:\s*(A|B|tie)", re.IGNORECASE)
VERDICTS = {"a": 1.0, "b": 0.0, "tie": 0.5}
PAIRWISE_PLACEHOLDERS = ("prompt", "response_a", "response_b")

PAIRWISE_TEMPLATE = """You are comparing two AI assistant replies to the same user instruction.

[Instruction]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Which response is more helpful, correct and harmless? Ignore their order and length as such.
Explain briefly, then end with one final line of exactly this form:
Verdict: A, Verdict: B, or Verdict: tie"""


class PairwiseJudgeOptions(TemplatedJudgeOptions):
    placeholders = PAIRWISE_PLACEHOLDERS
    template: str = Field(PAIRWISE_TEMPLATE, description="The judge's instructions, with {prompt}, {response_a} and {response_b}; the answer must end in 'Verdict: A|B|tie'.")


def parse_verdict(text: str) -> float:
    """1.0 for a final line ``Verdict: A``, 0.0 for ``B``, 0.5 for ``tie``; else :class:`VerdictError`."""
    return VERDICTS[final_line(text, VERDICT_LINE, "'Verdict: A', 'Verdict: B' or 'Verdict: tie'").group(1).lower()]


class LLMPairwiseJudge:
    """Asks an LLM which of two responses is better; every pair in one cached, concurrent batch."""

    Options = PairwiseJudgeOptions

    def __init__(self, options: PairwiseJudgeOptions) -> None:
        self.options = options
        self.client = JudgeClient(options, who="win_rate judge 'llm'")

    @property
    def name(self) -> str:
        return f"llm:{self.options.model}"

    def bind(self, ctx: StageContext) -> CompareMany:  # noqa: ARG002 - the same endpoint for every run
        return self

    def diagnostics(self) -> dict[str, float]:
        """The client's counters (calls, cache hits, retries, parse failures) for its last batch."""
        return self.client.diagnostics()

    def __call__(self, triples: Sequence[tuple[Prompt, str, str]]) -> list[float]:
        items = [{"prompt": p.text, "response_a": a, "response_b": b} for p, a, b in triples]
        return self.client.judge(self.options.template, items, parse_verdict)


@hookimpl
def register_judges(register):
    register("llm", LLMPairwiseJudge)
