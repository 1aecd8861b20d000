"""Evaluator ``win_rate``: π_θ vs π_SFT on held-out prompts, positions swapped, ties half, 95% CI.

Each prompt is judged twice — (policy, sft) and (sft, policy) — and the two verdicts averaged,
which cancels a judge's position bias; a tie counts half. The interval is Wilson's.

Beside the rate: the rate per prompt kind (``by_kind``), and, when the judge is a gold judge
that can explain its scores (:class:`harness.contracts.ExplainedJudge`), which rubric dimension
decided each win and each loss (``decided_by``: the term that moved most in the verdict's
direction), and the length-controlled rate (``length_controlled``: the verdicts with the length
term left out, as AlpacaEval 2.0 controls for length). That is what tells "wins on correctness, loses on length" from a flat 0.5.

The judge is the world's gold judge, the run's reward source (higher score wins), or an LLM
over an OpenAI-compatible API (``[evaluation.win_rate.llm]``) asked which of responses A and B
is better; it answers on a final line ``Verdict: A``, ``B`` or ``tie``. Its requests are
retried, cached and run ``concurrency`` at a time by :mod:`plugins.rewards.judge_client`.
"""
from __future__ import annotations

import re
from typing import Callable, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from harness import hookimpl
from harness.contracts import Cell, EvalSamples, ExplainedJudge, Options, Prompt, StageContext
from harness.errors import HarnessError
from harness.stats import wilson_interval
from plugins.rewards.judge_client import JudgeClient, JudgeEndpointOptions, check_template, final_line

# (prompt, a, b) triples -> 1.0 if a is better, 0.0 if b is, 0.5 for a tie
CompareMany = Callable[[Sequence[tuple[Prompt, str, str]]], list[float]]

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


class PairwiseJudgeOptions(JudgeEndpointOptions):
    template: str = Field(PAIRWISE_TEMPLATE, description="The judge's instructions, with {prompt}, {response_a} and {response_b}; the answer must end in 'Verdict: A|B|tie'.")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        return check_template(template, PAIRWISE_PLACEHOLDERS)


class WinRateOptions(Options):
    judge: Literal["gold", "reward", "llm"] = Field(
        "gold", description="gold: the world's judge; reward: the run's reward source (higher score wins); "
                            "llm: an LLM over an OpenAI-compatible API, configured in [evaluation.win_rate.llm]."
    )
    llm: PairwiseJudgeOptions | None = Field(
        None, description="The LLM judge ([evaluation.win_rate.llm]: base_url, model, api_key_env, …); needed when judge = 'llm'."
    )

    @model_validator(mode="after")
    def _llm_needs_its_table(self):
        if self.judge == "llm" and self.llm is None:
            raise ValueError("judge = 'llm' needs an [evaluation.win_rate.llm] table with at least base_url and model")
        return self


def parse_verdict(text: str) -> float:
    """1.0 for a final line ``Verdict: A``, 0.0 for ``B``, 0.5 for ``tie``; else :class:`VerdictError`."""
    return VERDICTS[final_line(text, VERDICT_LINE, "'Verdict: A', 'Verdict: B' or 'Verdict: tie'").group(1).lower()]


def _one_at_a_time(compare) -> CompareMany:
    return lambda triples: [compare(p, a, b) for p, a, b in triples]


def _reward_judge(reward):
    def compare(prompt, a, b):
        ra, rb = reward.score([prompt, prompt], [a, b]).tolist()
        return 1.0 if ra > rb else 0.0 if rb > ra else 0.5
    return compare


class LLMPairwiseJudge:
    """Asks an LLM which of two responses is better; every pair in one cached, concurrent batch."""

    def __init__(self, options: PairwiseJudgeOptions) -> None:
        self.options = options
        self.client = JudgeClient(options, who="win_rate judge 'llm'")

    @property
    def name(self) -> str:
        return f"llm:{self.options.model}"

    def __call__(self, triples: Sequence[tuple[Prompt, str, str]]) -> list[float]:
        items = [{"prompt": p.text, "response_a": a, "response_b": b} for p, a, b in triples]
        return self.client.judge(self.options.template, items, parse_verdict)


class WinRate:
    """Win rate of the policy against the SFT model, positions swapped, ties half, Wilson 95% CI."""

    Options = WinRateOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: WinRateOptions) -> None:
        self.options = options
        self.llm_judge = LLMPairwiseJudge(options.llm) if options.judge == "llm" else None

    def judge(self, ctx: StageContext) -> CompareMany:
        if self.llm_judge is not None:
            return self.llm_judge
        if self.options.judge == "gold":
            gold = ctx.world.gold()
            if gold is None:
                raise HarnessError(f"[evaluation.win_rate] judge = \"gold\": world {ctx.world.name!r} has no gold "
                                   f"judge (real data). Set [evaluation.win_rate] judge = \"reward\" or \"llm\".")
            return _one_at_a_time(gold.compare)
        return _one_at_a_time(_reward_judge(ctx.components["reward"]))

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict:
        compare = self.judge(ctx)
        pairs = list(zip(samples.prompts, samples.policy, samples.sft))
        verdicts = compare([(p, mine, theirs) for p, mine, theirs in pairs] +
                           [(p, theirs, mine) for p, mine, theirs in pairs])
        n = len(pairs)
        scores = [(first + 1.0 - swapped) / 2 for first, swapped in zip(verdicts[:n], verdicts[n:])]
        rate = sum(scores) / n
        low, high = wilson_interval(rate, n)
        ties = sum(1 for s in scores if s == 0.5)
        result = {"rate": rate, "ci_low": low, "ci_high": high, "n": n, "ties": ties, "judge": self.options.judge}
        result["by_kind"] = rates_by_kind([p.kind for p, _, _ in pairs], scores)
        gold = ctx.world.gold() if self.options.judge == "gold" else None
        if isinstance(gold, ExplainedJudge):
            result["decided_by"] = decided_by(gold, pairs, scores)
            result["length_controlled"] = length_controlled(gold, pairs)
        if self.llm_judge is not None:
            result["judge"] = self.llm_judge.name
            result["judge_stats"] = self.llm_judge.client.diagnostics()
        return {"win_rate_vs_sft": result}

    def headline(self, fragment: dict) -> list[Cell]:
        """The win rate with its interval and, with an explaining gold judge, which term decided the verdicts."""
        win = fragment["win_rate_vs_sft"]
        cells = [Cell("win rate vs SFT", win["rate"], low=win["ci_low"], high=win["ci_high"], better="higher",
                      note=f"{win['judge']} judge, n={win['n']}")]
        lc = win.get("length_controlled")
        if lc:
            cells.append(Cell("length-controlled win rate", lc["rate"], low=lc["ci_low"], high=lc["ci_high"],
                              better="higher", note="the judge's length term left out"))
        if win.get("decided_by"):
            cells.append(Cell("wins / losses decided by (gold terms)", text=format_decided(win["decided_by"]),
                              note=f"{win['ties']} ties"))
        return cells


def format_decided(decided_by: dict[str, dict[str, float]]) -> str:
    """``length 39/1 · task 48/15``: per gold term, the wins and losses it decided, terms in name order."""
    return " · ".join(f"{term} {c['wins']:.0f}/{c['losses']:.0f}" for term, c in sorted(decided_by.items()))


def rates_by_kind(kinds: Sequence[str], scores: Sequence[float]) -> dict[str, dict[str, float]]:
    """Win rate and count per prompt kind (ties half), kinds in first-seen order."""
    grouped: dict[str, list[float]] = {}
    for kind, score in zip(kinds, scores):
        grouped.setdefault(kind, []).append(score)
    return {kind: {"rate": sum(v) / len(v), "n": len(v)} for kind, v in grouped.items()}


def length_controlled(judge: ExplainedJudge, pairs) -> dict[str, float]:
    """The win rate with the judge's ``length`` term left out (AlpacaEval 2.0's length-controlled rate).

    Each verdict compares the sums of every term but length, so a policy that wins only by
    writing more scores 0.5 here. Ties count half; the interval is Wilson's.
    """
    def content(prompt, text):
        return sum(v for k, v in judge.explain(prompt, text).items() if k != "length")

    scores = []
    for prompt, mine, theirs in pairs:
        diff = content(prompt, mine) - content(prompt, theirs)
        scores.append(0.5 if abs(diff) <= 1e-9 else 1.0 if diff > 0 else 0.0)
    rate = sum(scores) / len(scores)
    low, high = wilson_interval(rate, len(scores))
    return {"rate": rate, "ci_low": low, "ci_high": high}


def decided_by(judge: ExplainedJudge, pairs, scores: Sequence[float]) -> dict[str, dict[str, int]]:
    """Per rubric dimension: the wins and losses it decided (the term that moved most the verdict's way)."""
    counts: dict[str, dict[str, int]] = {}
    for (prompt, mine, theirs), score in zip(pairs, scores):
        if score == 0.5:
            continue
        a, b = judge.explain(prompt, mine), judge.explain(prompt, theirs)
        sign = 1.0 if score > 0.5 else -1.0
        term = max(a, key=lambda k: sign * (a[k] - b.get(k, 0.0)))
        entry = counts.setdefault(term, {"wins": 0, "losses": 0})
        entry["wins" if sign > 0 else "losses"] += 1
    return counts


@hookimpl
def register_evaluators(register):
    register("win_rate", WinRate)
