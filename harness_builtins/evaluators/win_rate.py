"""Evaluator ``win_rate``: π_θ vs π_SFT on held-out prompts, positions swapped, ties half, 95% CI.

Each prompt is judged twice — (policy, sft) and (sft, policy) — and the two verdicts averaged,
which cancels a judge's position bias; a tie counts half. A judge may answer with a probability,
P(a ≻ b), instead of a verdict (the ``gold`` judge does by default: the gold panel's expected
preference); the rate is then the mean preference. The interval is Wilson's for verdicts and the
normal interval of the mean for probabilities (:func:`harness.api.rate_interval`). Beside it,
``decisive``: the same pairs counted as whole wins and losses (a preference above ½ a win, ½ a tie),
the rate a judge that answers with verdicts would give — the embedded world's validation reads both (V4).

Beside the rate: each prompt's score (``scores``, which the rate averages: a comparison across seeds
resamples them), the rate per prompt kind (``by_kind``), and, when the judge is a gold judge
that can explain its scores (:class:`harness.api.ExplainedJudge`), which rubric dimension
decided each win and each loss (``decided_by``: the term that moved most in the verdict's
direction), and the length-controlled rate (``length_controlled``: the verdicts with the length
term left out, as AlpacaEval 2.0 controls for length). That is what tells "wins on correctness, loses on length" from a flat 0.5.

The judge is any registered judge (``register_judges``), named by ``[evaluation.win_rate] judge``:
built in, ``gold`` (the world's gold judge), ``reward`` (the run's reward source, higher score wins)
and ``llm`` (an LLM over an OpenAI-compatible API); its options are ``[evaluation.win_rate.<judge>]``
(``[evaluation.win_rate.llm]``). It is built once per evaluator through ``ctx.build``.
"""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import ConfigDict, Field, ValidationInfo, model_validator

from harness.api import (Cell, EvalSamples, ExplainedJudge, ExplainingJudge, HarnessError, Judge, Options, Plot,
                         ReportRun, StageContext, WithDiagnostics, hookimpl, rate_interval, validate_component_tables,
                         variant_points)


class WinRateOptions(Options):
    model_config = ConfigDict(extra="allow", frozen=True)  # [evaluation.win_rate.<judge>]: checked below

    judge: str = Field(
        "gold", description="A registered judge (`harness plugins`): gold: the world's judge; reward: the run's reward "
                            "source (higher score wins); llm: an LLM over an OpenAI-compatible API; or a plugin's. "
                            "Its options go in [evaluation.win_rate.<judge>]."
    )
    llm: Any = Field(
        None, description="The LLM judge ([evaluation.win_rate.llm]: base_url, model, api_key_env, …); needed when judge = 'llm'."
    )

    @model_validator(mode="before")
    @classmethod
    def _judge_tables(cls, data: Any, info: ValidationInfo) -> Any:
        return validate_component_tables(data, info.context, family="judge", selector="judge", default="gold",
                                         fields=cls.model_fields)

    def judge_options(self) -> dict[str, Any]:
        """The chosen judge's options table, as written (``{}`` when it has none)."""
        table = self.llm if self.judge == "llm" else (self.model_extra or {}).get(self.judge)
        return table.model_dump() if isinstance(table, Options) else dict(table or {})


class WinRate:
    """Win rate of the policy against the SFT model, positions swapped, ties half, 95% CI."""

    Options = WinRateOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: WinRateOptions) -> None:
        self.options = options
        self._judge: Judge | None = None  # built on first use, then kept (an LLM judge's counters add up)

    def built_judge(self, ctx: StageContext) -> Judge:
        if self._judge is None:
            if ctx is None or ctx.build is None:
                raise HarnessError("the win_rate evaluator builds its judge through ctx.build; give it a StageContext "
                                   "with build (the runner's contexts have one).")
            self._judge = ctx.build("judge", self.options.judge, self.options.judge_options())
        return self._judge

    def judge(self, ctx: StageContext):
        """This run's comparisons: (prompt, a, b) triples → 1.0, 0.0 or 0.5 (see :class:`harness.api.Judge`)."""
        return self.built_judge(ctx).bind(ctx)

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict:
        judge, compare = self.built_judge(ctx), self.judge(ctx)
        pairs = list(zip(samples.prompts, samples.policy, samples.sft))
        verdicts = compare([(p, mine, theirs) for p, mine, theirs in pairs] +
                           [(p, theirs, mine) for p, mine, theirs in pairs])
        n = len(pairs)
        scores = [(first + 1.0 - swapped) / 2 for first, swapped in zip(verdicts[:n], verdicts[n:])]
        rate = sum(scores) / n
        low, high = rate_interval(scores)
        ties = sum(1 for s in scores if s == 0.5)
        result = {"rate": rate, "ci_low": low, "ci_high": high, "n": n, "ties": ties, "judge": judge.name,
                  "decisive": decisive_rate(scores),
                  "scores": [round(s, 6) for s in scores]}  # per prompt: what the rate averages, for stats across seeds
        result["by_kind"] = rates_by_kind([p.kind for p, _, _ in pairs], scores)
        explained = judge.explainer(ctx) if isinstance(judge, ExplainingJudge) else None
        if isinstance(explained, ExplainedJudge):
            terms = [(explained.explain(p, mine), explained.explain(p, theirs)) for p, mine, theirs in pairs]
            result["decided_by"] = decided_by(terms, scores)
            result["length_controlled"] = length_controlled(terms)
        if isinstance(judge, WithDiagnostics):
            result["judge_stats"] = judge.diagnostics()
        return {"win_rate_vs_sft": result}

    def headline(self, fragment: dict) -> list[Cell]:
        """The win rate with its interval and, with an explaining gold judge, which term decided the verdicts."""
        win = fragment["win_rate_vs_sft"]
        cells = [Cell("win rate vs SFT", win["rate"], low=win["ci_low"], high=win["ci_high"], better="higher",
                      note=f"{win['judge']} judge, n={win['n']}", per_prompt=win.get("scores"), lead=True)]
        lc = win.get("length_controlled")
        if lc:
            cells.append(Cell("length-controlled win rate", lc["rate"], low=lc["ci_low"], high=lc["ci_high"],
                              better="higher", note="the judge's length term left out", per_prompt=lc.get("scores"),
                              compact="length-controlled win rate"))
        if win.get("decided_by"):
            cells.append(Cell("wins / losses decided by (gold terms)", text=format_decided(win["decided_by"]),
                              note=f"{win['ties']} ties"))
        return cells

    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]:
        """``win_rate.png``: per variant the win rate with its 95% interval against the 0.5 line — over its
        seeds (each seed a dot) when it has several, else its own interval over the prompts."""
        rated = [r for r in runs if "rate" in r["results"].get("win_rate_vs_sft", {})]
        return [Plot("win_rate.png", lambda plt: _draw_win_rate(plt, rated))] if rated else []

    @classmethod
    def report_notes(cls, runs: Sequence[ReportRun]) -> list[str]:
        """What the win rate is, what ``decided by`` means, and which runs beat SFT."""
        wins = [(r["label"], r["results"].get("win_rate_vs_sft", {})) for r in runs]
        judges = ", ".join(sorted({str(w["judge"]) for _, w in wins if w.get("judge") is not None}))
        if not judges:
            return []
        notes = [f"Win rate: policy vs its SFT model on held-out prompts, judge {judges}, positions swapped, "
                 "ties half, 95% interval (Wilson's for verdicts, the mean's for preference probabilities)."]
        if any(w.get("decided_by") for _, w in wins):
            notes.append("Wins / losses decided by: for each held-out prompt the gold judge did not tie, the rubric "
                         "term that moved most in the verdict's direction.")
        return notes + [f"- **{label}** beats SFT: the whole 95% interval of its win rate is above 0.5."
                        for label, w in wins if isinstance(w.get("ci_low"), float) and w["ci_low"] > 0.5]


def _draw_win_rate(plt, rated: Sequence[ReportRun]):
    points = variant_points(rated, lambda r: (w := r["results"]["win_rate_vs_sft"]).get("scores") or w["rate"])
    fig, ax = plt.subplots(figsize=(6, 0.7 + 0.45 * len(points)))
    for i, point in enumerate(points):
        y = len(points) - 1 - i
        err = point.err()
        if len(point.per_seed) == 1:  # one seed: the interval the table shows (Wilson's, or the mean's)
            own = point.runs[0]["results"]["win_rate_vs_sft"]
            if isinstance(own.get("ci_low"), float) and isinstance(own.get("ci_high"), float):
                err = [[max(point.mean - own["ci_low"], 0.0)], [max(own["ci_high"] - point.mean, 0.0)]]
        else:
            ax.scatter(list(point.per_seed.values()), [y] * len(point.per_seed), s=14, color="0.45", zorder=2)
        ax.errorbar([point.mean], [y], xerr=err, fmt="D", color="#4c72b0", capsize=4, lw=2, zorder=3)
    ax.axvline(0.5, color="k", lw=1, ls="--")
    ax.set_yticks(range(len(points)), [p.variant for p in reversed(points)])
    ax.set_ylim(-0.6, len(points) - 0.4)
    ax.set_xlim(0, 1)
    seeds = max(len(p.per_seed) for p in points)
    ax.set_xlabel("win rate vs SFT, 95% CI" + (f" over {seeds} seeds (dots: each seed)" if seeds > 1 else ""))
    return fig


def format_decided(decided_by: dict[str, dict[str, float]]) -> str:
    """``length 39/1 · task 48/15``: per gold term, the wins and losses it decided, terms in name order."""
    return " · ".join(f"{term} {c['wins']:.0f}/{c['losses']:.0f}" for term, c in sorted(decided_by.items()))


def decisive_rate(scores: Sequence[float]) -> dict[str, float]:
    """The pairs' scores as whole verdicts (above ½ a win, below a loss, ½ a tie): rate and Wilson interval."""
    verdicts = [0.5 if s == 0.5 else 1.0 if s > 0.5 else 0.0 for s in scores]
    low, high = rate_interval(verdicts)
    return {"rate": sum(verdicts) / len(verdicts), "ci_low": low, "ci_high": high}


def rates_by_kind(kinds: Sequence[str], scores: Sequence[float]) -> dict[str, dict[str, float]]:
    """Win rate and count per prompt kind (ties half), kinds in first-seen order."""
    grouped: dict[str, list[float]] = {}
    for kind, score in zip(kinds, scores):
        grouped.setdefault(kind, []).append(score)
    return {kind: {"rate": sum(v) / len(v), "n": len(v)} for kind, v in grouped.items()}


def length_controlled(terms: Sequence[tuple[dict[str, float], dict[str, float]]]) -> dict[str, float]:
    """The win rate with the judge's ``length`` term left out (AlpacaEval 2.0's length-controlled rate).

    ``terms``: the judge's explained terms of (policy, SFT) response per pair. Each verdict compares
    the sums of every term but length, so a policy that wins only by writing more scores 0.5 here.
    Ties count half; the verdict is decisive (the sign of the content margin) whichever verdict the
    raw rate used, so it reads as "how often the policy's content is better"; Wilson's interval. ``scores``:
    the verdict per prompt.
    """
    def content(explained: dict[str, float]) -> float:
        return sum(v for k, v in explained.items() if k != "length")

    scores = []
    for mine, theirs in terms:
        diff = content(mine) - content(theirs)
        scores.append(0.5 if abs(diff) <= 1e-9 else 1.0 if diff > 0 else 0.0)
    rate = sum(scores) / len(scores)
    low, high = rate_interval(scores)
    return {"rate": rate, "ci_low": low, "ci_high": high, "scores": scores}


def decided_by(terms: Sequence[tuple[dict[str, float], dict[str, float]]], scores: Sequence[float]) -> dict[str, dict[str, int]]:
    """Per rubric dimension: the wins and losses it decided (the term that moved most the verdict's way);
    ``terms`` as for :func:`length_controlled`, ``scores`` the pairs' verdicts."""
    counts: dict[str, dict[str, int]] = {}
    for (a, b), score in zip(terms, scores):
        if score == 0.5:
            continue
        sign = 1.0 if score > 0.5 else -1.0
        term = max(a, key=lambda k: sign * (a[k] - b.get(k, 0.0)))
        entry = counts.setdefault(term, {"wins": 0, "losses": 0})
        entry["wins" if sign > 0 else "losses"] += 1
    return counts


@hookimpl
def register_evaluators(register):
    register("win_rate", WinRate)
