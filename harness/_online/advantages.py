"""From scores to advantages: the per-token reward, GAE, whitening and running normalization.

Everything works on right-padded [B, T] tensors with a response mask that is 1 up to and
including EOS; positions after the end carry no reward, no value and no advantage.
Launched as several processes, each holds a slice of the batch: whitening, explained variance
and the losses (:func:`loss_mean`) use statistics of the whole batch, so a run computes the same
numbers whatever the number of processes.
"""
from __future__ import annotations

import torch

from harness._core.distributed import all_reduce_sum, world_size


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens only (padding must not dilute a loss or a statistic)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the real tokens."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)


def global_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_mean` over the real tokens of every process (no gradient: a statistic)."""
    sums = all_reduce_sum(torch.stack([(x * mask).sum(), mask.sum()]).detach().float())
    return sums[0] / sums[1].clamp(min=1)


def global_masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_var` over the real tokens of every process (no gradient)."""
    mean = global_masked_mean(x, mask)
    sums = all_reduce_sum(torch.stack([((x - mean) ** 2 * mask).sum(), mask.sum()]).detach().float())
    return sums[0] / (sums[1] - 1).clamp(min=1)


def loss_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Differentiable mean of ``x`` over the real tokens of the whole (multi-process) minibatch.

    Each process returns its token sum × processes / all tokens; DDP and DeepSpeed average the
    gradients over processes, which gives exactly the gradient of the global token mean. Its value
    is a process's share: :func:`process_mean` of it is the global mean (what is logged).
    """
    count = all_reduce_sum(mask.sum().detach().float())
    return (x * mask).sum() * world_size() / count.clamp(min=1)


def process_mean(value: float) -> float:
    """The mean of a per-process number over processes (itself in one process)."""
    return float(all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))[0]) / world_size()


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Scale to unit variance over real tokens (of the whole batch); ``shift_mean=False`` keeps the sign of rewards."""
    mean, var = global_masked_mean(x, mask), global_masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def per_token_rewards(scores, logprobs, ref_logprobs, mask, beta: float) -> torch.Tensor:
    """r_t = −β·(log π_θ(y_t) − log π_SFT(y_t)) on every token, plus the reward model's score on the last one."""
    rewards = -beta * (logprobs - ref_logprobs) * mask
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # index of the last real token (the EOS when there is one)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016); returns (advantages, returns = A + V).

    δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}; the value after the last real token is 0
    because values and rewards are zeroed past the mask.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def explained_variance(values, returns, mask) -> float:
    """1 − Var(R − V)/Var(R): 1 is a perfect critic, 0 no better than a constant (also when Var(R) = 0)."""
    var_returns = global_masked_var(returns, mask)
    return float(1.0 - global_masked_var(returns - values, mask) / var_returns) if var_returns > 0 else 0.0


class RunningMoments:
    """Running mean/std of reward-model scores, so β and the learning rate mean the same for any RM scale."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        """Merge a batch (Chan et al.'s parallel algorithm)."""
        n, mean, var = x.numel(), float(x.mean()), float(x.var(unbiased=False))
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.var**0.5 + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])
