"""RLOO: REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics"; Kool et al. 2019).

The whole response is one action: k responses per prompt, each one's KL-penalized reward minus
the mean of the other k − 1 as its baseline, then a REINFORCE step on log π_θ(y|x) — or, with
``update = "clipped"``, PPO's clipped ratio on the whole response, which lets a batch be reused.
Read top to bottom in the paper's order —
  1. sample k responses y_1..y_k ~ π_θ(·|x) per prompt; log π_θ and log π_SFT once, no grad;
  2. per-sequence reward R_i = r(x, y_i) − β·KL_i, KL_i = Σ_t log π_θ(y_i,t) − log π_SFT(y_i,t) (β = 0:
     no reference is loaded and R_i = r(x, y_i));
  3. advantage A_i = R_i − (1/(k−1))·Σ_{j≠i} R_j, the leave-one-out baseline (unbiased: it does not
     depend on y_i);
  4. update: ``reinforce`` — one step on −mean_i A_i·log π_θ(y_i|x); ``clipped`` — μ = ``iterations``
     passes of minibatch steps on −mean_i min(ρ_i·A_i, clip(ρ_i, 1−ε, 1+ε)·A_i), ρ_i = π_θ(y_i|x)/π_θ_old(y_i|x)
     (at ρ = 1, its gradient is REINFORCE's);
  5. log (``rloo/…``); an adaptive β moves toward ``kl_target``.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from harness.api import (GroupOptions, OnlineOptimizer, PolicyForward, RLRun, Rollout, add_pretraining_loss,
                         clipped_surrogate, collect_rollout_and_forward, group_updates, hookimpl, loss_mean,
                         normalized_scores, process_mean, rollout_metrics)


class RLOOOptions(GroupOptions):
    """RLOO's own knobs on top of the shared rollout / group / β / clip / PTX options."""

    update: Literal["reinforce", "clipped"] = Field(
        "reinforce", description="reinforce: one on-policy step per batch (the paper's); clipped: PPO's clipped "
                                 "ratio on whole responses, `iterations` passes of `minibatch_size` steps.")

    @model_validator(mode="after")
    def _reinforce_is_on_policy(self):
        if self.update == "reinforce" and (self.iterations > 1 or self.minibatch() != self.batch_size):
            raise ValueError("update = 'reinforce' takes one on-policy step per batch: leave iterations = 1 and "
                             "minibatch_size unset, or use update = 'clipped' to reuse a batch")
        return self


# --------------------------------------------------------------------------- steps 2–3: rewards and baseline
def sequence_rewards(scores: torch.Tensor, kl: torch.Tensor | None, beta: float) -> torch.Tensor:
    """R_i = r_i − β·KL_i: the KL penalty folded into each response's reward (the score alone without a reference)."""
    return scores if kl is None else scores - beta * kl


def leave_one_out(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Each sample's reward minus the mean reward of the other k − 1 samples of its prompt (consecutive rows)."""
    groups = rewards.view(-1, k)
    baseline = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - baseline).view(-1)


# --------------------------------------------------------------------------- step 4: the update
def rloo_loss(run: RLRun, mb: Rollout, forward: PolicyForward,
              advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE's −A·log π_θ(y|x), or the clipped surrogate on whole responses, as a mean over responses (+ PTX),
    from π_θ's ``forward`` over the minibatch."""
    o = run.options
    response_logprob = forward.logprobs.sum(-1)  # log π_θ(y|x): the whole response is the action
    ones = torch.ones_like(response_logprob)
    if o.update == "reinforce":
        loss, stats = loss_mean(-advantages * response_logprob, ones), {}
    else:
        per_response, clipfrac, approx_kl = clipped_surrogate(response_logprob, mb.logprobs.sum(-1), advantages,
                                                              ones, o.clip)
        loss, stats = loss_mean(per_response, ones), {"clipfrac": clipfrac, "approx_kl": approx_kl}
    stats["loss"] = process_mean(loss.item())
    loss = add_pretraining_loss(run, loss, stats)  # PPO-ptx, when ptx_coef > 0
    return loss, stats



# --------------------------------------------------------------------------- one RLOO step
class RLOO(OnlineOptimizer):
    """REINFORCE leave-one-out: k samples per prompt, per-sequence KL penalty, no critic."""

    Options = RLOOOptions
    name = "rloo"

    def step(self, run: RLRun, step: int) -> dict[str, float]:
        """One RLOO iteration in the paper's order."""
        o = run.options
        # 1. Rollout: k samples per prompt, scored; log π_θ_old and (when β > 0) log π_SFT once (a single step on
        #    the whole batch, as REINFORCE's, builds its loss on this same forward of π_θ: live).
        batch, live = collect_rollout_and_forward(run, step, samples_per_prompt=o.group_size, keep_graph=o.on_policy())
        # 2. Per-sequence reward: the score minus β·KL(π_θ‖π_SFT) of the whole response.
        rewards = sequence_rewards(normalized_scores(run, batch.scores), batch.kl, run.kl_ctl.value)
        # 3. Advantage: the reward minus the leave-one-out baseline of its prompt's group.
        advantages = leave_one_out(rewards, o.group_size)
        # 4. REINFORCE (or clipped) update on log π_θ(y|x).
        stats = group_updates(run, batch, advantages, live, rloo_loss)
        # 5. Log; adapt β toward the KL target (a no-op for a fixed β; β = 0 measures no KL).
        metrics = rollout_metrics(run, batch, None, self.name)
        if batch.mean_kl is not None:
            run.kl_ctl.update(batch.mean_kl, n_steps=o.batch_size)
        return metrics | {f"rloo/{k}": v for k, v in stats.items()}


@hookimpl
def register_optimizers(register):
    register("rloo", RLOO)
