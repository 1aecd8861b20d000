"""What ``register_reward_sources`` components implement: the reward source and its optional capabilities.

A reward source turns (prompt, response) pairs into the scalar an online optimizer climbs: a
learned reward model, an ensemble of them, an LLM judge, the world's gold judge. What some
sources can do beyond scoring is a ``runtime_checkable`` Protocol of its own, which the core and
the built-ins test for with ``isinstance`` (never with ``hasattr``), so the capability has one
name, one signature and one docstring.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, Sequence, runtime_checkable

from harness._core.contracts.context import StageContext
from harness._core.options import Options
from harness._core.records import Prompt

if TYPE_CHECKING:  # pragma: no cover
    import torch


class RewardSource(Protocol):
    """``score(prompts, responses) -> tensor``; learned sources load what a stage trained."""

    Options: ClassVar[type[Options]]

    def prepare(self, ctx: StageContext) -> None:
        """Load models / open clients. Called once before the first ``score``."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """One float per (prompt, response), higher is better (shape ``[len(prompts)]``)."""


@runtime_checkable
class WithDiagnostics(Protocol):
    """Optional, for a reward source or a judge: counters that describe its last call.

    An ensemble's disagreement, an LLM judge's calls and cache hits: online optimizers log a reward
    source's with every step; the win-rate evaluator reports its judge's as ``judge_stats``.
    """

    def diagnostics(self) -> dict[str, float]:
        """Named numbers about the last ``score`` (or judge) call."""


@runtime_checkable
class Offloadable(Protocol):
    """Optional, for a reward source: the torch modules it holds, which an optimizer may move off the GPU
    between scoring calls (``offload_frozen``). Without it the optimizer looks for modules among its attributes."""

    def offloadable_modules(self) -> list[torch.nn.Module]:
        """Every module ``score`` runs."""


@runtime_checkable
class WithMemberScores(Protocol):
    """Optional, for a reward source made of several reward models (the ``ensemble``): each member's score.

    Where the run's reward source has it, the over-optimization evaluator reports the members'
    disagreement on the policy's and on π_SFT's held-out responses (it grows where the policy has
    left the reward models' training distribution).
    """

    def member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Every member's reward of every (prompt, response), shape ``[members, len(prompts)]``."""
