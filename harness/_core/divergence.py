"""Divergence is a failure, not a result: a non-finite loss, metric or weight stops its stage with one line.

A stage that trains on NaNs still finishes: its loss is NaN, its held-out accuracy a plausible 0.0,
its model a file of NaNs, and the run store would keep it as finished and hand it to every later
run. So three places refuse it, each with one :class:`TrainingDiverged` line naming the stage,
where it happened and the likely cause (the stage's learning rate, when its component has one):

- every optimizer step of SFT, the reward model and the policy runs through the ``optimizer_step``
  hook, whose core guard (:mod:`harness._core.core_hooks`) checks the step's metrics;
- a stage checks what only it can tell is wrong (the reward model's normalization offset);
- the runner checks the weights a stage saved (:func:`check_saved_weights`) before it marks the stage
  finished, so no stage, built-in or a plugin's, hands on a model with NaN or infinite weights.

The stage is then recorded ``failed`` and is never reused; a rerun with a smaller learning rate is
a new stage (its hash changes).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness._core.errors import HarnessError

# the config table whose component trains in each stage (policy: the optimizer's)
TRAINED_BY = {"sft": "sft", "reward_model": "reward_model", "policy": "optimizer"}
WEIGHT_FILES = "*.safetensors"  # what save_pretrained writes (a stage's models, outside checkpoints/)


class TrainingDiverged(HarnessError):
    """A stage whose loss, metrics or weights went non-finite: ``<stage> <where>: <what>: training diverged; <cause>``."""

    exit_code = 1

    def __init__(self, stage: str, where: str, what: str, experiment: Any = None) -> None:
        super().__init__(f"{stage} {where}: {what}: training diverged; {likely_cause(experiment, stage)}")
        self.stage = stage


def likely_cause(experiment: Any, stage: str) -> str:
    """``is the learning rate 1e+30 ([sft.next_token] lr) too large? …`` when the stage's component has an ``lr``."""
    table = TRAINED_BY.get(stage)
    try:
        choice = experiment.choice(table)
        lr = float(choice.options.lr)
    except (AttributeError, KeyError, TypeError, ValueError):
        return "lower the learning rate or check the reward, then rerun."
    also = " (or check the reward)" if stage == "policy" else ""
    return f"is the learning rate {lr:g} ([{table}.{choice.name}] lr) too large? Lower it{also} and rerun."


def check_saved_weights(stage_dir: Path, stage: str, experiment: Any = None) -> None:
    """Raise :class:`TrainingDiverged` if a model the stage saved (``*.safetensors`` outside ``checkpoints/``)
    holds a NaN or infinite weight; names the file and the first such tensor."""
    from safetensors import safe_open

    root = Path(stage_dir)
    for path in sorted(root.rglob(WEIGHT_FILES)):
        rel = path.relative_to(root)
        if rel.parts[0] == "checkpoints" or any(part.startswith(".") for part in rel.parts):
            continue
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():
                tensor = weights.get_tensor(name)
                if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                    raise TrainingDiverged(stage, "saved model", f"{rel} has non-finite weights ({name})", experiment)


def non_finite(metrics: dict[str, Any] | None) -> list[str]:
    """The names of the float metrics that are NaN or infinite, sorted."""
    return sorted(k for k, v in (metrics or {}).items() if isinstance(v, float) and not math.isfinite(v))
