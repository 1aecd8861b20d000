"""RLOO (Ahmadian et al. 2024): REINFORCE with a leave-one-out baseline over k samples per prompt.

A minimal RLOO, registered as ``mini_rloo`` (the built-in ``rloo`` is the complete one). It keeps
OnlineOptions' critic options unused: a plugin without a critic can subclass GroupOptions instead.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from harness.api import (OnlineOptimizer, OnlineOptions, RLRun, apply_update, collect_rollout, policy_outputs,
                         rollout_metrics)


class RLOOOptions(OnlineOptions):
    k: int = Field(4, ge=2, description="Samples per prompt; each one's baseline is the mean reward of the other k−1.")
    value_model: Literal["separate", "shared"] = Field("shared", description="RLOO has no critic; 'shared' keeps the unused value head small.")


def leave_one_out(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Each sample's reward minus the mean reward of the other k−1 samples of its prompt."""
    groups = rewards.view(-1, k)
    baseline = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - baseline).view(-1)


class RLOO(OnlineOptimizer):
    """REINFORCE leave-one-out: k samples per prompt, no critic, a per-sequence KL penalty."""

    Options = RLOOOptions
    name = "rloo"

    def step(self, run: RLRun, step: int) -> dict[str, float]:
        k = run.options.k
        # 1. Rollout: k samples per prompt, scored; log π_θ_old and log π_SFT once, no grad.
        batch = collect_rollout(run, step, samples_per_prompt=k)
        # 2. Per-sequence reward: the score minus β·KL(π_θ‖π_SFT) of the whole sequence.
        rewards = batch.scores - run.kl_ctl.value * batch.kl
        # 3. Advantage: the reward minus the leave-one-out baseline of its prompt's group.
        advantages = leave_one_out(rewards, k)
        # 4. REINFORCE: one gradient step on −A·log π_θ(y|x).
        logprobs, _, _ = policy_outputs(run, batch)
        loss = -(advantages * logprobs.sum(-1)).mean()
        stats = apply_update(run, loss)
        # 5. Log; adapt β toward the KL target (the batch's mean KL, measured in the rollout).
        metrics = rollout_metrics(run, batch, None, self.name)
        run.kl_ctl.update(batch.mean_kl, n_steps=run.options.batch_size)
        return metrics | {"rloo/loss": loss.item()} | {f"rloo/{key}": v for key, v in stats.items()}
