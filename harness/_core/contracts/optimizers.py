"""What ``register_optimizers`` components implement: the policy optimizer, and a policy that is a sampler.

An optimizer turns π_SFT into the policy, online (sample, score with the reward source, update)
or offline (from the run's preference pairs). Most policies are weights; best-of-n's is a way of
sampling π_SFT, which :class:`SamplingOptimizer` and :class:`PolicySampler` let evaluation use.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Protocol, Sequence, runtime_checkable

from harness._core.contracts.context import StageContext
from harness._core.contracts.rewards import RewardSource
from harness._core.options import Options
from harness._core.records import Prompt


class PolicyOptimizer(Protocol):
    """PPO, A2C, GRPO, RLOO, best-of-n (``online``: they get the reward source) or DPO (``offline``: preference pairs).

    Optional: :class:`SamplingOptimizer`, for an optimizer whose policy is a way of sampling, not
    only weights (best-of-n); evaluation then samples the policy through it.
    """

    Options: ClassVar[type[Options]]
    mode: ClassVar[Literal["online", "offline"]]

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        """Optimize the policy (starting from ``ctx.artifacts['sft']``); save HF model to ``ctx.stage_dir/'model'``."""


class PolicySampler(Protocol):
    """A policy that is a sampling procedure (best-of-n: π_SFT sampled n times, the reward source picks).

    An optimizer offers one through ``evaluation_policy(ctx)`` (``ctx.components.reward`` is the run's
    prepared reward source); the evaluation stage draws the policy's held-out responses through
    ``respond`` instead of sampling the saved weights, and every evaluator sees them like any policy's.
    """

    def respond(self, prompts: Sequence[Prompt], settings: Any, seed: int) -> tuple[list[str], list[float]]:
        """One response per prompt (``settings``: the ``[evaluation]`` table: length, temperature, batch size)
        and its KL(π‖π_SFT) in nats (exact where known, as best-of-n's log n − (n−1)/n)."""


@runtime_checkable
class SamplingOptimizer(Protocol):
    """Optional, for an optimizer: its policy is a sampling procedure that evaluation samples through."""

    def evaluation_policy(self, ctx: StageContext) -> PolicySampler:
        """The policy to evaluate, built after training (``ctx.components.reward`` is the prepared reward source)."""
