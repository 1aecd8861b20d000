"""The whole pipeline on a tiny config: CLI run, results.json contract, resume after a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import hookimpl
from harness._core.config import load_experiment
from harness._core.errors import HarnessError
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"


@pytest.fixture(scope="module")
def cache(tiny_cache):
    """The session's model cache, set for the module: the micro base model every tiny run uses is built once."""
    with harness_cache(tiny_cache):
        yield tiny_cache


class CrashAtFirstPolicyStep:
    """Kills the run at the first optimizer step of the policy, i.e. right after the RM stage finished
    (SFT and RM steps run through the same hook)."""

    @hookimpl(wrapper=True)
    def optimizer_step(self, experiment, stage, step, run_step):
        if stage == "policy":
            raise HarnessError("simulated crash")
        return (yield)


def test_cli_run_writes_results_and_prints_a_summary(cache, tmp_path, monkeypatch, capsys):
    """``harness run`` as the console script runs it (``harness._core.cli.main``), in this process: the other
    tests that run the command in a Python of their own (tests/test_faults.py) need one for a kill."""
    from harness._core.cli import main

    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what --no-progress sets, undone afterwards
    with pytest.raises(SystemExit) as done:
        main(["run", str(TINY), "--output", str(tmp_path), "--no-progress"])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err[-3000:]
    assert "Win rate vs SFT" in out.out and "95% CI" in out.out
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert {"config_hash", "sft", "feedback", "rm", "policy", "win_rate_vs_sft", "stages", "tax", "peak_rss_mib"} <= set(results)
    assert results["feedback"]["n_records"] == results["rm"]["n_records"] > 0
    assert results["tax"]["embedded_cloze"]["metric"] == "brier_score"  # calibration: no ceiling at 100% accuracy
    assert results["tax"]["embedded_cloze"]["higher_is_better"] is False
    assert {"accuracy", "gold_accuracy"} <= set(results["rm"])
    assert {"reward_proxy", "reward_gold", "sft_reward_proxy", "sft_reward_gold", "kl"} <= set(results["policy"])
    win = results["win_rate_vs_sft"]
    assert win["judge"] == "gold" and win["n"] == 16 and win["ci_low"] <= win["rate"] <= win["ci_high"]
    if win["ties"] < win["n"]:  # some verdict was decided: the summary says by which gold term
        assert "decided by (gold terms)" in out.out
    assert list(results["stages"]) == ["sft", "feedback", "reward_model", "policy", "evaluation"]
    assert all(results["stages"][s]["wall_s"] > 0 for s in results["stages"])
    assert (tmp_path / "tiny" / "feedback" / "feedback.jsonl").is_file()
    metrics = (tmp_path / "tiny" / "policy" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 3 and {"reward/proxy", "reward/gold", "ppo/kl", "ppo/clipfrac"} <= set(json.loads(metrics[0]))
    assert list((tmp_path / "tiny" / "policy" / "tensorboard").iterdir())


def test_run_interrupted_after_rm_resumes_without_retraining(cache, tmp_path):
    crashing = get_plugin_manager(extra=[CrashAtFirstPolicyStep()], autoload=False)
    experiment = load_experiment(TINY, crashing.registry, ["evaluation.evaluators=['rewards']"])
    with pytest.raises(HarnessError, match="simulated crash"):
        run_experiment(experiment, crashing, tmp_path, show_progress=False, echo=lambda s: None)
    run_dir = tmp_path / "tiny"
    assert json.loads((run_dir / "policy" / "manifest.json").read_text())["status"] == "failed"
    sft_weights = (run_dir / "sft" / "model" / "model.safetensors").stat().st_mtime_ns

    host = get_plugin_manager(autoload=False)
    results = run_experiment(experiment, host, tmp_path, show_progress=False, echo=lambda s: None)
    assert all(results["stages"][s]["reused"] for s in ("sft", "feedback", "reward_model"))
    assert not results["stages"]["policy"]["reused"]
    assert (run_dir / "sft" / "model" / "model.safetensors").stat().st_mtime_ns == sft_weights
    again = run_experiment(experiment, host, tmp_path, show_progress=False, echo=lambda s: None)
    assert all(stage["reused"] for stage in again["stages"].values())
