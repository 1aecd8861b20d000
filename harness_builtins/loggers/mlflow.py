"""Built-in logger ``mlflow``: each run as an MLflow run (``pip install "harness[mlflow]"``).

What it sends: the resolved config flattened (``optimizer.ppo.kl_coef``), secrets masked, as the run's
params; every metric with its step; the headline results as metrics ``results/<evaluator>/<cell>``
(a text cell as a tag); the run's report (``report.md``, ``.html``, ``.csv``, its plots) under the
artifact path ``report/``, with ``results.json`` and ``experiment.toml`` beside it. The run ends
FINISHED, or FAILED / KILLED with the error as the tag ``harness.error``.

Where: ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a local SQLite store in the experiment's
folder (``<output>/<experiment>/mlflow.db``, artifacts in ``mlartifacts/`` beside it; a comparison's
variants share it), which needs no server and no network: ``mlflow ui --backend-store-uri
sqlite:///runs/tiny/mlflow.db`` shows it (the UI needs the full ``pip install mlflow``). MLflow's
file store (``./mlruns``) is deprecated, so the default is SQLite.

Credentials come from the environment only (``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME``
and ``MLFLOW_TRACKING_PASSWORD``); ``[loggers.mlflow]`` refuses one, and a ``tracking_uri`` with a password.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.api import Options, hookimpl, scrub_data

from .tracking import extra_problems, flat, headline, require, run_name

EXTRA = "mlflow"
MODULES = ("mlflow", "sqlalchemy", "alembic")  # what the extra installs (SQLite needs the last two)
STORE = "mlflow.db"
ARTIFACTS = "mlartifacts"
MAX_PARAMS = 100  # params per log_batch request (MLflow's limit)
MAX_PARAM_VALUE = 6000  # characters of one param's value (MLflow's limit)


class MlflowOptions(Options):
    tracking_uri: str = Field("", description="Tracking URI (default: MLFLOW_TRACKING_URI, else the SQLite store "
                                              "sqlite:///<output>/<experiment>/mlflow.db).")
    experiment: str = Field("", description="MLflow experiment (default: the experiment's name).")
    run_name: str = Field("", description="Run name (default: the experiment's name; <experiment>/<variant> in a "
                                          "comparison).")
    tags: dict[str, str] = Field(default_factory=dict, description="Run tags (TOML: tags = { team = \"rlhf\" }).")


class MlflowLogger:
    """An MLflow run per harness run: config as params, metrics with steps, headline results, the report."""

    Options = MlflowOptions
    CREDENTIALS = "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"

    def __init__(self, options: MlflowOptions):
        self.options = options
        require(EXTRA, MODULES)
        self.client: Any = None
        self.run_id = ""

    @hookimpl
    def run_started(self, experiment, run_dir):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        folder = Path(run_dir).parent if experiment.variant else Path(run_dir)  # the experiment's folder
        uri = self.options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(folder / STORE).resolve()}"
        for quiet in ("mlflow.store.db.utils", "alembic"):  # a new store's table set-up, said at INFO on every first run
            logging.getLogger(quiet).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri)
        tags = {"harness.experiment": experiment.name, "harness.variant": experiment.variant, **self.options.tags}
        run = self.client.create_run(self._experiment_id(self.options.experiment or experiment.name, uri),
                                     run_name=self.options.run_name or run_name(experiment), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(key, _param_value(value)) for key, value in flat(scrub_data(experiment.to_dict())).items()]
        for start in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS])

    def _experiment_id(self, name: str, uri: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_location(uri))
        except Exception:  # noqa: BLE001 - another process created it first: use theirs
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    @hookimpl
    def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(_key(k), v, now, step) for k, v in metrics.items()])

    @hookimpl
    def report_written(self, experiment, run_dir, report_dir, plots):
        self.client.log_artifacts(self.run_id, str(report_dir), artifact_path="report")

    @hookimpl
    def run_finished(self, experiment, run_dir, results):
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        cells = headline(results)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in cells.items() if not isinstance(v, str)],
            tags=[RunTag(k, v) for k, v in cells.items() if isinstance(v, str)]
            + [RunTag("harness.status", str(results.get("status"))),
               RunTag("harness.config_hash", str(results.get("config_hash")))])
        for name in ("results.json", "experiment.toml"):
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        self.client.set_terminated(self.run_id, "FINISHED")

    @hookimpl
    def run_failed(self, experiment, run_dir, results):
        if not self.run_id:
            return
        self.client.set_tag(self.run_id, "harness.error", str(results.get("error", ""))[:MAX_PARAM_VALUE])
        self.client.set_terminated(self.run_id, "KILLED" if results.get("status") == "interrupted" else "FAILED")


def _param_value(value: Any) -> str:
    """A config value as MLflow keeps it: a string as is, anything else as JSON (``true``, ``[1, 2]``, ``null``)."""
    return (value if isinstance(value, str) else json.dumps(value))[:MAX_PARAM_VALUE]


def _key(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    return re.sub(r"[^\w\-. /:]", "_", name)


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (``<dir>/mlartifacts``), not in the working directory; a server's own
    default elsewhere."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACTS).as_uri()


@hookimpl
def register_loggers(register):
    register("mlflow", MlflowLogger)


@hookimpl
def check_experiment(experiment):
    return extra_problems(experiment, EXTRA, MODULES)
