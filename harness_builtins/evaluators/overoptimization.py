"""Evaluator ``overoptimization``: is the policy climbing the proxy at the gold reward's expense?

Goodhart's law in RLHF (Gao et al. 2022): past some KL, optimizing a learned reward keeps
raising it while the true quality turns down. This evaluator reports the signals a reader needs
to see that happening, all in ``results.json`` under ``overoptimization``:

* over training (from the policy stage's curve): the correlation of proxy and gold reward across
  steps, the gold reward's peak (step, KL) against its final value, and the proxy's gain;
* on the held-out samples: how strongly response length drives the proxy and the gold reward
  (a length-hacking policy shows a proxy–length correlation the gold judge does not share), and
  how often the proxy orders a (policy, SFT) pair of responses to the same prompt as gold does
  (``proxy_gold_pair_agreement``, gold ties left out). A reward model can score 0.70 on its
  held-out feedback and still be at chance here: the policy's text is not what it was trained on;
* for an ensemble reward source: the members' disagreement on policy vs SFT samples (it grows
  where the policy has left the reward models' training distribution).
"""
from __future__ import annotations

from statistics import fmean
from typing import Any, Sequence

import numpy as np

from harness.api import (SMOOTH, Cell, EvalSamples, NoOptions, Plot, ReportRun, StageContext, WithMemberScores,
                         hookimpl, moving_average, pearson, smooth)


def curve_signals(curve: Sequence[dict[str, float]]) -> dict[str, float]:
    """Proxy–gold correlation over training, gold peak vs final, proxy gain (smoothed)."""
    rows = [c for c in curve if "reward/proxy" in c and c.get("reward/gold") is not None]
    if len(rows) < 3:
        return {}
    proxy = moving_average([r["reward/proxy"] for r in rows], SMOOTH)
    gold = moving_average([r["reward/gold"] for r in rows], SMOOTH)
    peak = max(range(len(gold)), key=gold.__getitem__)
    return {
        "train_proxy_gold_corr": pearson([r["reward/proxy"] for r in rows], [r["reward/gold"] for r in rows]),
        "proxy_gain": proxy[-1] - proxy[0],
        "gold_gain": gold[-1] - gold[0],
        "gold_peak": gold[peak],
        "gold_peak_step": float(rows[peak]["step"]),
        "gold_peak_kl": float(rows[peak].get("kl", float("nan"))),
        "gold_final": gold[-1],
        "gold_drop_from_peak": gold[peak] - gold[-1],
    }


def pair_agreement(proxy_a, proxy_b, gold_a, gold_b, tol: float = 1e-9) -> dict[str, float]:
    """Share of the pairs (a_i, b_i) that gold does not tie on which the proxy agrees with gold's order."""
    decided = [(pa - pb, ga - gb) for pa, pb, ga, gb in zip(proxy_a, proxy_b, gold_a, gold_b) if abs(ga - gb) > tol]
    if not decided:
        return {"proxy_gold_pairs": 0.0}
    agree = sum((dp > 0) == (dg > 0) for dp, dg in decided)
    return {"proxy_gold_pair_agreement": agree / len(decided), "proxy_gold_pairs": float(len(decided))}


class OverOptimization:
    """Proxy vs gold over training and KL, length–reward correlations, ensemble disagreement."""

    Options = NoOptions
    periodic = True  # also runs mid-training on the in-memory policy ([evaluation] every)

    def __init__(self, options: NoOptions) -> None:
        self.options = options

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict[str, Any]:
        prompts, policy = list(samples.prompts), list(samples.policy)
        reward, gold = ctx.components.reward, ctx.world.gold()
        lengths = [float(len(t.split())) for t in policy]
        proxy = reward.score(prompts, policy).tolist()
        out: dict[str, Any] = {"length_proxy_corr": pearson(lengths, proxy), "kl": fmean(samples.kl)}
        if gold is not None:
            gold_scores = [gold.score(p, t) for p, t in zip(prompts, policy)]
            out["length_gold_corr"] = pearson(lengths, gold_scores)
            out["proxy_gold_corr"] = pearson(proxy, gold_scores)
            sft_proxy = reward.score(prompts, list(samples.sft)).tolist()
            sft_gold = [gold.score(p, t) for p, t in zip(prompts, samples.sft)]
            out |= pair_agreement(proxy, sft_proxy, gold_scores, sft_gold)
        out.update(curve_signals(ctx.summaries.get("policy", {}).get("curve", [])))
        if isinstance(reward, WithMemberScores):
            out["ensemble_std_policy"] = float(reward.member_scores(prompts, policy).std(0).mean())
            out["ensemble_std_sft"] = float(reward.member_scores(prompts, list(samples.sft)).std(0).mean())
        ctx.log({f"overoptimization/{k}": v for k, v in out.items()}, 0)
        return {"overoptimization": out}

    def headline(self, fragment: dict[str, Any]) -> list[Cell]:
        """How often the optimized reward orders a held-out (policy, SFT) pair as gold does (with a gold judge)."""
        out = fragment["overoptimization"]
        if "proxy_gold_pair_agreement" not in out:
            return []
        return [Cell("proxy agrees with gold", out["proxy_gold_pair_agreement"], better="higher",
                     note=f"{out.get('proxy_gold_pairs', 0):.0f} held-out pairs gold decides")]


    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]:
        """``gold_vs_proxy.png``: proxy and gold reward over training steps (over-optimization shows as proxy
        rising while gold turns down)."""
        if not any(r["curve"] for r in runs):
            return []
        return [Plot("gold_vs_proxy.png", lambda plt: _draw_gold_vs_proxy(plt, runs), note=CURVE_NOTE)]

    @classmethod
    def report_notes(cls, runs: Sequence[ReportRun]) -> list[str]:
        """What "proxy agrees with gold" means, and which runs hacked the proxy (proxy up, gold down vs SFT)."""
        notes = []
        if any("proxy_gold_pair_agreement" in r["results"].get("overoptimization", {}) for r in runs):
            notes.append("Proxy agrees with gold: the share of held-out (policy, SFT) pairs the gold judge does not "
                         "tie that the optimized reward orders as gold does.")
        for run in runs:
            p = run["results"].get("policy", {})
            values = [p.get(k) for k in ("sft_reward_proxy", "reward_proxy", "sft_reward_gold", "reward_gold")]
            if all(isinstance(v, (int, float)) for v in values) and values[1] > values[0] and values[3] < values[2]:
                notes.append(f"- **{run['label']}**: proxy reward rose ({values[0]:.3f} → {values[1]:.3f}) while gold "
                             f"fell ({values[2]:.3f} → {values[3]:.3f}): over-optimization of the proxy.")
        return notes


CURVE_NOTE = ("With several seeds a variant's line is the mean of its seeds' curves and the band their range; a "
              "training log keeps each step's batch mean only, so one seed's curve has no band. Training curves are means over each step's rollout batch; every variant sees the same prompts at a "
              "given step, so batch difficulty moves their gold curves together. The held-out numbers (table, "
              "frontier points, mid-training evaluations) are on fixed prompts.")


def _draw_gold_vs_proxy(plt, runs: Sequence[ReportRun]):
    """Per variant its training curves; with several seeds the mean curve over them and a band of their range."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    variants: dict[str, list[ReportRun]] = {}
    for run in runs:
        if run["curve"]:
            variants.setdefault(run.get("variant", run["label"]), []).append(run)
    for i, (variant, members) in enumerate(variants.items()):
        for ax, key in zip(axes, ("reward/proxy", "reward/gold")):
            curves = [smooth([c.get(key) for c in run["curve"]]) for run in members]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            steps = [c.get("step", j + 1) for j, c in enumerate(members[0]["curve"])][:length]
            stacked = np.array([c[:length] for c in curves])
            ax.plot(steps, stacked.mean(axis=0), color=f"C{i % 10}",
                    label=variant + (f" ({len(curves)} seeds)" if len(curves) > 1 else ""))
            if len(curves) > 1:
                ax.fill_between(steps, stacked.min(axis=0), stacked.max(axis=0), color=f"C{i % 10}", alpha=0.2, lw=0)
    for ax, key in zip(axes, ("proxy", "gold")):
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{key} reward (moving average of {SMOOTH})")
        ax.set_title(f"{key} reward during training (band: range over seeds)", fontsize=10)
    axes[0].legend(fontsize=8)
    return fig


@hookimpl
def register_evaluators(register):
    register("overoptimization", OverOptimization)
