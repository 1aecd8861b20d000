"""KL between two policies: the estimators, and the coefficient β of the penalty −β·KL(π_θ‖π_SFT).

Estimators (Schulman 2020, "Approximating KL divergence"), from samples of p with
``log_ratio`` = log q(y) − log p(y), per token:

- k1 = −log_ratio: unbiased, can be negative; summed over a response it is ``Rollout.kl``,
  the per-sequence KL(π_θ‖π_SFT) of PPO's per-token reward and of RLOO's penalty;
- k3 = (e^log_ratio − 1) − log_ratio: unbiased and always ≥ 0; GRPO's KL loss term (q = π_SFT,
  p = π_θ) and every optimizer's ``approx_kl`` (q = π_θ_new, p = π_θ_old).

Ziegler et al. 2019 (§2.2) adapt β so the policy's KL to the reference tracks a target:
too far from π_SFT and β rises, too close and it falls. InstructGPT instead keeps β fixed.
Both expose ``value``, ``update(kl, n_steps)`` and a state dict (checkpointed with the run).
"""
from __future__ import annotations

import torch


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
