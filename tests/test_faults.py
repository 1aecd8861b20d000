"""Fault injection: a run killed with SIGKILL at seeded random points, rerun until it finishes,
ends with the same results.json as an uninterrupted run (every non-timing value) and a metrics
stream that holds each step once; SIGTERM marks the stage interrupted and says how to resume."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness._core.cli import build_cli
from harness._core.config import load_experiment
from harness._core.errors import HarnessError
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment

from tests.tiny_run import OVERRIDES, ROOT, TINY
from tests.tiny_run import result_values as _values

KILL_POINTS = {  # per stage, where the kill plugin may SIGKILL the run
    "sft": ["metrics:sft:1", "metrics:sft:2", "finished:sft"],
    "feedback": ["finished:feedback"],
    "reward_model": ["metrics:reward_model:1", "metrics:reward_model:2", "finished:reward_model"],
    "policy": ["metrics:policy:1", "metrics:policy:2", "metrics:policy:3", "finished:policy"],
    "evaluation": ["finished:evaluation"],
}


@pytest.fixture(scope="module")
def env(tiny_cache):
    return {**os.environ, "HARNESS_CACHE_DIR": tiny_cache, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "faults")])}


def _cli(env, output: Path, kill_at: str = "", **popen) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "harness", "run", str(TINY), "--output", str(output), "--no-progress",
            "-p", "kill_plugin", *(a for o in OVERRIDES for a in ("--set", o))]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                          env={**env, "HARNESS_TEST_KILL_AT": kill_at}, **popen)




def _steps(stage_dir: Path) -> list[int]:
    lines = (stage_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


@pytest.fixture
def clean(clean_tiny_run, tiny_cache, monkeypatch):
    """The session's uninterrupted tiny run: (output root, results); the test runs with its model cache."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", tiny_cache)
    return clean_tiny_run


def test_runs_killed_at_random_points_resume_to_the_uninterrupted_results(env, clean, tmp_path):
    clean_root, clean = clean

    rng = random.Random(14)  # seeded: which three stages, and where in each, the run is killed
    stages = sorted(rng.sample(list(KILL_POINTS), 3), key=list(KILL_POINTS).index)
    points = [rng.choice(KILL_POINTS[s]) for s in stages]
    faulty = tmp_path / "faulty"
    for point in points:
        killed = _cli(env, faulty, point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        marker = json.loads((faulty / "tiny" / "results.json").read_text())
        assert marker["status"] == "running", marker  # a killed run never leaves results that look current
    with pytest.MonkeyPatch.context() as mp:  # the last rerun, which nothing kills, in this process
        mp.syspath_prepend(str(ROOT / "tests" / "faults"))
        mp.delenv("HARNESS_TEST_KILL_AT", raising=False)
        host = get_plugin_manager(["kill_plugin"], autoload=False)  # the plugins the killed runs had
        run_experiment(load_experiment(TINY, host.registry, OVERRIDES), host, faulty, show_progress=False,
                       echo=lambda s: None)

    resumed = json.loads((faulty / "tiny" / "results.json").read_text())
    assert resumed["status"] == "complete"
    assert _values(resumed) == _values(json.loads(json.dumps(clean))), points
    for stage in ("sft", "reward_model", "policy"):  # each step logged once, as in the uninterrupted run
        assert _steps(faulty / "tiny" / stage) == _steps(clean_root / "tiny" / stage), (stage, points)


def test_a_failed_rerun_with_a_changed_config_leaves_no_stale_results(env, clean, tmp_path, monkeypatch):
    """The repro: a copy of a finished run rerun with an unreachable LLM judge kept the gold judge's numbers."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", env["HARNESS_CACHE_DIR"])
    for part in ("tiny", ".stages"):  # the run and the stage store its stages link into
        shutil.copytree(clean[0] / part, tmp_path / part, symlinks=True)
    host = get_plugin_manager(autoload=False)
    llm = ["evaluation.win_rate.judge='llm'", "evaluation.win_rate.llm={base_url='http://127.0.0.1:9/v1', "
           "model='m', api_key_env='', max_retries=0}"]
    experiment = load_experiment(TINY, host.registry, [*OVERRIDES, *llm])
    with pytest.raises(HarnessError, match="judge"):
        run_experiment(experiment, host, tmp_path, show_progress=False, echo=lambda s: None)
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert results["status"] == "failed" and "win_rate_vs_sft" not in results
    assert results["config_hash"] == experiment.hash_of(*experiment.to_dict())
    report = CliRunner().invoke(build_cli(host), ["compare", str(clean[0] / "tiny"), str(tmp_path / "tiny")])
    assert report.exit_code == 2 and "not comparable: its last run is failed" in report.output, report.output
    assert str(tmp_path / "tiny") in report.output and "Traceback" not in report.output


def test_sigterm_marks_the_stage_interrupted_and_says_how_to_resume(env, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(TINY), "--output", str(tmp_path), "--no-progress",
         "--set", "optimizer.ppo.steps=400", *(a for o in OVERRIDES for a in ("--set", o))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    manifest = tmp_path / "tiny" / "policy" / "manifest.json"
    deadline = time.monotonic() + 120
    while not (manifest.exists() and (tmp_path / "tiny" / "policy" / "metrics.jsonl").exists()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "interrupted by SIGTERM" in lines[-1] and "rerun `harness run" in lines[-1] and "Traceback" not in err
    assert json.loads(manifest.read_text())["status"] == "interrupted"
    assert json.loads((tmp_path / "tiny" / "results.json").read_text())["status"] == "interrupted"
