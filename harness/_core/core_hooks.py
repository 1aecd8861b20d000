"""Hook implementations the core itself provides (registered like any plugin, never blockable).

They are the fallbacks that run last: a model name no world claims is a local path or a hub id,
and an optimizer step with no guard around it simply runs.
"""
from __future__ import annotations

from pathlib import Path

from harness._core.checks import check_model_name, looks_like_path
from harness._core.divergence import TrainingDiverged, non_finite
from harness._core.errors import HarnessError

from harness._core.hookspecs import hookimpl


@hookimpl(trylast=True)
def resolve_model(base, experiment):
    """A local directory, or a hub id handed unchanged to ``from_pretrained``; a path that is missing
    is said to be one (not passed on to be called a malformed hub id)."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    if looks_like_path(base):
        raise HarnessError(f"{experiment.source}: model {base!r} is a path, and there is no such directory; give "
                           f"a directory saved with save_pretrained, a hub id, or 'embedded:<name>'.")
    return base


@hookimpl
def check_experiment(experiment):
    """``[model] base``, unless a world's scheme (``embedded:…``) names it."""
    base = experiment.model.base
    if ":" in base and not looks_like_path(base):
        return None
    problem, _ = check_model_name(base, f"{experiment.source}: [model] base")
    return [problem] if problem else None


@hookimpl(trylast=True)
def optimizer_step(experiment, stage, step, run_step):
    """Run the step; wrappers registered by plugins see (and may extend) its metrics."""
    return run_step()


@hookimpl(wrapper=True, specname="optimizer_step")
def guard_non_finite(experiment, stage, step, run_step):  # noqa: ARG001 - hook signature
    """Fail loudly on a non-finite loss/metric instead of training on NaNs (SFT, RM and policy steps alike):
    one line naming the stage, the step and the likely cause (:mod:`harness._core.divergence`)."""
    metrics = yield
    bad = non_finite(metrics)
    if bad:
        raise TrainingDiverged(stage, f"step {step}", f"non-finite metrics {bad}", experiment)
    return metrics
