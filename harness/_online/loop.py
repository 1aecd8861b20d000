"""The loop of an online optimizer: set up, resume, step, log, evaluate, checkpoint, save, summarize.

An online optimizer is an :class:`OnlineOptimizer`: its ``Options`` and its ``step(run, step) ->
metrics``, written in its paper's order. :func:`train_online` (what ``train`` calls) runs the step
``steps`` times through ``ctx.step`` (the ``optimizer_step`` hook, where guards and timers wrap it),
logs the metrics, runs the periodic evaluation, refreshes the reference when asked, checkpoints
atomically every ``checkpoint_every`` steps, resumes from the latest checkpoint, saves the policy in
HF format and returns :func:`summarize`'s summary.

A checkpoint (``checkpoint_dir/step-NNNNNN``) holds the prepared models and optimizer, every
process's RNG state, β and the reward moments (accelerate's ``save_state``) and the metric history,
written atomically; a resumed run continues exactly where it stopped. The final policy is saved in
HF format at ``stage_dir/model`` (LoRA adapters merged in).

The summary lands in ``results.json`` under ``policy.train``. Its ``curve`` is a list of per-step
dicts, at most :data:`CURVE_POINTS` of them (evenly thinned, first step kept): ``{"step": int,
"reward/proxy": float, "reward/gold": float, "kl": float}``, where ``kl`` is the optimizer's
``<name>/kl`` (mean per-sequence KL(π_θ‖π_SFT) of the step's samples) and a key is left out when the
step did not log it (no gold judge on real data). ``harness compare``'s reward–KL and gold–proxy
plots read ``policy.train.curve`` there, and the ``overoptimization`` evaluator reads the policy
stage's summary (``ctx.summaries["policy"]["curve"]``). Any online optimizer that returns
:func:`summarize`'s dict (or a ``curve`` in this format) is plotted and watched like PPO.
"""
from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from harness._core.integrity import checkpoint_directory, latest_intact  # checksums written; verified at resume
from harness._core.contracts import RewardSource, StageContext
from harness._core.io import atomic_directory, atomic_write_json, read_json
from harness._online.memory import save_merged
from harness._online.options import RolloutOptions
from harness._online.run import RLRun, setup

StepFn = Callable[[RLRun, int], dict[str, float]]


class OnlineOptimizer(ABC):
    """An online optimizer is its options and its step; everything else is :func:`train_online`'s.

    A subclass sets ``Options`` (a subclass of ``OnlineOptions`` or ``GroupOptions``) and ``name``
    (the metrics' namespace, ``<name>/kl``, and the summary's ``optimizer``) and writes ``step``::

        class PPO(OnlineOptimizer):
            Options = PPOOptions
            name = "ppo"

            def step(self, run: RLRun, step: int) -> dict[str, float]:
                batch = collect_rollout(run, step)                       # 1. rollout
                advantages, returns = rewards_and_advantages(run, batch) # 2–3. advantages
                stats = ...                                              # 4. update
                metrics = rollout_metrics(run, batch, returns, self.name)
                run.kl_ctl.update(batch.mean_kl, n_steps=run.options.batch_size)  # 5. β
                return metrics | stats
    """

    Options: ClassVar[type[RolloutOptions]] = RolloutOptions
    name: ClassVar[str]
    mode: ClassVar[Literal["online"]] = "online"

    def __init__(self, options: RolloutOptions | None = None):
        self.options = options or self.Options()

    @abstractmethod
    def step(self, run: RLRun, step: int) -> dict[str, float]:
        """One step in the paper's order (``run.options`` are this optimizer's options); returns its metrics."""

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        return train_online(ctx, reward, self.options, self.name, self.step)


def train_online(ctx: StageContext, reward: RewardSource, options: RolloutOptions, name: str,
                 step_fn: StepFn) -> dict[str, Any]:
    """Set up, resume, run ``step_fn`` for the remaining steps, save the policy; return the summary."""
    run = setup(ctx, options, reward, name)
    start = resume(run)
    # once, not every step: accelerate's unwrap_model imports deepspeed on its first call (~0.7 s on 2 cores),
    # which landed inside the first timed step; the policy object it returns never changes during the run
    evaluated_policy = run.accelerator.unwrap_model(run.policy)
    with ctx.progress_bar(options.steps, name) as bar:
        bar.update(start)
        for step in range(start + 1, options.steps + 1):
            metrics = ctx.step(step, partial(_timed_step, run, step, step_fn))  # the optimizer_step hook wraps it
            ctx.log(metrics, step)
            run.history.append({"step": step, **metrics})
            ctx.periodic_evaluation(step, evaluated_policy)
            refresh_reference(run, step)
            if options.checkpoint_every and step % options.checkpoint_every == 0 and step < options.steps:
                save_checkpoint(run, step)
            bar.update(1)
    save_policy(run)
    return summarize(run, start)


def _timed_step(run: RLRun, step: int, step_fn: StepFn) -> dict[str, float]:
    """The step, its wall time added to ``seconds["total"]``."""
    with run.timed("total"):
        return step_fn(run, step)


def refresh_reference(run: RLRun, step: int) -> None:
    """Every ``ref_refresh_every`` steps the KL penalty starts measuring from the current policy."""
    every = run.options.ref_refresh_every
    if every and step % every == 0:
        run.reference.load_state_dict(run.policy.state_dict())


# --------------------------------------------------------------------------- checkpoints, resume, the saved policy
def _checkpoints(root: Path | None) -> list[Path]:
    """Finished checkpoints, oldest first (temp dirs start with '.' and are ignored)."""
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "trainer_state.json").is_file())


def save_checkpoint(run: RLRun, step: int) -> None:
    """Models, optimizer, RNG states, β and reward moments, written atomically; older checkpoints removed.

    Collective: every process writes its part (its RNG state; under DeepSpeed its ZeRO partitions).
    """
    root = run.ctx.checkpoint_dir
    if root is None:
        return
    with checkpoint_directory(root / f"step-{step:06d}") as tmp:  # shared_directory + checksums
        run.accelerator.save_state(str(tmp), safe_serialization=False)
        if run.accelerator.is_main_process:
            atomic_write_json(tmp / "trainer_state.json",
                              {"step": step, "history": run.history, "seconds": dict(run.seconds)})
    if run.accelerator.is_main_process:
        for old in _checkpoints(root)[:-1]:
            shutil.rmtree(old, ignore_errors=True)


def resume(run: RLRun) -> int:
    """Restore the latest intact checkpoint, if any; returns the step it was taken after (0 for a fresh run)."""
    latest = latest_intact(_checkpoints(run.ctx.checkpoint_dir))  # a damaged one is moved aside, with one line
    if latest is None:
        return 0
    run.accelerator.load_state(str(latest))
    state = read_json(latest / "trainer_state.json", fix=f"delete the checkpoint directory {latest.name} "
                      "and rerun (the stage resumes from an earlier checkpoint or restarts)")
    run.history = list(state["history"])
    run.seconds.update(state["seconds"])
    return int(state["step"])


def save_policy(run: RLRun) -> Path:
    """π_θ in HF format (``save_pretrained`` + tokenizer) at ``stage_dir/model``, atomically.

    A LoRA policy is saved with its adapters merged in: a plain causal LM, no peft needed to load it.
    """
    target = run.ctx.stage_dir / "model"
    # collective: under ZeRO-3 every process sends its partitions, rank 0 gets the whole state
    state = None if run.options.lora else run.accelerator.get_state_dict(run.model)
    if run.accelerator.is_main_process:
        with atomic_directory(target) as tmp:
            if run.options.lora:
                save_merged(run.accelerator.unwrap_model(run.policy), tmp)
            else:
                policy_state = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
                run.policy.save_pretrained(tmp, state_dict=policy_state)
            run.tokenizer.save_pretrained(tmp)
    run.accelerator.wait_for_everyone()
    return target


# --------------------------------------------------------------------------- the summary
SUMMARY_WINDOW = 10  # the summary's "recent" metrics average the last this-many steps


def summarize(run: RLRun, resumed_from: int) -> dict[str, Any]:
    """JSON-ready: final and recent-mean value of every metric, wall time and generation's share of it."""
    rows = run.history
    recent = rows[-SUMMARY_WINDOW:]
    keys = [k for k in (rows[-1] if rows else {}) if k != "step"]
    total, generation = run.seconds["total"], run.seconds["generation"]
    return {
        "optimizer": run.name,
        "steps": rows[-1]["step"] if rows else 0,
        "resumed_from": resumed_from,
        "final": {k: rows[-1][k] for k in keys},
        f"mean_last_{SUMMARY_WINDOW}": {k: _mean([r[k] for r in recent if k in r]) for k in keys},
        "wall_s": total,
        "generation_s": generation,
        "reward_s": run.seconds["reward"],
        "generation_share": generation / total if total else 0.0,
        "s_per_step": total / len(rows) if rows else 0.0,
        "phase_s": {k: v for k, v in run.seconds.items() if k != "total"},  # generation, reward, policy, reference, update
        "curve": training_curve(rows, run.name),
    }


CURVE_POINTS = 400  # at most this many steps of the training curve are kept in the summary


def training_curve(rows: list[dict[str, float]], name: str) -> list[dict[str, float]]:
    """Proxy reward, gold reward and KL per step (evenly thinned): what comparison plots and
    the over-optimization evaluator read from ``results.json``."""
    stride = max(1, -(-len(rows) // CURVE_POINTS))
    keep = {"reward/proxy": "reward/proxy", "reward/gold": "reward/gold", f"{name}/kl": "kl"}
    return [{"step": r["step"], **{new: r[old] for old, new in keep.items() if old in r}} for r in rows[::stride]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
