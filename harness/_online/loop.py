"""The step loop of an online optimizer: set up, resume, step, log, evaluate, checkpoint, save, summarize.

An optimizer module (``ppo.py``, ``a2c.py``, a plugin's) supplies one function,
``step(run, step) -> metrics``, written in its paper's order; :func:`train_online` runs it ``steps``
times through ``ctx.step`` (the ``optimizer_step`` hook, where guards and timers wrap it), logs
the metrics, runs the periodic evaluation, refreshes the reference when asked, checkpoints
atomically every ``checkpoint_every`` steps, resumes from the latest checkpoint, saves the policy in
HF format and returns :func:`harness._online.summary.summarize`'s summary.
"""
from __future__ import annotations

from typing import Any, Callable

from harness._core.contracts import RewardSource, StageContext
from harness._online.checkpoints import resume, save_checkpoint, save_policy
from harness._online.online_options import RolloutOptions
from harness._online.run_state import RLRun
from harness._online.setup_run import setup
from harness._online.summary import summarize
from harness._online.updates import refresh_reference

StepFn = Callable[[RLRun, int], dict[str, float]]


def _run_step(run: RLRun, step: int, step_fn: StepFn) -> dict[str, float]:
    """One step through the ``optimizer_step`` hook when the context offers it."""
    def run_step() -> dict[str, float]:
        with run.timed("total"):
            return step_fn(run, step)

    if hasattr(run.ctx, "step"):
        return run.ctx.step(step, run_step)
    return run_step()


def train_online(ctx: StageContext, reward: RewardSource, options: RolloutOptions, name: str,
                 step_fn: StepFn) -> dict[str, Any]:
    """Set up, resume, run ``step_fn`` for the remaining steps, save the policy; return the summary."""
    run = setup(ctx, options, reward, name)
    start = resume(run)
    with ctx.progress_bar(options.steps, name) as bar:
        bar.update(start)
        for step in range(start + 1, options.steps + 1):
            metrics = _run_step(run, step, step_fn)
            ctx.log(metrics, step)
            run.history.append({"step": step, **metrics})
            if getattr(ctx, "evaluate", None) is not None:  # mid-training evaluation is configured
                ctx.periodic_evaluation(step, run.accelerator.unwrap_model(run.policy))
            refresh_reference(run, step)
            if options.checkpoint_every and step % options.checkpoint_every == 0 and step < options.steps:
                save_checkpoint(run, step)
            bar.update(1)
    save_policy(run)
    return summarize(run, start)
