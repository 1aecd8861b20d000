"""The KL coefficient β of the per-token penalty −β·(log π_θ − log π_SFT).

Ziegler et al. 2019 (§2.2) adapt β so the policy's KL to the reference tracks a target:
too far from π_SFT and β rises, too close and it falls. InstructGPT instead keeps β fixed.
Both expose ``value``, ``update(kl, n_steps)`` and a state dict (checkpointed with the run).
"""
from __future__ import annotations


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
