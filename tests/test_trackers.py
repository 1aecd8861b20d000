"""Loggers: the ``[loggers]`` table, the logger lifecycle, and the W&B and MLflow trackers read back.

One tiny run (module-scoped) logs to a recording logger and to every tracker whose extra is installed
(W&B offline, MLflow in a local SQLite store: no network); each tracker test reads the run back through
the tracker's own reader and compares it with what the run wrote (resolved_config.json, metrics.jsonl,
results.json, report/). A tracker test skips with the ``pip install`` that enables it when its extra is
missing; CI installs both extras, so there they run.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import hookimpl
from harness._core.cli import main
from harness._core.config import load_experiment
from harness._core.errors import ConfigError, HarnessError
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment
from harness.api import NoOptions
from tests.fakes import harness_cache
from tests.tiny_run import OVERRIDES, TINY

W_KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a W&B API key (40 hex digits)


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


TRACKERS = [name for name, mods in (("wandb", ("wandb",)), ("mlflow", ("mlflow", "sqlalchemy", "alembic"))) if _has(*mods)]


class Recorder:
    """A logger that records every lifecycle call it hears, in order."""

    Options = NoOptions
    calls: list[tuple[str, dict]] = []

    def __init__(self, options):
        Recorder.calls.clear()

    def _record(self, hook, **kwargs):
        Recorder.calls.append((hook, kwargs))

    @hookimpl
    def run_started(self, experiment, run_dir):
        self._record("run_started", run_dir=run_dir)

    @hookimpl
    def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
        self._record("metrics_logged", stage=stage, metrics=metrics, step=step)

    @hookimpl
    def stage_finished(self, experiment, stage, stage_dir, summary):
        self._record("stage_finished", stage=stage)

    @hookimpl
    def report_written(self, experiment, run_dir, report_dir, plots):
        self._record("report_written", report_dir=report_dir, plots=plots, exist=[p.is_file() for p in plots])

    @hookimpl
    def run_finished(self, experiment, run_dir, results):
        self._record("run_finished", results=results)

    @hookimpl
    def run_failed(self, experiment, run_dir, results):
        self._record("run_failed", results=results)


class Broken:
    """A logger whose run_started fails: the run fails before any work, and run_failed is told."""

    Options = NoOptions

    def __init__(self, options):
        pass

    @hookimpl
    def run_started(self, experiment, run_dir):
        raise HarnessError("the tracker is down")


class Late:
    """A logger whose run_finished fails (say, a tracker's upload): the finished run must stay complete."""

    Options = NoOptions

    def __init__(self, options):
        pass

    @hookimpl
    def run_finished(self, experiment, run_dir, results):
        raise ConnectionError("upload refused")


class TestLoggers:
    @hookimpl
    def register_loggers(self, register):
        register("recorder", Recorder)
        register("broken", Broken)
        register("late", Late)


def _host():
    return get_plugin_manager(autoload=False, extra=[TestLoggers()])


@pytest.fixture(scope="module")
def tracked(tiny_cache, tmp_path_factory):
    """(run dir, results, the recorder's calls) of one tiny run logged to the recorder and every installed tracker."""
    root = tmp_path_factory.mktemp("tracked")
    names = ["jsonl", "recorder", *TRACKERS]
    with pytest.MonkeyPatch.context() as env, harness_cache(tiny_cache):
        env.setenv("WANDB_MODE", "offline")  # no network: the run is written under <run>/wandb/
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            env.setenv(var, str(root / ".wandb-home"))
        for var in ("WANDB_DIR", "WANDB_API_KEY", "MLFLOW_TRACKING_URI"):
            env.delenv(var, raising=False)
        host = _host()
        experiment = load_experiment(TINY, host.registry, [*OVERRIDES, f"loggers.names={names!r}",
                                                           "loggers.wandb.tags=['test']"])
        results = run_experiment(experiment, host, root, show_progress=False, echo=lambda s: None)
        if "wandb" in TRACKERS:
            import wandb

            wandb.teardown()  # the W&B service process ends with the module
    return root / "tiny", results, list(Recorder.calls)


def _jsonl(run_dir: Path, stage: str, metric: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / stage / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row[metric]) for row in rows if metric in row]


def _headline(results, evaluator, name):
    return next(c for c in results["headline"] if c["evaluator"] == evaluator and c["name"] == name)


# ----------------------------------------------------------------- the [loggers] table
def test_the_default_loggers_are_jsonl_and_tensorboard_and_a_blocked_one_drops_out():
    experiment = load_experiment(TINY, get_plugin_manager(autoload=False).registry)
    assert experiment.loggers.names == ("jsonl", "tensorboard")
    assert experiment.to_dict()["loggers"] == {"names": ["jsonl", "tensorboard"], "jsonl": {}, "tensorboard": {}}
    blocked = get_plugin_manager(["no:tensorboard"], autoload=False)
    assert load_experiment(TINY, blocked.registry).loggers.names == ("jsonl",)


@pytest.mark.parametrize("setting, message", [
    ('loggers.names=["jsonl", "wand"]', "[loggers] names: unknown logger 'wand' (did you mean `wandb`?)"),
    ('loggers.names=["jsonl", "jsonl"]', "[loggers] names lists 'jsonl' twice"),
    ('loggers.wandb.projec="x"', "[loggers.wandb] unknown key 'projec' (did you mean `project`?)"),  # wandb not enabled
    ('loggers.mlfow.experiment="x"', "[loggers.mlfow] is not a registered logger (did you mean `mlflow`?)"),
    ('loggers.wandb.mode="cloud"', "[loggers.wandb] mode = 'cloud': expected '', 'online', 'offline' or 'disabled'"),
])
def test_a_bad_loggers_table_is_one_line(setting, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(TINY, _host().registry, [setting])
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)


@pytest.mark.parametrize("setting", [
    f'loggers.wandb.api_key="{W_KEY}"',  # a key-named field
    f'loggers.wandb.entity="{W_KEY}"',  # a W&B key pasted where a name goes
    'loggers.wandb.tags=["sk-proj-abcdefghijklmnop"]',  # a key-shaped value
    'loggers.mlflow.tracking_uri="https://me:hunter2@mlflow.example.com"',  # a URL with a password
    'loggers.mlflow.token="anything"',
])
def test_a_credential_in_a_logger_table_is_refused_and_never_shown(setting, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["validate", str(TINY), "--set", setting])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert "holds a credential (not shown)" in err and "set it in the environment instead" in err
    assert ("WANDB_API_KEY" if ".wandb." in setting else "MLFLOW_TRACKING_TOKEN") in err
    secret = setting.partition("=")[2].strip('"[]')
    assert secret not in err and "hunter2" not in err


@pytest.mark.parametrize("extra, module", [("wandb", "wandb"), ("mlflow", "mlflow"), ("mlflow", "sqlalchemy")])
def test_a_tracker_without_its_extra_is_one_line_naming_the_install(extra, module, monkeypatch, capsys, tmp_path):
    if module != extra:  # the extra half installed: its package there, a dependency of it missing
        if not _has(extra):
            pytest.skip(f"shows {module} missing beside an installed {extra}: pip install \"harness[{extra}]\"")
        importlib.import_module(extra)  # imported for real first: mlflow notes at import which stores it can open
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError, as if not installed
    line = f'[loggers] names has {extra!r}, but the {module} package is not installed'
    with pytest.raises(SystemExit) as exit_:  # harness validate (and harness run, before any work) say it
        main(["validate", str(TINY), "--set", f'loggers.names=["jsonl", "{extra}"]'])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and line in err, err
    assert err.endswith(f'pip install "harness[{extra}]"'), err
    host = get_plugin_manager(autoload=False)  # and run_experiment, which has no preflight, before the run starts
    experiment = load_experiment(TINY, host.registry, [f'loggers.names=["{extra}"]'])
    with pytest.raises(HarnessError, match=r'pip install "harness\[' + extra + r'\]"'):
        run_experiment(experiment, host, tmp_path, show_progress=False, echo=lambda s: None)
    assert not (tmp_path / "tiny" / "results.json").exists()


# ----------------------------------------------------------------- the lifecycle a logger hears
def test_a_logger_hears_the_run_in_order_and_gets_its_report(tracked):
    run_dir, results, calls = tracked
    hooks = [hook for hook, _ in calls]
    assert hooks[0] == "run_started" and hooks[-2:] == ["report_written", "run_finished"] and "run_failed" not in hooks
    assert [kw["stage"] for hook, kw in calls if hook == "stage_finished"] == \
        ["sft", "feedback", "reward_model", "policy", "evaluation"]
    policy = [(kw["step"], kw["metrics"]["ppo/kl"]) for hook, kw in calls if hook == "metrics_logged"
              and "ppo/kl" in kw["metrics"]]
    assert policy == _jsonl(run_dir, "policy", "ppo/kl") and [s for s, _ in policy] == [1, 2, 3]
    report = calls[-2][1]
    assert report["report_dir"] == run_dir / "report" and (run_dir / "report" / "report.md").is_file()
    assert report["plots"] == sorted((run_dir / "report").glob("*.png")) and report["plots"] and all(report["exist"])
    assert calls[-1][1]["results"] == results == json.loads((run_dir / "results.json").read_text())


def test_a_run_draws_no_report_when_no_plugin_asks_for_one(clean_tiny_run):
    root, results = clean_tiny_run
    assert results["status"] == "complete" and not (root / "tiny" / "report").exists()


def test_a_failed_run_tells_its_loggers_and_unregisters_them(tmp_path, tiny_cache):
    host = _host()
    experiment = load_experiment(TINY, host.registry, ['loggers.names=["recorder", "broken"]'])
    with harness_cache(tiny_cache), pytest.raises(HarnessError, match="the tracker is down"):
        run_experiment(experiment, host, tmp_path, show_progress=False, echo=lambda s: None)
    hooks = [hook for hook, _ in Recorder.calls]
    assert hooks[-1] == "run_failed" and "run_finished" not in hooks
    marker = Recorder.calls[-1][1]["results"]
    assert marker == json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert marker["status"] == "failed" and "the tracker is down" in marker["error"]
    assert not [name for name, _ in host.pm.list_name_plugin() if name.startswith("logger ")]  # gone after the run


# ----------------------------------------------------------------- W&B, offline
def _wandb_records(run_dir: Path) -> tuple[Path, list[dict]]:
    """The offline run's directory and its transaction log as records, read by W&B's own reader (`wandb leet inspect`)."""
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline)],
                         capture_output=True, text=True, timeout=120)
    if "No such option '--json'" in out.stderr:  # the logger works from wandb 0.29; this reader came in 0.31
        pytest.skip("reading an offline W&B run back needs wandb >= 0.31 (`wandb leet inspect --json`)")
    assert out.returncode == 0, out.stderr[-2000:]
    return offline, [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_wandb_offline_run_has_the_config_metrics_results_and_plots(tracked):
    pytest.importorskip("wandb", reason='the wandb logger is an extra: pip install "harness[wandb]"')
    run_dir, results, _ = tracked
    offline, records = _wandb_records(run_dir)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == "tiny" and run["project"] == "tiny" and run["tags"] == ["test"]
    config = {k: v for k, v in run["config"]["update"].items() if k != "_wandb"}
    assert config == json.loads((run_dir / "resolved_config.json").read_text())
    assert config["optimizer"]["ppo"]["steps"] == 3 and "wandb" in config["loggers"]["names"]
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert [(h["step/policy"], h["ppo/kl"]) for h in history if "ppo/kl" in h] == _jsonl(run_dir, "policy", "ppo/kl")
    assert [(h["step/sft"], h["sft/train_loss"]) for h in history if "sft/train_loss" in h] == \
        _jsonl(run_dir, "sft", "sft/train_loss")
    axes = {r["metric"].get("name"): r["metric"].get("step_metric") for r in records if r["type"] == "metric"}
    assert axes["ppo/kl"] == "step/policy" and axes["sft/train_loss"] == "step/sft"
    summary: dict = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    win = _headline(results, "win_rate", "win rate vs SFT")
    assert summary["results/win_rate/win_rate_vs_SFT"] == pytest.approx(win["value"])
    assert summary["results/win_rate/win_rate_vs_SFT/low"] == pytest.approx(win["low"])
    assert summary["status"] == "complete" and summary["config_hash"] == results["config_hash"]
    plots = sorted(p.stem for p in (run_dir / "report").glob("*.png"))
    assert sorted(k[len("report/"):-len(".path")] for k in summary if k.startswith("report/") and k.endswith(".path")) == plots
    images = sorted(p.name.rsplit("_", 2)[0] for p in (offline / "files" / "media" / "images" / "report").glob("*.png"))
    assert images == plots
    assert json.loads((offline / "files" / "results.json").read_text()) == results
    assert (offline / "files" / "report.md").read_text() == (run_dir / "report" / "report.md").read_text()


# ----------------------------------------------------------------- MLflow, local SQLite store
def test_mlflow_run_has_the_config_metrics_results_and_report(tracked):
    pytest.importorskip("mlflow", reason='the mlflow logger is an extra: pip install "harness[mlflow]"')
    from mlflow.tracking import MlflowClient

    from harness_builtins.loggers.tracking import flat

    run_dir, results, _ = tracked
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    resolved = flat(json.loads((run_dir / "resolved_config.json").read_text()))
    assert run.data.params == {k: v if isinstance(v, str) else json.dumps(v) for k, v in resolved.items()}
    assert run.data.params["optimizer.ppo.steps"] == "3"
    history = client.get_metric_history(run.info.run_id, "ppo/kl")
    assert [(m.step, m.value) for m in history] == _jsonl(run_dir, "policy", "ppo/kl")
    win = _headline(results, "win_rate", "win rate vs SFT")
    assert run.data.metrics["results/win_rate/win_rate_vs_SFT"] == pytest.approx(win["value"])
    assert run.data.metrics["results/win_rate/win_rate_vs_SFT/high"] == pytest.approx(win["high"])
    assert run.data.tags["harness.status"] == "complete" and run.data.tags["harness.config_hash"] == results["config_hash"]
    report = sorted(Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report"))
    assert report == sorted(p.name for p in (run_dir / "report").iterdir())
    assert {"report.md", "report.html", "report.csv"} < set(report) and any(n.endswith(".png") for n in report)
    assert {"results.json", "experiment.toml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    local = Path(client.download_artifacts(run.info.run_id, "results.json", str(run_dir.parent / "downloaded")))
    assert json.loads(local.read_text()) == results
    assert (run_dir / "mlartifacts").is_dir()  # artifacts beside the store, not in the working directory


def test_mlflow_marks_an_interrupted_run_killed(tracked):
    pytest.importorskip("mlflow", reason='the mlflow logger is an extra: pip install "harness[mlflow]"')
    from mlflow.tracking import MlflowClient

    from harness_builtins.loggers.mlflow import MlflowLogger, MlflowOptions

    run_dir = tracked[0]
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"  # the tracked run's store (made already), another MLflow experiment
    experiment = load_experiment(TINY, get_plugin_manager(autoload=False).registry)
    logger = MlflowLogger(MlflowOptions(tracking_uri=uri, experiment="killed", tags={"team": "rlhf"}))
    logger.run_started(experiment, run_dir)
    logger.run_failed(experiment, run_dir, {"status": "interrupted", "error": "KeyboardInterrupt: SIGTERM"})
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "KILLED" and run.data.tags["harness.error"] == "KeyboardInterrupt: SIGTERM"
    assert run.data.tags["team"] == "rlhf" and run.data.params["optimizer.name"] == "ppo"
    assert client.get_experiment_by_name("killed").artifact_location == (run_dir / "mlartifacts").as_uri()


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_every_tracker_option_is_documented_with_its_default(name):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "tracking.md").read_text(encoding="utf-8")
    model = get_plugin_manager(autoload=False).registry.get("logger", name).options_model
    shown = {'""': '`""`', "[]": "`[]`", "{}": "`{}`"}  # a default as the table writes it (TOML-ish)
    missing = [field for field, info in model.model_fields.items()
               if f"| `{field}` | {shown[json.dumps(info.get_default(call_default_factory=True))]} |" not in doc]
    assert f"## `[loggers.{name}]`" in doc and missing == []


def test_wandb_marks_a_failed_run_failed(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason='the wandb logger is an extra: pip install "harness[wandb]"')
    from harness_builtins.loggers.wandb import WandbLogger, WandbOptions

    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / ".wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the option alone keeps it offline
    experiment = load_experiment(TINY, get_plugin_manager(autoload=False).registry)
    logger = WandbLogger(WandbOptions(mode="offline", project="p", name="crashed"))
    logger.run_started(experiment, tmp_path)
    logger.metrics_logged(experiment, "sft", tmp_path / "sft", {"sft/train_loss": 2.5}, 7)
    logger.run_failed(experiment, tmp_path, {"status": "failed", "error": "HarnessError: out of memory"})
    _, records = _wandb_records(tmp_path)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    (exit_,) = [r["exit"] for r in records if r["type"] == "exit"]
    summary: dict = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert run["display_name"] == "crashed" and run["project"] == "p" and exit_.get("exit_code") == 1
    assert summary["status"] == "failed" and summary["error"] == "HarnessError: out of memory"
    assert summary["sft/train_loss"] == 2.5 and summary["step/sft"] == 7


def test_a_logger_failing_after_the_run_costs_one_line_not_the_results(clean_tiny_run, tiny_cache, tmp_path):
    import shutil

    root, clean = clean_tiny_run
    for part in ("tiny", ".stages"):  # the clean run's stages: nothing trains again
        shutil.copytree(root / part, tmp_path / part, symlinks=True)
    host = _host()
    experiment = load_experiment(TINY, host.registry, [*OVERRIDES, 'loggers.names=["jsonl", "late"]'])
    lines: list[str] = []
    with harness_cache(tiny_cache):
        results = run_experiment(experiment, host, tmp_path, show_progress=False, echo=lines.append)
    written = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert results["status"] == written["status"] == "complete"
    assert [line for line in lines if "upload refused" in line] == \
        [f"! a plugin failed after the run finished (ConnectionError: upload refused); the results are complete in "
         f"{tmp_path / 'tiny' / 'results.json'}"]
