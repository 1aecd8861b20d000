"""What ``register_stages`` components implement: a stage that fills the ``sft`` or ``reward_model`` slot.

The runner calls a stage once per run (or reuses what an earlier run with the same inputs wrote);
it trains or produces something in ``ctx.stage_dir`` that later stages find in ``ctx.artifacts``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

from harness._core.contracts.context import StageContext
from harness._core.options import Options


class Stage(Protocol):
    """A pipeline step (SFT, reward-model training, …) that writes its outputs into ``ctx.stage_dir``."""

    Options: ClassVar[type[Options]]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Train/produce; return a JSON-ready summary that lands in results.json."""
