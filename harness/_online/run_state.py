"""The state of one online run (:class:`RLRun`): models, optimizer, KL controller, what was measured.

:func:`harness._online.setup_run.setup` builds it; every piece of a step (rollout, update, checkpoint)
takes it as its first argument.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from harness._core.compute import zero_stage_of
from harness._core.contracts import RewardSource, StageContext
from harness._online.advantages import RunningMoments
from harness._online.online_options import RolloutOptions
from harness._online.ptx import PretrainingBatches


@dataclass
class RLRun:
    """The state of one online run: models, optimizer, controllers, and what has been measured."""

    ctx: StageContext
    options: RolloutOptions
    name: str
    reward: RewardSource
    accelerator: Any
    tokenizer: Any
    policy: torch.nn.Module
    reference: torch.nn.Module | None  # None when the options need none (GRPO, RLOO with β = 0)
    critic: torch.nn.Module  # a NoCritic (no parameters, values 0) for a critic-free optimizer
    optimizer: torch.optim.Optimizer
    kl_ctl: Any  # AdaptiveKLController | FixedKLController
    ptx: PretrainingBatches | None
    prompts: list  # the world's "rl" prompts
    gold: Any  # the world's gold judge: measured every step, never optimized
    model: Any = None  # policy + critic as one prepared module (a DeepSpeed engine, DDP, or the module itself)
    processes: int = 1  # processes of the launch; each holds batch_size / processes responses
    score_moments: RunningMoments = field(default_factory=RunningMoments)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def shared_critic(self) -> bool:
        return self.options.critic() == "shared"

    @contextmanager
    def generation_policy(self):
        """π_θ ready for ``generate``: under ZeRO-3 its partitions are gathered once for the whole call
        (as trl does) instead of layer by layer for every new token."""
        if zero_stage_of(self.accelerator) != 3:
            yield self.policy
            return
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(self.model.parameters())):
            remove_hooks(self.model)  # the per-layer gather hooks would fetch what is already here
            try:
                yield self.policy
            finally:
                add_hooks(self.model)

    @contextmanager
    def timed(self, key: str):
        """Add the block's wall time to ``seconds[key]`` (generation's share is reported in the summary)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start
