"""Hook implementations the core itself provides (registered like any plugin, never blockable).

They are the fallbacks that run last: a model name no world claims is a local path or a hub id,
and an optimizer step with no guard around it simply runs.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.errors import HarnessError

from harness.hookspecs import hookimpl


@hookimpl(trylast=True)
def resolve_model(base, experiment):
    """A local directory, or a hub id handed unchanged to ``from_pretrained``."""
    path = Path(base).expanduser()
    return path if path.is_dir() else base


@hookimpl(trylast=True)
def optimizer_step(experiment, stage, step, run_step):
    """Run the step; wrappers registered by plugins see (and may extend) its metrics."""
    return run_step()


@hookimpl(wrapper=True, specname="optimizer_step")
def guard_non_finite(experiment, stage, step, run_step):  # noqa: ARG001 - hook signature
    """Fail loudly on a non-finite loss/metric instead of training on NaNs."""
    metrics = yield
    bad = sorted(k for k, v in (metrics or {}).items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        raise HarnessError(f"{stage} step {step}: non-finite metrics {bad}; lower the learning rate or check the reward.")
    return metrics
