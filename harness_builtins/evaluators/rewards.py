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

import math
from statistics import fmean, stdev
from typing import Any, Sequence


from harness.api import Cell, EvalSamples, Options, Plot, ReportRun, StageContext, hookimpl, smooth

# the panels of periodic.png: mid-training evaluations ([evaluation] every) of this evaluator and win_rate
PERIODIC_PANELS = (("win_rate_vs_sft/rate", "held-out win rate vs SFT"), ("policy/reward_gold", "held-out gold reward"),
                   ("policy/reward_proxy", "held-out proxy reward"))


def _lengths(texts) -> list[int]:
    return [len(t.split()) for t in texts]


class RewardsOptions(Options):
    """The ``[evaluation.rewards]`` table: no options (the per-prompt values are always kept)."""


class RewardsEvaluator:
    """Proxy/gold reward, KL and response length of the policy and the SFT model (held-out)."""

    Options = RewardsOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: RewardsOptions) -> None:
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
                              per_prompt=each("reward_gold")))
        return cells + [Cell("KL (nats)", out.get("kl"), better="lower", note="policy ‖ SFT, per response",
                             per_prompt=each("kl")),
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for key, ax in zip(("proxy", "gold"), axes):
        for i, run in enumerate(runs):
            policy = run["results"].get("policy", {})
            kl, value = smooth([c.get("kl") for c in run["curve"]]), smooth([c.get(f"reward/{key}") for c in run["curve"]])
            if kl and value and len(kl) == len(value):
                ax.plot(kl, value, color=f"C{i % 10}", alpha=0.35, lw=1)
            if _num(policy.get("kl")) and _num(policy.get(f"reward_{key}")):
                ax.scatter([policy["kl"]], [policy[f"reward_{key}"]], color=f"C{i % 10}", label=run["label"], zorder=3)
        sft = [v for r in runs if _num(v := r["results"].get("policy", {}).get(f"sft_reward_{key}"))]
        if sft:
            ax.scatter([0.0], [fmean(sft)], marker="*", s=120, color="k", label="SFT", zorder=4)
        ax.set_xlabel("KL(π ‖ π_SFT), nats per response")
        ax.set_ylabel(f"{key} reward")
        ax.set_title(f"{key} reward vs KL (held-out; lines: training)")
    axes[0].legend(fontsize=8)
    return fig


def _draw_periodic(plt, series, panels):
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, run, rows in series:
            points = [(row["step"], row[key]) for row in rows if key in row]
            if points:
                ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", label=run["label"])
        if key.startswith("win_rate"):
            ax.axhline(0.5, color="k", lw=1, ls="--")
        ax.set_xlabel("training step")
        ax.set_title(title)
    axes[0][0].legend(fontsize=8)
    return fig


@hookimpl
def register_evaluators(register):
    register("rewards", RewardsEvaluator)
