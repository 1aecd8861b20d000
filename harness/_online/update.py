"""Phase two of an online step, on the run: shaped rewards and advantages, the PTX term, gradient steps.

:func:`rewards_and_advantages` is PPO's and A2C's steps 2–3 (the KL-penalized per-token reward,
then GAE); an optimizer without a critic (RLOO, GRPO) computes its own advantages from
:func:`normalized_scores` and still uses :func:`minibatch_updates` or :func:`apply_update` and
:func:`add_pretraining_loss`. The tensor math is in :mod:`harness._online.objectives`; what is here
reads or changes the run (β, the running score moments, the pretraining batches, the optimizer).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator

import torch

from harness._core import distributed
from harness._online.objectives import gae, masked_whiten, per_token_rewards, process_mean, ptx_loss
from harness._online.rollout import PolicyForward, Rollout, policy_outputs
from harness._online.run import RLRun


# --------------------------------------------------------------------------- rewards and advantages
def normalized_scores(run: RLRun, scores: torch.Tensor) -> torch.Tensor:
    """RM scores, divided by a running std and centred by a running mean when ``normalize_rewards``."""
    if not run.options.normalize_rewards:
        return scores
    everyone = [x for part in distributed.gather_objects(scores.tolist()) for x in part]
    run.score_moments.update(torch.tensor(everyone, dtype=scores.dtype))  # the same moments in every process
    return run.score_moments.normalize(scores)


def rewards_and_advantages(run: RLRun, batch: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2–3: the KL-penalized per-token reward, then GAE; returns (advantages, returns = A + V_old)."""
    o = run.options
    scores = normalized_scores(run, batch.scores)  # running mean/std of r_φ when normalize_rewards
    # r_t = −β·(log π_θ(y_t) − log π_SFT(y_t)), and r_φ(x, y) added on the last response token
    rewards = per_token_rewards(scores, batch.logprobs, batch.ref_logprobs, batch.mask, beta=run.kl_ctl.value)
    if o.whiten_rewards:
        rewards = masked_whiten(rewards, batch.mask, shift_mean=False)
    advantages, returns = gae(rewards, batch.values, batch.mask, o.gamma, o.lam)
    if o.whiten_advantages:
        advantages = masked_whiten(advantages, batch.mask)
    return advantages, returns


# --------------------------------------------------------------------------- PPO-ptx
def pretraining_loss(run: RLRun) -> torch.Tensor | None:
    """The PPO-ptx term on a fresh pretraining batch, or None when ``ptx_coef`` is 0."""
    if run.ptx is None:
        return None
    return ptx_loss(run.policy, *run.ptx.sample(run.accelerator.device))


def add_pretraining_loss(run: RLRun, loss: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
    """PPO-ptx: ``loss`` + γ·(LM loss on a fresh pretraining batch), since maximizing γ·E_pretrain[log π_θ]
    adds γ·(LM loss); its value lands in ``stats["ptx_loss"]``. ``loss`` itself when ``ptx_coef`` is 0."""
    ptx = pretraining_loss(run)
    if ptx is None:
        return loss
    stats["ptx_loss"] = process_mean(ptx.item())
    return loss + run.options.ptx_coef * ptx


# --------------------------------------------------------------------------- gradient steps
def apply_update(run: RLRun, loss: torch.Tensor) -> dict[str, float]:
    """One optimizer step on ``loss`` with global gradient-norm clipping; returns {"grad_norm": norm before clipping}.

    Under DeepSpeed the engine steps and clips inside ``backward`` (``gradient_clipping`` in its config;
    ``optimizer.step`` is then a no-op) and ``clip_grad_norm_`` reports the engine's norm, or None
    where the engine keeps none, in which case no grad_norm is reported rather than a made-up one.
    """
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    norm = run.accelerator.clip_grad_norm_(params, run.options.max_grad_norm)
    run.optimizer.step()
    return {} if norm is None else {"grad_norm": float(norm)}


def minibatches(n: int, size: int, epochs: int) -> Iterator[torch.Tensor]:
    """Indices of shuffled minibatches, ``epochs`` passes over ``n`` samples (PPO's ``ppo_epochs``, GRPO's μ)."""
    for _ in range(epochs):
        order = torch.randperm(n)
        yield from order.split(size)


def minibatch_updates(run: RLRun, n: int, loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]], *,
                      size: int, epochs: int, early_stop_kl: float = 0.0) -> dict[str, float]:
    """``epochs`` passes over the ``n`` responses this process holds, one gradient step per shuffled minibatch
    of ``size`` responses (global: each process steps on its share); the steps' statistics averaged, plus
    ``updates``. ``loss_fn(index)`` returns a minibatch's (loss, stats).

    With ``early_stop_kl``, a minibatch whose ``approx_kl`` to π_θ_old already exceeds it ends the passes
    before its step is taken (as Spinning Up's PPO does); it is a global statistic, so every process stops.
    One pass in one minibatch is the on-policy step: its single ``index`` is a permutation of the batch.
    """
    history: dict[str, list[float]] = defaultdict(list)
    updates = 0
    with run.timed("update"):
        for index in minibatches(n, size // run.processes, epochs):
            loss, stats = loss_fn(index)
            if early_stop_kl and stats["approx_kl"] > early_stop_kl:
                break
            stats |= apply_update(run, loss)
            updates += 1
            for key, value in stats.items():
                history[key].append(value)
    return {k: sum(v) / len(v) for k, v in history.items()} | {"updates": float(updates)}


GroupLoss = Callable[[RLRun, Rollout, PolicyForward, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def group_updates(run: RLRun, batch: Rollout, advantages: torch.Tensor, live: PolicyForward | None,
                  loss: GroupLoss) -> dict[str, float]:
    """A group optimizer's update (GRPO's, RLOO's): ``iterations`` passes of minibatch steps, statistics averaged.

    ``loss(run, minibatch, forward, advantages)`` takes π_θ's forward over the minibatch: the rollout's own
    rows of ``live`` when the update is one on-policy step on the whole batch (``GroupOptions.on_policy()``,
    the forward's graph kept by :func:`collect_rollout_and_forward`), else a fresh forward.
    """
    o = run.options

    def minibatch_loss(index):
        mb = batch.select(index)
        forward = policy_outputs(run, mb) if live is None else live.select(index)
        return loss(run, mb, forward, advantages[index])

    return minibatch_updates(run, len(batch), minibatch_loss, size=o.minibatch(), epochs=o.iterations)
