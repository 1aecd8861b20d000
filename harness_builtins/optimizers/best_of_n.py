"""Best-of-n: π_SFT sampled n times, the reward source keeps the best (Nakano et al. 2021; Gao et al. 2022).

The baseline of the over-optimization literature: no weights change, yet the proxy reward climbs
with n, and so does the distance from π_SFT,
    KL_bon(n) = log n − (n − 1)/n  nats
(Stiennon et al. 2020, App. G.3; Gao et al. 2022 fit gold reward against it; Beirami et al. 2024
show it is an upper bound of the exact KL, tight when the n samples are distinct).

It is a policy for evaluation: :meth:`BestOfN.evaluation_policy` hands the evaluation stage a
:class:`BestOfNPolicy`, whose response to a held-out prompt is the highest-scoring of n samples of
π_SFT (ties: the first). Win rate, gold and proxy reward, diversity and over-optimization read
those responses like any policy's, and the KL they see is KL_bon. Its weights are π_SFT's, saved
as the stage's policy, so a log-likelihood benchmark (``lm_eval_tax``) scores π_SFT: its tax is 0
by construction. The first of the n samples is drawn exactly as the π_SFT side of the comparison
is (same seed, same batches), so best-of-1 *is* π_SFT: win rate 0.5, KL 0.

In ``[compare]``, ``"optimizer.best_of_n.n" = [1, 2, 4, 8, 16, 32]`` sweeps it; the report draws
held-out gold and proxy reward against KL_bon on one plot (``best_of_n.png``).
"""
from __future__ import annotations

import math
import random
import shutil
from typing import Any, Sequence

import torch
from pydantic import Field

from harness.api import (HarnessError, Options, Plot, Prompt, ReportRun, RewardSource, StageContext, atomic_directory,
                         hookimpl, load_causal_lm, sample_texts, variant_points)


class BestOfNOptions(Options):
    """Best-of-n's one knob; sampling (temperature, length, prompts) is the evaluation's."""

    n: int = Field(16, ge=1, description="Samples of π_SFT per prompt; the reward source keeps the highest-scoring "
                                         "(1: π_SFT itself).")


def kl_bon(n: int) -> float:
    """KL(best-of-n ‖ π_SFT) = log n − (n − 1)/n nats (an upper bound; exact for distinct samples)."""
    return math.log(n) - (n - 1) / n


def pick_best(scores: torch.Tensor) -> torch.Tensor:
    """For scores [n, prompts], the index of the best of the n per prompt (the first of equal ones)."""
    return scores.argmax(0)


def candidate_seed(seed: int, j: int) -> int:
    """The sampling seed of candidate ``j``: the evaluation's own seed for the first (π_SFT's sample)."""
    return seed if j == 0 else random.Random(f"{seed}:best-of-n:{j}").getrandbits(31)


class BestOfNPolicy:
    """π_SFT sampled n times per prompt, the reward source picking: what evaluation samples for best-of-n."""

    def __init__(self, model, tokenizer, world, reward: RewardSource, n: int):
        self.model, self.tokenizer, self.world, self.reward, self.n = model, tokenizer, world, reward, n

    def respond(self, prompts: Sequence[Prompt], settings, seed: int) -> tuple[list[str], list[float]]:
        """The best of n samples per prompt and its KL to π_SFT (KL_bon, the same for every prompt)."""
        candidates = [sample_texts(self.model, self.tokenizer, self.world, prompts, settings, candidate_seed(seed, j))
                      for j in range(self.n)]
        scores = torch.stack([torch.as_tensor(self.reward.score(list(prompts), texts), dtype=torch.float32).cpu()
                              for texts in candidates])
        best = pick_best(scores).tolist()
        return [candidates[j][i] for i, j in enumerate(best)], [kl_bon(self.n)] * len(prompts)


class BestOfN:
    """Best-of-n sampling of π_SFT against the reward source: no training, a policy for evaluation."""

    Options = BestOfNOptions
    mode = "online"  # it needs the reward source (to pick), though it trains nothing

    def __init__(self, options: BestOfNOptions | None = None):
        self.options = options or BestOfNOptions()

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        """Save π_SFT as the stage's policy (its weights are best-of-n's); the summary says n and KL_bon."""
        if reward is None:
            raise HarnessError("optimizer 'best_of_n' picks with a reward source ([reward] in the experiment).")
        with atomic_directory(ctx.stage_dir / "model") as tmp:
            shutil.copytree(ctx.artifacts["sft"], tmp, dirs_exist_ok=True)
        n = self.options.n
        return {"optimizer": "best_of_n", "n": n, "kl_bon": kl_bon(n), "steps": 0, "curve": []}

    def evaluation_policy(self, ctx: StageContext) -> BestOfNPolicy:
        """What evaluation samples instead of the saved weights: n samples of π_SFT, the run's reward source picks."""
        model, tokenizer = load_causal_lm(ctx.artifacts["sft"])
        model.to("cuda" if ctx.experiment.compute.uses_gpu else "cpu")
        return BestOfNPolicy(model, tokenizer, ctx.world, ctx.components.reward, self.options.n)


    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]:
        """``best_of_n.png``: held-out gold and proxy reward against KL_bon, one point per n with its 95% interval
        over the prompts (and seeds, where several ran) — Gao et al. 2022's baseline curve."""
        picked = [r for r in runs if "kl_bon" in r["results"].get("policy", {}).get("train", {})]
        return [Plot("best_of_n.png", lambda plt: _draw_best_of_n(plt, picked))] if picked else []


def _draw_best_of_n(plt, runs: Sequence[ReportRun]):
    fig, ax = plt.subplots(figsize=(6, 4))
    n_of = {r["results"]["policy"]["train"]["n"]: r["results"]["policy"]["train"]["kl_bon"] for r in runs}
    for key, color in (("proxy", "C0"), ("gold", "C3")):
        points = variant_points(runs, lambda r: (p := r["results"]["policy"]).get("per_prompt", {}).get(f"reward_{key}")
                                or p.get(f"reward_{key}"), group=lambda r: r["results"]["policy"]["train"]["n"])
        points = sorted(points, key=lambda point: n_of[int(point.variant)])
        if not points:
            continue
        kl = [n_of[int(p.variant)] for p in points]
        low = [p.mean - p.low if p.low is not None else 0.0 for p in points]
        high = [p.high - p.mean if p.high is not None else 0.0 for p in points]
        ax.errorbar(kl, [p.mean for p in points], yerr=[low, high], marker="o", color=color, capsize=3,
                    label=f"{key} reward (held-out, 95% CI)")
        for k, point in zip(kl, points):
            ax.annotate(f"n={point.variant}", (k, point.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL_bon = log n − (n−1)/n, nats")
    ax.set_ylabel("reward")
    ax.set_title("best-of-n: reward vs KL to π_SFT")
    ax.legend(fontsize=8)
    return fig


@hookimpl
def register_optimizers(register):
    register("best_of_n", BestOfN)
