"""Judges ``gold`` and ``reward``: a verdict from two scores, one comparison at a time.

``gold`` asks the world's gold judge (the ground truth of a simulated world; a world of real data
has none, and says so). Its verdict (``[evaluation.win_rate.gold] verdict``) is by default the
gold panel's expected preference, P(a ≻ b) for one annotator judging once — what a win rate
counted from single human judgments estimates (InstructGPT; AlpacaEval 2.0 weighs by it) — or
``"decisive"``: 1 / 0 / ½ by the sign of the gold margin, however small (``docs/world.md``,
design 4). ``reward`` scores both responses with the run's reward source; the higher score wins
and equal scores tie.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.api import CompareMany, ExplainedJudge, HarnessError, NoOptions, Options, StageContext, hookimpl


def one_at_a_time(compare) -> CompareMany:
    """A ``compare(prompt, a, b)`` function as a judge of many triples."""
    return lambda triples: [compare(p, a, b) for p, a, b in triples]


class _OptionlessJudge:
    Options = NoOptions

    def __init__(self, options: NoOptions) -> None:
        self.options = options


class GoldOptions(Options):
    verdict: Literal["preference", "decisive"] = Field(
        "preference", description="preference: P(a ≻ b) for one annotator of the gold panel, judging once (the "
                                  "expected preference); decisive: 1, 0 or ½ by the sign of the gold margin."
    )


class GoldJudge:
    """The world's gold judge (simulated worlds only)."""

    Options = GoldOptions
    name = "gold"

    def __init__(self, options: GoldOptions) -> None:
        self.options = options

    def bind(self, ctx: StageContext) -> CompareMany:
        gold = ctx.world.gold()
        if gold is None:
            raise HarnessError(f"[evaluation.win_rate] judge = \"gold\": world {ctx.world.name!r} has no gold "
                               f"judge (real data). Set [evaluation.win_rate] judge = \"reward\" or \"llm\".")
        return one_at_a_time(gold.preference if self.options.verdict == "preference" else gold.compare)

    def explainer(self, ctx: StageContext) -> ExplainedJudge | None:
        """The gold judge when it can say which rubric term decided a verdict."""
        gold = ctx.world.gold()
        return gold if isinstance(gold, ExplainedJudge) else None


class RewardJudge(_OptionlessJudge):
    """The run's reward source: the higher score wins, equal scores tie."""

    name = "reward"

    def bind(self, ctx: StageContext) -> CompareMany:
        reward = ctx.components.reward

        def compare(prompt, a, b):
            ra, rb = reward.score([prompt, prompt], [a, b]).tolist()
            return 1.0 if ra > rb else 0.0 if rb > ra else 0.5
        return one_at_a_time(compare)


@hookimpl
def register_judges(register):
    register("gold", GoldJudge)
    register("reward", RewardJudge)
