"""PPO for causal LMs, as in InstructGPT (Ouyang et al. 2022) and Ziegler et al. (2019).

Read top to bottom like cleanrl's ppo.py: the options, the two clipped losses, then one step in
the paper's order —
  1. rollout: sample y ~ π_θ(·|x), score r_φ(x, y); log π_θ_old, log π_SFT and V_old once, no grad;
  2. per-token reward: r_t = −β·(log π_θ − log π_SFT), plus r_φ(x, y) on the last response token;
  3. advantages: GAE(γ, λ) over response tokens, whitened;
  4. update: ``ppo_epochs`` passes over shuffled minibatches, clipped ratio and clipped value loss,
     plus the PPO-ptx pretraining term; stop early when the approximate KL passes ``early_stop_kl``;
  5. adapt β toward the KL target; log.
Steps 1–3, the loop, checkpoints and the summary come from the online toolkit
(:mod:`harness.api`); what is PPO's own is here.
"""
from __future__ import annotations

import torch
from pydantic import Field

from harness.api import (OnlineOptimizer, OnlineOptions, RLRun, Rollout, add_pretraining_loss, clipped_surrogate,
                         collect_rollout, hookimpl, loss_mean, minibatch_updates, policy_outputs, process_mean,
                         rewards_and_advantages, rollout_metrics)


class PPOOptions(OnlineOptions):
    """PPO's own knobs on top of the shared rollout / reward / KL / GAE / critic / PTX options."""

    clip: float = Field(0.2, gt=0, description="ε of the clipped ratio: ratio is kept within [1−ε, 1+ε].")
    clip_value: float = Field(0.2, ge=0, description="Clip new values to within this of the old ones (0: no clip).")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    minibatch_size: int = Field(16, ge=1, description="Responses per gradient step.")
    early_stop_kl: float = Field(0.0, ge=0, description="Stop a batch's epochs once approx KL exceeds this (0: never).")


# --------------------------------------------------------------------------- the clipped objectives
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip: float):
    """(loss, clipfrac, approx_kl) of L^CLIP = E[min(ρ·A, clip(ρ, 1−ε, 1+ε)·A)], ρ = π_θ/π_θ_old.

    The toolkit's per-token clipped surrogate, averaged over the tokens of the whole minibatch,
    however many processes hold a slice of it (see ``loss_mean``); approx_kl is the k3 estimator
    E[(ρ − 1) − log ρ] (Schulman 2020), always ≥ 0.
    """
    per_token, clipfrac, approx_kl = clipped_surrogate(logprobs, old_logprobs, advantages, mask, clip)
    return loss_mean(per_token, mask), clipfrac, approx_kl


def clipped_value_loss(values, old_values, returns, mask, clip: float) -> torch.Tensor:
    """½·E[max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)]: the critic may not jump far either."""
    unclipped = (values - returns) ** 2
    if clip <= 0:
        return 0.5 * loss_mean(unclipped, mask)
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * loss_mean(torch.max(unclipped, (clipped_values - returns) ** 2), mask)


# --------------------------------------------------------------------------- one PPO step
def ppo_loss(run: RLRun, mb: Rollout, advantages, returns) -> tuple[torch.Tensor, dict[str, float]]:
    """−L^CLIP + c_v·L^V (+ γ·L^ptx) on one minibatch, and its statistics."""
    o = run.options
    logprobs, _, values = policy_outputs(run, mb)
    policy_loss, clipfrac, approx_kl = clipped_policy_loss(logprobs, mb.logprobs, advantages, mb.mask, o.clip)
    value_loss = clipped_value_loss(values, mb.values, returns, mb.mask, o.clip_value)
    loss = policy_loss + o.vf_coef * value_loss
    stats = {"policy_loss": process_mean(policy_loss.item()), "value_loss": process_mean(value_loss.item()),
             "clipfrac": clipfrac, "approx_kl": approx_kl}
    loss = add_pretraining_loss(run, loss, stats)  # PPO-ptx: maximizing γ·E_pretrain[log π_θ] adds γ·(LM loss)
    return loss, stats


def ppo_update(run: RLRun, batch: Rollout, advantages, returns) -> dict[str, float]:
    """Step 4: ``ppo_epochs`` passes of minibatch steps (stopped early past ``early_stop_kl``); statistics averaged."""
    o = run.options

    def minibatch_loss(index):
        return ppo_loss(run, batch.select(index), advantages[index], returns[index])

    return minibatch_updates(run, len(batch), minibatch_loss, size=o.minibatch_size, epochs=o.ppo_epochs,
                             early_stop_kl=o.early_stop_kl)


class PPO(OnlineOptimizer):
    """Proximal Policy Optimization of π_SFT against a reward source, with a KL penalty to π_SFT."""

    Options = PPOOptions
    name = "ppo"

    def step(self, run: RLRun, step: int) -> dict[str, float]:
        """One PPO iteration in the paper's order."""
        # 1. Rollout: y ~ π_θ(·|x), r_φ(x, y); old log-probs, reference log-probs and values, once, no grad.
        batch = collect_rollout(run, step)
        # 2–3. Per-token reward −β·KL_t (+ r_φ on the last token) and GAE(γ, λ) advantages.
        advantages, returns = rewards_and_advantages(run, batch)
        # 4. Clipped policy and value updates over minibatches, ppo_epochs times (early stop on approx KL).
        stats = ppo_update(run, batch, advantages, returns)
        metrics = rollout_metrics(run, batch, returns, self.name)
        # 5. Adaptive β: move the KL penalty toward the target KL (a no-op for a fixed β).
        run.kl_ctl.update(batch.mean_kl, n_steps=run.options.batch_size)  # the whole batch's mean KL
        return metrics | {f"ppo/{k}": v for k, v in stats.items()}


@hookimpl
def register_optimizers(register):
    register("ppo", PPO)
