"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath §4.1, Algorithm 1).

No critic: G responses are sampled per prompt and each one's advantage is its reward relative to
its group's. Read top to bottom in the paper's order —
  1. sample G outputs {o_i} ~ π_θ_old(·|q) per question q; log π_θ_old and log π_SFT once, no grad;
  2. reward r_i of each output from the reward source (outcome supervision: one score per output);
  3. advantage Â_{i,t} = (r_i − mean(r)) / (std(r) + ε) over the group, the same for every token t of o_i;
  4. μ iterations of the clipped update on J_GRPO: per token min(ρ·Â, clip(ρ, 1−ε, 1+ε)·Â) − β·D_KL,
     D_KL = π_SFT/π_θ − log(π_SFT/π_θ) − 1 (the k3 estimator, unbiased and ≥ 0), and β = 0 loads no
     reference model at all;
  5. log (``grpo/…``); an adaptive β (``adaptive_kl``; the paper's is fixed) moves toward ``kl_target``.
How the per-token terms become one loss is ``loss_type``:
  - ``grpo``: the paper's (1/G)·Σ_i (1/|o_i|)·Σ_t — each response's token mean, then the mean over responses;
  - ``dr_grpo`` (Liu et al. 2025, "Understanding R1-Zero-like training"): no std in the advantage and a
    constant normalizer, Σ_i Σ_t / (G·max_new_tokens), removing the length and difficulty biases;
  - ``dapo`` (Yu et al. 2025): one token-level mean over the whole batch, so long responses weigh per token.
The rollout, reference, k3, clipped surrogate, minibatches, loop, checkpoints and summary are the
online toolkit's (:mod:`harness.api`); what is GRPO's own is here.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from harness.api import (GroupOptions, OnlineOptimizer, PolicyForward, RLRun, Rollout, add_pretraining_loss,
                         clipped_surrogate, collect_rollout_and_forward, global_masked_mean, group_updates, hookimpl,
                         k3, kl_coef_field, loss_mean, normalized_scores, process_mean, rollout_metrics)

ADVANTAGE_EPS = 1e-4  # ε of (r − mean) / (std + ε): a group of equal rewards gets advantage 0, not NaN (as trl)


class GRPOOptions(GroupOptions):
    """GRPO's own knobs on top of the shared rollout / group / β / clip / PTX options."""

    init_kl_coef: float = kl_coef_field(0.04)  # the paper's β of the k3 KL loss term
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = Field(
        "grpo", description="grpo: mean over responses of each one's token mean (Shao et al.); dr_grpo: no std "
                            "scaling, token sums / max_new_tokens (Liu et al. 2025); dapo: one token mean over the "
                            "batch (Yu et al. 2025).")


# --------------------------------------------------------------------------- step 3: group-relative advantages
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """(r_i − mean of its group) / (std of its group + ε), or only centred when not ``scale`` (Dr. GRPO).

    ``rewards`` holds the groups in consecutive rows; std is the sample std (Bessel's n − 1, as trl).
    """
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    if scale:
        centred = centred / (groups.std(1, keepdim=True) + ADVANTAGE_EPS)
    return centred.view(-1)


# --------------------------------------------------------------------------- step 4: the objective
def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_new_tokens: int) -> torch.Tensor:
    """One loss from per-token terms, the ``loss_type`` way, over the whole (multi-process) minibatch."""
    if loss_type == "dapo":
        return loss_mean(per_token, mask)
    normalizer = mask.sum(-1).clamp(min=1) if loss_type == "grpo" else float(max_new_tokens)
    per_response = (per_token * mask).sum(-1) / normalizer
    return loss_mean(per_response, torch.ones_like(per_response))


def grpo_loss(run: RLRun, mb: Rollout, forward: PolicyForward,
              advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """−J_GRPO on one minibatch, from π_θ's ``forward`` over it: clipped surrogate + β·k3 KL to π_SFT per token,
    aggregated (+ PTX)."""
    o = run.options
    logprobs = forward.logprobs
    # the clipped surrogate, with each response's advantage on every one of its tokens
    per_token, clipfrac, approx_kl = clipped_surrogate(logprobs, mb.logprobs, advantages[:, None], mb.mask, o.clip)
    stats = {"clipfrac": clipfrac, "approx_kl": approx_kl}
    beta = run.kl_ctl.value
    if mb.ref_logprobs is not None and beta > 0:  # the KL term: k3 with log(π_SFT/π_θ), per token
        kl = k3(mb.ref_logprobs - logprobs) * mb.mask
        per_token = per_token + beta * kl
        stats["kl_loss"] = float(global_masked_mean(kl.detach(), mb.mask))
    loss = aggregate(per_token, mb.mask, o.loss_type, o.max_new_tokens)
    stats["loss"] = process_mean(loss.item())
    loss = add_pretraining_loss(run, loss, stats)  # PPO-ptx, when ptx_coef > 0
    return loss, stats



def group_statistics(rewards: torch.Tensor, group_size: int) -> dict[str, float]:
    """Mean within-group reward std, and the share of groups whose rewards are all equal (no signal)."""
    std = rewards.view(-1, group_size).std(1)
    ones = torch.ones_like(std)
    return {"reward_std": float(global_masked_mean(std, ones)),
            "zero_std_frac": float(global_masked_mean((std < 1e-8).float(), ones))}


# --------------------------------------------------------------------------- one GRPO step
class GRPO(OnlineOptimizer):
    """Group Relative Policy Optimization: G samples per prompt, group-normalized advantages, no critic."""

    Options = GRPOOptions
    name = "grpo"

    def step(self, run: RLRun, step: int) -> dict[str, float]:
        """One iteration of Algorithm 1 (the reward model is not retrained: step 5 of the paper is left out)."""
        o = run.options
        # 1–2. G outputs per question from π_θ_old, scored; log π_θ_old and (when β > 0) log π_SFT, once.
        #      At μ = 1 on the whole batch, π_θ's forward keeps its graph (live) for the single update:
        #      ρ = 1, one forward saved.
        batch, live = collect_rollout_and_forward(run, step, samples_per_prompt=o.group_size, keep_graph=o.on_policy())
        # 3. Group-relative advantage of each output, on all its tokens (Dr. GRPO: centred only).
        scores = normalized_scores(run, batch.scores)  # running mean/std of r first, when normalize_rewards
        advantages = group_advantages(scores, o.group_size, scale=o.loss_type != "dr_grpo")
        # 4. μ iterations of clipped updates with the β·k3 KL term.
        stats = group_updates(run, batch, advantages, live, grpo_loss) | group_statistics(batch.scores, o.group_size)
        metrics = rollout_metrics(run, batch, None, self.name)
        # 5. An adaptive β moves toward kl_target (a fixed β, the paper's, does not); β = 0 measures no KL.
        if batch.mean_kl is not None:
            run.kl_ctl.update(batch.mean_kl, n_steps=o.batch_size)
        return metrics | {f"grpo/{k}": v for k, v in stats.items()}


@hookimpl
def register_optimizers(register):
    register("grpo", GRPO)
