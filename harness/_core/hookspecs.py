"""Every hook a plugin can implement (pluggy project ``harness``).

Registration hooks receive a ``register(name, factory)`` callback and fill one component
family each; the core owns duplicate names and the "unknown name, available: …" error.
Lifecycle hooks are broadcast to every plugin. Always call hooks with keyword arguments.
"""
from __future__ import annotations

import pluggy

PROJECT = "harness"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ----------------------------------------------------------------- registration hooks
@hookspec
def register_worlds(register):
    """Register worlds (prompts, demonstrations, annotators, gold judge, base models)."""


@hookspec
def register_feedback_formats(register):
    """Register feedback formats (pairwise, K-wise ranking, Likert, …)."""


@hookspec
def register_reward_sources(register):
    """Register reward sources (learned RM, ensemble, LLM judge, gold, …)."""


@hookspec
def register_optimizers(register):
    """Register policy optimizers (PPO, A2C, DPO, …)."""


@hookspec
def register_stages(register):
    """Register pipeline stages that fill the ``sft`` and ``reward_model`` slots."""


@hookspec
def register_evaluators(register):
    """Register evaluators run at the end of a run (win rate, gold reward, alignment tax, …)."""


@hookspec
def register_judges(register):
    """Register judges that decide which of two responses is better (gold, reward, LLM, …)."""


@hookspec
def register_loggers(register):
    """Register loggers an experiment picks in ``[loggers] names`` (JSONL, TensorBoard, W&B, MLflow, …).

    A logger's factory is called with its validated options once per run; the object it returns is
    registered as a plugin for that run only, so its ``@hookimpl`` methods hear the lifecycle hooks below."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``harness`` CLI (``cli`` is the root click group)."""


# ----------------------------------------------------------------- lifecycle hooks
# In a multi-process launch (torchrun, deepspeed, accelerate launch) these are called on the
# main process (global rank 0) only: it alone writes the run store, so loggers write once.
@hookspec
def run_started(experiment, run_dir):
    """A run begins; ``experiment`` is the resolved, immutable config, ``run_dir`` its directory."""


@hookspec
def stage_finished(experiment, stage, stage_dir, summary):
    """A stage finished (or was reused); ``summary`` is the dict it returned."""


@hookspec
def metrics_logged(experiment, stage, stage_dir, metrics, step):
    """Metrics of one step of ``stage`` (written under ``stage_dir``): namespaced names (``ppo/kl``) → floats."""


@hookspec
def report_written(experiment, run_dir, report_dir, plots):
    """A completed run's own report is in ``report_dir`` (``report.md``, ``.html``, ``.csv``); ``plots`` its PNG files.

    Called after ``results.json`` is written and before ``run_finished``. The core renders this one-run
    report (``<run>/report/``, a few seconds of plotting) only for a run where some plugin implements this hook."""


@hookspec
def run_finished(experiment, run_dir, results):
    """A run completed; ``results`` is what was written to ``results.json``."""


@hookspec
def run_failed(experiment, run_dir, results):
    """A run did not complete (an error, or interrupted); ``results`` is the marker written to ``results.json``
    (``status`` "failed" or "interrupted", the scrubbed ``error``). ``run_started`` may not have been called."""


@hookspec(firstresult=True)
def resolve_model(base, experiment):
    """Turn a model name into a local directory; stops at the first non-None result.

    A world plugin answers ``embedded:<name>``; the core's fallback treats any other string as a
    local path or a hub id handed to ``from_pretrained`` unchanged.
    """


@hookspec
def check_experiment(experiment):
    """What ``harness validate`` can check without training: return a list of problems (each one line
    naming the file or table, the field and the fix), or None. Local files should exist and parse."""


@hookspec(firstresult=True)
def optimizer_step(experiment, stage, step, run_step):
    """Run one optimizer step (SFT, reward model, or the policy's rollout + update); stops at the first
    non-None result (its metrics dict).

    The core's implementation calls ``run_step()``. Guards (KL limit, NaN) and timers are
    ``wrapper=True`` implementations around it: ``metrics = yield`` then inspect or extend and
    ``return metrics``.
    """
