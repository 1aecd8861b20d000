"""The objectives of an online step: from scores to advantages, and the terms a loss is made of.

In the order a step uses them —

- **reward shaping**: :class:`RunningMoments` (the running mean/std that ``normalize_rewards``
  divides scores by), :func:`per_token_rewards` (−β·(log π_θ − log π_SFT) per token, the score on
  the last: InstructGPT's KL-penalized reward);
- **advantages**: :func:`gae` (Schulman et al. 2016), :func:`masked_whiten`, :func:`explained_variance`;
- **KL**: the estimator :func:`k3` and the coefficient β's controller (:func:`kl_controller`:
  adaptive, Ziegler et al. 2019, or fixed);
- **losses**: :func:`clipped_surrogate` (PPO's clipped objective, per token or per response),
  :func:`loss_mean` (a token mean over the whole batch), PPO-ptx's pretraining LM loss
  (:class:`PretrainingBatches`, :func:`ptx_loss`; InstructGPT eq. 2).

Nothing here takes the run: these are functions of tensors. :mod:`harness._online.update` applies
them to a run (its β, its running moments, its pretraining batches).

Everything works on right-padded [B, T] tensors with a response mask that is 1 up to and
including EOS; positions after the end carry no reward, no value and no advantage.
Launched as several processes, each holds a slice of the batch: whitening, explained variance,
the statistics and the losses (:func:`loss_mean`) use the whole batch, so a run computes the same
numbers whatever the number of processes. How the per-element terms become one loss (a token
mean, a mean of per-response means, a constant normalizer) is each optimizer's choice.
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness._core.distributed import all_reduce_sum, world_size
from harness._core.errors import HarnessError
from harness._core.generation import pad_id_of
from harness._core.text import encode_prompt


# --------------------------------------------------------------------------- means over the whole batch
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


# --------------------------------------------------------------------------- reward shaping and advantages
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


# --------------------------------------------------------------------------- KL: the estimator and β
# Estimators (Schulman 2020, "Approximating KL divergence"), from samples of p, per token, with
# log_ratio = log q − log p:
# - k1 = −log_ratio: unbiased, can be negative; summed over a response it is ``Rollout.kl``, the
#   per-sequence KL(π_θ‖π_SFT) of PPO's per-token reward and of RLOO's penalty;
# - k3 = (e^log_ratio − 1) − log_ratio: unbiased and always ≥ 0; GRPO's KL loss term (q = π_SFT,
#   p = π_θ) and every optimizer's ``approx_kl`` (q = π_θ_new, p = π_θ_old).
# β: Ziegler et al. 2019 (§2.2) adapt it so the policy's KL to the reference tracks a target (too far
# from π_SFT and β rises, too close and it falls); InstructGPT keeps it fixed. Both controllers expose
# ``value``, ``update(kl, n_steps)`` and a state dict (checkpointed with the run).
def k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """(q/p − 1) − log(q/p) per element, for ``log_ratio`` = log q − log p on samples of p: ≥ 0, unbiased for KL(p‖q)."""
    return (torch.exp(log_ratio) - 1.0) - log_ratio


class AdaptiveKLController:
    """β_{t+1} = β_t·(1 + K_β·e_t) with e_t = clip(KL_t / KL_target − 1, −0.2, 0.2) and K_β = n_steps / horizon."""

    def __init__(self, init: float, target: float, horizon: int):
        self.value = init
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n_steps: int) -> None:
        """``kl``: mean per-sequence KL of the last batch; ``n_steps``: samples in it."""
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class FixedKLController:
    """A constant β (InstructGPT's choice); ``update`` does nothing."""

    def __init__(self, init: float):
        self.value = init

    def update(self, kl: float, n_steps: int) -> None:  # noqa: ARG002 - same interface as the adaptive one
        return None

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


def kl_controller(adaptive: bool, init: float, target: float, horizon: int):
    """The controller an optimizer's options ask for."""
    return AdaptiveKLController(init, target, horizon) if adaptive else FixedKLController(init)


# --------------------------------------------------------------------------- the clipped surrogate
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


# --------------------------------------------------------------------------- PPO-ptx
# RL against a reward model erodes what the model knew (the "alignment tax"); a language-model loss
# on pretraining text, weighted by ``ptx_coef``, pulls it back (InstructGPT eq. 2: γ·E_pretrain[log π_θ]).
# Each update draws a fresh batch (from the global torch RNG, which checkpoints restore).
class PretrainingBatches:
    """Random batches of pretraining texts, tokenized as BOS + text + EOS and truncated."""

    def __init__(self, texts: Sequence[str], tokenizer, batch_size: int, max_len: int):
        if not texts:
            raise HarnessError("ptx_coef > 0 needs pretraining texts, but the world has none; set ptx_coef = 0.")
        self.texts, self.tokenizer = list(texts), tokenizer
        self.batch_size, self.max_len = batch_size, max_len

    def sample(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask), right-padded."""
        picks = torch.randint(len(self.texts), (self.batch_size,)).tolist()
        rows = [(encode_prompt(self.tokenizer, self.texts[i]) + [self.tokenizer.eos_token_id])[: self.max_len]
                for i in picks]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_id_of(self.tokenizer), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
        return ids.to(device), mask.to(device)


def ptx_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−mean log π_θ(x_t | x_<t) over the real tokens of a pretraining batch."""
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
