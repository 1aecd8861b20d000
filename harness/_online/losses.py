"""The policy-gradient pieces the online optimizers share: the clipped surrogate and minibatches.

PPO's clipped objective (Schulman et al. 2017) elementwise — per token for PPO and GRPO, per
response for RLOO's clipped update — and the shuffled minibatches of several passes over one
rollout batch (PPO's ``ppo_epochs``, GRPO's μ iterations). How the elements become one loss (a
token mean, a mean of per-response means, a constant normalizer) is each optimizer's choice.
"""
from __future__ import annotations

from typing import Iterator

import torch

from harness._online.advantages import global_masked_mean
from harness._online.kl import k3


def clipped_surrogate(logprobs, old_logprobs, advantages, mask, clip: float) -> tuple[torch.Tensor, float, float]:
    """(−min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) per element, clipfrac, approx_kl), with ρ = π_θ/π_θ_old.

    Elements where ``mask`` is 0 have ρ = 1. approx_kl is the k3 estimate of KL(π_θ_old‖π_θ); it and
    clipfrac are means over the masked elements of the whole batch, however many processes hold it.
    """
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    with torch.no_grad():
        clipfrac = global_masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
        approx_kl = global_masked_mean(k3(log_ratio), mask)
    return torch.max(unclipped, clipped), float(clipfrac), float(approx_kl)


def minibatches(n: int, size: int, epochs: int) -> Iterator[torch.Tensor]:
    """Indices of shuffled minibatches, ``epochs`` passes over ``n`` samples."""
    for _ in range(epochs):
        order = torch.randperm(n)
        yield from order.split(size)
