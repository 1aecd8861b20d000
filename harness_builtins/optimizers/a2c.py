"""A2C for causal LMs: PPO's rollout, per-token reward and GAE, then one on-policy update.

Synchronous advantage actor-critic (Mnih et al. 2016): each batch is used for exactly one
gradient step on −A_t·log π_θ(y_t|s_t) (no ratio, no clipping, since the data is on-policy),
a squared-error value loss, an optional entropy bonus and the optional PPO-ptx term.
It is PPO's baseline: what the clipping and the extra epochs buy shows up against it.
"""
from __future__ import annotations

import torch
from pydantic import Field

from harness.api import (OnlineOptimizer, OnlineOptions, RLRun, Rollout, add_pretraining_loss, apply_update,
                         collect_rollout, global_masked_mean, hookimpl, k3, loss_mean, policy_outputs, process_mean,
                         rewards_and_advantages, rollout_metrics, sequence_logprobs)


class A2COptions(OnlineOptions):
    """A2C's own knobs on top of the shared rollout / reward / KL / GAE / critic / PTX options."""

    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (one step per batch, no trust region).")
    entropy_coef: float = Field(0.0, ge=0, description="Weight of the entropy bonus (0 disables).")


def a2c_update(run: RLRun, batch: Rollout, advantages, returns) -> dict[str, float]:
    """One gradient step on the whole batch: policy gradient + value regression − entropy bonus (+ ptx)."""
    o = run.options
    logprobs, entropy, values = policy_outputs(run, batch)
    policy_loss = -loss_mean(advantages * logprobs, batch.mask)  # means over the whole batch's tokens
    value_loss = 0.5 * loss_mean((values - returns) ** 2, batch.mask)
    entropy_bonus = loss_mean(entropy, batch.mask)
    loss = policy_loss + o.vf_coef * value_loss - o.entropy_coef * entropy_bonus
    stats = {"policy_loss": process_mean(policy_loss.item()), "value_loss": process_mean(value_loss.item())}
    loss = add_pretraining_loss(run, loss, stats)  # PPO-ptx, when ptx_coef > 0
    stats |= apply_update(run, loss)
    return stats | {"approx_kl": step_kl(run, batch)}


@torch.no_grad()
def step_kl(run: RLRun, batch: Rollout) -> float:
    """How far the one step moved the policy on this batch: k3 estimate of KL(π_θ_old ‖ π_θ_new).

    Without a trust region nothing bounds it; it is the number to compare with PPO's approx_kl.
    """
    new = sequence_logprobs(run.policy, batch.query_ids, batch.response_ids, batch.mask, batch.query_mask,
                            temperature=run.options.temperature)
    log_ratio = (new - batch.logprobs) * batch.mask
    return global_masked_mean(k3(log_ratio), batch.mask).item()


class A2C(OnlineOptimizer):
    """Advantage actor-critic: PPO's rollout and advantages with a single unclipped on-policy update."""

    Options = A2COptions
    name = "a2c"

    def step(self, run: RLRun, step: int) -> dict[str, float]:
        """Rollout, PPO's per-token rewards and GAE unchanged, one update, β update."""
        batch = collect_rollout(run, step)
        advantages, returns = rewards_and_advantages(run, batch)
        stats = a2c_update(run, batch, advantages, returns)
        metrics = rollout_metrics(run, batch, returns, self.name)
        run.kl_ctl.update(batch.mean_kl, n_steps=run.options.batch_size)  # the whole batch's mean KL
        return metrics | {f"a2c/{k}": v for k, v in stats.items()}


@hookimpl
def register_optimizers(register):
    register("a2c", A2C)
