"""Evaluator ``rewards``: proxy and gold reward of π_θ and π_SFT on held-out prompts, KL, length.

The policy's per-prompt values (``policy.per_prompt``: proxy, gold, KL, length, and π_SFT's gold) are kept,
the same prompts in the same order at every evaluation: a comparison across seeds resamples prompts within
each seed with them, and the embedded world's validation fits Gao et al.'s curve with a bootstrap over
prompts (row V6). The gold means come with their standard error (``reward_gold_se``), so a curve of
mid-training evaluations can say whether a drop is larger than the sampling noise.

These are the numbers that tell a real improvement (gold up) from reward hacking (proxy up,
gold flat or down), and what it cost in KL to the reference.
"""
from __future__ import annotations

import dataclasses
import math
from statistics import fmean, stdev
from typing import Any, Sequence

from harness.api import Cell, EvalSamples, NoOptions, Plot, ReportRun, StageContext, hookimpl, smooth, variant_points

# the panels of periodic.png: mid-training evaluations ([evaluation] every) of this evaluator and win_rate
PERIODIC_PANELS = (("win_rate_vs_sft/rate", "held-out win rate vs SFT"), ("policy/reward_gold", "held-out gold reward"),
                   ("policy/reward_proxy", "held-out proxy reward"))


def _lengths(texts) -> list[int]:
    return [len(t.split()) for t in texts]


class RewardsEvaluator:
    """Proxy/gold reward, KL and response length of the policy and the SFT model (held-out)."""

    Options = NoOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: NoOptions) -> None:
        self.options = options

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict:
        prompts, gold = list(samples.prompts), ctx.world.gold()
        reward = ctx.components.reward
        out: dict[str, Any] = {}
        per_prompt: dict[str, list[float]] = {"kl": [float(k) for k in samples.kl]}
        for who, texts in (("", samples.policy), ("sft_", samples.sft)):
            proxy = reward.score(prompts, list(texts))
            out[f"{who}reward_proxy"] = float(proxy.mean())
            if gold is not None:  # a world of real data has no gold judge: omitted, never faked
                scores = [gold.score(p, t) for p, t in zip(prompts, texts)]
                out[f"{who}reward_gold"] = fmean(scores)
                out[f"{who}reward_gold_se"] = stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else float("nan")
                per_prompt[f"{who}reward_gold"] = [float(s) for s in scores]
            out[f"{who}response_len"] = fmean(_lengths(texts))
            if not who:
                per_prompt.update(reward_proxy=proxy.tolist(), response_len=_lengths(texts),
                                  **({"reward_gold": scores} if gold is not None else {}))
        out["kl"] = fmean(samples.kl)
        out["per_prompt"] = {key: [round(float(v), 6) for v in values] for key, values in per_prompt.items()}
        return {"policy": out}

    def headline(self, fragment: dict) -> list[Cell]:
        """Proxy and gold reward (SFT → policy), KL and response length."""
        out = fragment["policy"]
        each = out.get("per_prompt", {}).get  # per-prompt values (a results.json of an older run has none)
        cells = [Cell("proxy (SFT → policy)", out.get("reward_proxy"), better="higher", before=out.get("sft_reward_proxy"),
                      per_prompt=each("reward_proxy"))]
        if "reward_gold" in out:
            cells.append(Cell("gold (SFT → policy)", out["reward_gold"], better="higher", before=out.get("sft_reward_gold"),
                              per_prompt=each("reward_gold"), compact="Δgold"))
        return cells + [Cell("KL (nats)", out.get("kl"), better="lower", note="policy ‖ SFT, per response",
                             per_prompt=each("kl"), compact="KL (nats)"),
                        Cell("len", out.get("response_len"), fmt=".1f", note="words per response",
                             per_prompt=each("response_len"))]


    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]:
        """``reward_vs_kl.png``, the reward–KL frontier (held-out points, each run's training trajectory
        behind, as Gao et al. 2022 plot it); ``periodic.png``, the mid-training evaluations."""
        plots = []
        if any(_num(r["results"].get("policy", {}).get("kl")) for r in runs):
            plots.append(Plot("reward_vs_kl.png", lambda plt: _draw_reward_vs_kl(plt, runs)))
        series = [(i, r, rows) for i, r in enumerate(runs) if (rows := r["results"].get("policy", {}).get("train", {}).get("periodic"))]
        panels = [(k, t) for k, t in PERIODIC_PANELS if any(k in row for _, _, rows in series for row in rows)]
        if panels:
            plots.append(Plot("periodic.png", lambda plt: _draw_periodic(plt, series, panels)))
        return plots

    @classmethod
    def report_notes(cls, runs: Sequence[ReportRun]) -> list[str]:
        """What gold and proxy mean."""
        if not any("reward_proxy" in r["results"].get("policy", {}) for r in runs):
            return []
        return ["Gold is the world's judge; proxy is the reward the policy optimized."]


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _draw_reward_vs_kl(plt, runs: Sequence[ReportRun]):
    """Per variant its held-out (KL, reward) with both 95% intervals (over its seeds and prompts), each run's
    training trajectory behind; SFT a star with its interval."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    variants = list(dict.fromkeys(r.get("variant", r["label"]) for r in runs))
    for key, ax in zip(("proxy", "gold"), axes):
        for run in runs:
            color = f"C{variants.index(run.get('variant', run['label'])) % 10}"
            kl, value = smooth([c.get("kl") for c in run["curve"]]), smooth([c.get(f"reward/{key}") for c in run["curve"]])
            if kl and value and len(kl) == len(value):
                ax.plot(kl, value, color=color, alpha=0.3, lw=1)
        kls = {p.variant: p for p in variant_points(runs, lambda r: _each(r, "kl"))}
        for point in variant_points(runs, lambda r: _each(r, f"reward_{key}")):
            if point.variant in kls:
                kl = kls[point.variant]
                ax.errorbar([kl.mean], [point.mean], xerr=kl.err(), yerr=point.err(), fmt="o", capsize=3, zorder=3,
                            color=f"C{variants.index(point.variant) % 10 if point.variant in variants else 0}",
                            label=point.variant)
        sft = variant_points(runs, lambda r: _sft(r, key), group=lambda r: "SFT")
        if sft:
            ax.errorbar([0.0], [sft[0].mean], yerr=sft[0].err(), fmt="*", ms=12, color="k", capsize=3, label="SFT",
                        zorder=4)
        ax.set_xlabel("KL(π ‖ π_SFT), nats per response")
        ax.set_ylabel(f"{key} reward")
        ax.set_title(f"{key} reward vs KL (held-out, 95% CI; lines: training)", fontsize=10)
    axes[0].legend(fontsize=8)
    return fig


def _each(run: ReportRun, key: str) -> Any:
    """The policy's per-prompt values of ``key`` (its mean where the run kept none)."""
    policy = run["results"].get("policy", {})
    return policy.get("per_prompt", {}).get(key) or policy.get(key)


def _sft(run: ReportRun, key: str) -> Any:
    """SFT's mean ``key`` reward; for gold with one seed, ± 1.96 standard errors (its per-prompt values are not kept)."""
    policy = run["results"].get("policy", {})
    value, se = policy.get(f"sft_reward_{key}"), policy.get(f"sft_reward_{key}_se")
    return [value - 1.96 * se, value + 1.96 * se] if _num(value) and _num(se) else value


def _draw_periodic(plt, series, panels):
    """Per variant the mid-training evaluations: with several seeds the mean over them and the band of the
    95% interval over seeds; with one, the evaluation's own interval (win rate: its CI; gold: ± 1.96 SE)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    curves: dict[tuple[str, str], list[tuple[int, float, Any, Any]]] = {}
    runs = [run for _, run, _ in series]
    variants = list(dict.fromkeys(run.get("variant", run["label"]) for run in runs))
    for ax, (key, title) in zip(axes[0], panels):
        for step in sorted({row["step"] for _, _, rows in series for row in rows if _num(row.get(key))}):
            def at(run, step=step):
                return next((row[key] for row in _periodic(run) if row["step"] == step and _num(row.get(key))), None)
            for point in variant_points(runs, at):
                if point.low is None:  # one seed: the interval the evaluation itself carries
                    row = next(row for row in _periodic(point.runs[0]) if row["step"] == step)
                    point = dataclasses.replace(point, low=_own_interval(row, key)[0], high=_own_interval(row, key)[1])
                curves.setdefault((key, point.variant), []).append((step, point.mean, point.low, point.high))
        for variant in variants:
            points = curves.get((key, variant), [])
            if not points:
                continue
            color = f"C{variants.index(variant) % 10}"
            steps, mean, low, high = zip(*points)
            ax.plot(steps, mean, marker="o", color=color, label=variant)
            if all(_num(v) for v in low + high):
                ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
        if key.startswith("win_rate"):
            ax.axhline(0.5, color="k", lw=1, ls="--")
        ax.set_xlabel("training step")
        ax.set_title(title + " (band: 95% CI)", fontsize=10)
    axes[0][0].legend(fontsize=8)
    return fig


def _periodic(run: ReportRun) -> list[dict[str, Any]]:
    return run["results"].get("policy", {}).get("train", {}).get("periodic") or []


def _own_interval(row: dict[str, Any], key: str) -> tuple[Any, Any]:
    """The interval a mid-training evaluation carries: the win rate's CI, the gold reward's ± 1.96 SE; else none."""
    stem = key.rsplit("/", 1)[0]
    if key.endswith("/rate") and _num(row.get(f"{stem}/ci_low")):
        return row[f"{stem}/ci_low"], row.get(f"{stem}/ci_high")
    if _num(row.get(f"{key}_se")):
        return row[key] - 1.96 * row[f"{key}_se"], row[key] + 1.96 * row[f"{key}_se"]
    return None, None


@hookimpl
def register_evaluators(register):
    register("rewards", RewardsEvaluator)
