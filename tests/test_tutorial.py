"""The tutorial plugin of docs/plugins.md, installed as a third party would: one component of each kind.

``tests/tutorial_plugin`` is pip-installed into a private directory and found through its entry
point; its experiment (RLOO on a length-penalized learned reward trained from thumbs feedback,
judged by length, described by its own evaluator) runs end to end on the micro world, and its
evaluator's cell and plot reach the ``harness compare`` report.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fakes import pip_install_into

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "tests" / "tutorial_plugin"
KINDS = {"mini_rloo": "optimizer", "length_penalized": "reward_source", "thumbs": "feedback_format",
         "mean_words": "evaluator", "shorter": "judge"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return pip_install_into(tmp_path_factory.mktemp("site"), TUTORIAL)


@pytest.fixture(scope="module")
def cache(tiny_cache):
    """The session's model cache (HARNESS_CACHE_DIR when set): the micro base model is keyed by its content, and
    building it takes most of a minute on a busy CPU, so the tutorial's world shares the one every tiny run built."""
    return tiny_cache


@pytest.fixture
def harness_cli(installed, cache, monkeypatch, capsys):
    """``harness ARGS`` as the console script runs it (``harness._core.cli.main``, plugins found by entry point),
    in this process with the tutorial's install directory on ``sys.path`` (all a second Python with it on
    PYTHONPATH would add) and the model cache set; returns what it printed on stdout."""
    from harness._core.cli import main

    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what --no-progress sets, undone with the rest afterwards

    def run(args):
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out = capsys.readouterr()
        assert done.value.code == 0, out.err[-3000:]
        return out.out

    return run


def test_every_kind_is_registered_through_the_entry_point(harness_cli):
    rows = json.loads(harness_cli(["plugins", "--json"]))["components"]
    mine = {r["name"]: r["family"] for r in rows if r["plugin"] == "tutorial"}
    assert mine == KINDS


def test_rloo_baseline_leaves_each_sample_out(monkeypatch):
    monkeypatch.syspath_prepend(str(TUTORIAL))
    from harness_tutorial.rloo import leave_one_out

    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, 0 - 4 / 3, 0 - 4 / 3, 0 - 4 / 3, 4 - 0]
    assert leave_one_out(rewards, 4).tolist() == pytest.approx(expected)
    assert leave_one_out(torch.ones(6), 3).abs().sum() == 0  # equal rewards: nothing to learn


def test_the_tutorial_runs_end_to_end_and_its_cells_reach_compare(harness_cli, tmp_path):
    runs = tmp_path / "runs"
    harness_cli(["run", str(TUTORIAL / "tutorial.toml"), "-o", str(runs), "--no-progress"])
    run = runs / "tutorial"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "complete" and results["policy"]["optimizer"] == "mini_rloo"
    curve = results["policy"]["train"]["curve"]
    assert [c["step"] for c in curve] == [1, 2] and {"reward/proxy", "reward/gold", "kl"} <= set(curve[-1])
    assert results["win_rate_vs_sft"]["judge"] == "shorter"
    assert {"policy", "sft"} == set(results["mean_words"])
    records = [json.loads(line) for line in (run / "feedback" / "feedback.jsonl").read_text().splitlines()]
    assert records and all(len(r["thumbs"]) == 2 for r in records)
    assert results["feedback"]["n_records"] == len(records) and "thumbs_agreement" in results["feedback"]["agreement"]
    out = harness_cli(["compare", str(run)])
    assert "mean words" in out
    report = (runs / "report" / "report.md").read_text()
    lines = report.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| tutorial") and "mini_rloo" in line)  # every run's row
    rule = next(i for i in range(at, 0, -1) if lines[i].startswith("|---"))  # the details table's header sits above it
    row, header = lines[at], lines[rule - 1]
    assert "| mean words |" in header and "| mini_rloo | length_penalized | thumbs |" in row
    words = results["mean_words"]
    assert f"{words['sft']:.1f} → {words['policy']:.1f}" in row
    # the plot its evaluator declares is drawn into the report too
    assert "![mean_words](mean_words.png)" in report
    assert (runs / "report" / "mean_words.png").read_bytes()[:4] == b"\x89PNG"
