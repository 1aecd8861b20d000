"""Built-in logger ``wandb``: each run as a Weights & Biases run (``pip install "harness[wandb]"``).

What it sends: the resolved config (as ``resolved_config.json`` has it, secrets masked) as the run's
config; every metric with its step; the headline results (``results/<evaluator>/<cell>``) as the run's
summary; the run's report plots as images (``report/<plot>``); ``report.md`` and ``results.json`` among its files.
A comparison's variants are runs named ``<experiment>/<variant>`` in one group, the experiment's name.

Each stage counts its own steps (SFT's from 0, then the reward model's, then the policy's), so every
metric is drawn against its stage's step, ``step/<stage>`` (W&B's ``define_metric``), not W&B's global step.

The API key comes from the environment only (``WANDB_API_KEY``, or ``wandb login``); ``[loggers.wandb]``
refuses one. With ``mode = "offline"`` (or ``WANDB_MODE=offline``) nothing goes over the network: the run is
written under ``<run>/wandb/`` and ``wandb sync`` uploads it later.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.api import HarnessError, Options, hookimpl, scrub, scrub_data

from .tracking import extra_problems, headline, require, run_name

EXTRA = "wandb"
MODULES = ("wandb",)  # what the extra installs


class WandbOptions(Options):
    project: str = Field("", description="W&B project (default: the experiment's name).")
    entity: str = Field("", description="W&B entity, a team or user (default: your W&B default entity).")
    name: str = Field("", description="Run name (default: the experiment's name; <experiment>/<variant> in a comparison).")
    group: str = Field("", description="Run group (default: the experiment's name for a comparison's variants).")
    tags: tuple[str, ...] = Field((), description="Run tags.")
    mode: Literal["", "online", "offline", "disabled"] = Field(
        "", description="'offline' writes the run locally for `wandb sync`; '' leaves it to WANDB_MODE (else online).")
    dir: str = Field("", description="Where W&B writes its files (default: WANDB_DIR, else the run directory).")


class WandbLogger:
    """A Weights & Biases run per harness run: config, metrics, headline results, report plots."""

    Options = WandbOptions
    CREDENTIALS = "WANDB_API_KEY, or `wandb login`"

    def __init__(self, options: WandbOptions):
        self.options = options
        self.wandb = require(EXTRA, MODULES)
        self.run: Any = None
        self._axes: set[str] = set()  # metrics given their stage's step axis

    @hookimpl
    def run_started(self, experiment, run_dir):
        o = self.options
        try:
            self.run = self.wandb.init(
                project=o.project or experiment.name, entity=o.entity or None, name=o.name or run_name(experiment),
                group=o.group or (experiment.name if experiment.variant else None), tags=list(o.tags) or None,
                config=scrub_data(experiment.to_dict()), dir=o.dir or os.environ.get("WANDB_DIR") or str(run_dir),
                mode=o.mode or None, job_type="harness-run",
                settings=self.wandb.Settings(quiet=True))  # the run's own summary is harness's; no W&B sparklines
        except Exception as err:  # noqa: BLE001 - W&B's own error (no key, no network) as one line saying what to do
            raise HarnessError(f"[loggers.wandb]: W&B could not start the run ({type(err).__name__}: "
                               f"{scrub(str(err)).splitlines()[0] if str(err) else ''}); log in with WANDB_API_KEY "
                               f"(or `wandb login`), or log offline: WANDB_MODE=offline or mode = \"offline\".") from None

    @hookimpl
    def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
        axis = f"step/{stage}"
        for name in metrics.keys() - self._axes:
            self.run.define_metric(name, step_metric=axis)
            self._axes.add(name)
        self.run.log({**metrics, axis: step})

    @hookimpl
    def report_written(self, experiment, run_dir, report_dir, plots):
        self.run.log({f"report/{plot.stem}": self.wandb.Image(str(plot)) for plot in plots})
        self._keep(report_dir / "report.md")

    @hookimpl
    def run_finished(self, experiment, run_dir, results):
        self.run.summary.update({"status": results.get("status"), "config_hash": results.get("config_hash"),
                                 **headline(results)})
        self._keep(run_dir / "results.json")
        self.run.finish()

    def _keep(self, path: Path) -> None:
        """A file among the run's files: what is in ``run.dir`` when the run finishes is uploaded (or synced)."""
        if path.is_file():
            shutil.copyfile(path, Path(self.run.dir) / path.name)

    @hookimpl
    def run_failed(self, experiment, run_dir, results):
        if self.run is not None:
            self.run.summary.update({"status": results.get("status"), "error": results.get("error")})
            self.run.finish(exit_code=1)


@hookimpl
def register_loggers(register):
    register("wandb", WandbLogger)


@hookimpl
def check_experiment(experiment):
    return extra_problems(experiment, EXTRA, MODULES)
