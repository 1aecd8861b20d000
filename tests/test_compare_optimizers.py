"""The six optimizers of ``experiments/compare-optimizers.toml`` at test size (``tests/data/tiny-optimizers.toml``):
one SFT model and one reward model for all, every variant in the report with its win rate and interval, the
best-of-n curve drawn, and best-of-n seen by the evaluators like any policy (best-of-1 is π_SFT)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness._core.config import load_experiment
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
SIX = ROOT / "tests" / "data" / "tiny-optimizers.toml"
VARIANTS = ["ppo", "a2c", "dpo", "grpo", "rloo", "best_of_n,n=1", "best_of_n,n=4"]


@pytest.fixture(scope="module")
def compared(tiny_cache, tmp_path_factory):
    """The six-optimizer comparison, run once for the module with the session's model cache (HARNESS_CACHE_DIR
    when set): the micro base model every tiny run uses is built once per session, not once more here."""
    host = get_plugin_manager(autoload=False)
    out = tmp_path_factory.mktemp("runs")
    with harness_cache(tiny_cache):
        summary = run_experiment(load_experiment(SIX, host.registry), host, out, show_progress=False,
                                 echo=lambda s: None)
    return out / "tiny-optimizers", summary


def results(root: Path, variant: str) -> dict:
    return json.loads((root / variant / "results.json").read_text())


def test_the_experiment_compares_the_same_six_as_the_shipped_one():
    registry = get_plugin_manager(autoload=False).registry
    shipped = load_experiment(ROOT / "experiments" / "compare-optimizers.toml", registry)
    assert {v.choice("optimizer").name for v in shipped.variants.values()} == {
        "ppo", "a2c", "dpo", "grpo", "rloo", "best_of_n"}
    assert [v.choice("optimizer").options.n for v in shipped.variants.values()
            if v.choice("optimizer").name == "best_of_n"] == [1, 2, 4, 8, 16, 32]
    assert list(load_experiment(SIX, registry).variants) == VARIANTS


def test_all_six_share_one_sft_and_rm_and_reach_the_report(compared):
    root, summary = compared
    assert list(summary["variants"]) == VARIANTS and not summary["failed"]
    for stage in ("sft", "feedback", "reward_model"):
        assert len({(root / v / stage).resolve() for v in VARIANTS}) == 1  # trained once, linked into the rest
    text = (root / "report" / "report.md").read_text()
    for variant in VARIANTS:
        optimizer = variant.split(",")[0]
        assert f"| {variant} | {optimizer} |" in text
        win = results(root, variant)["win_rate_vs_sft"]
        assert win["ci_low"] <= win["rate"] <= win["ci_high"]
    assert (root / "report" / "best_of_n.png").read_bytes()[:4] == b"\x89PNG" and "(best_of_n.png)" in text
    grpo = results(root, "grpo")["policy"]["train"]
    assert [c["step"] for c in grpo["curve"]] == [1, 2, 3] and "grpo/zero_std_frac" in grpo["final"]


def test_best_of_n_is_judged_like_a_policy(compared):
    root, _ = compared
    one, four = results(root, "best_of_n,n=1"), results(root, "best_of_n,n=4")
    assert one["win_rate_vs_sft"]["rate"] == 0.5 and one["policy"]["kl"] == 0.0  # best-of-1 is π_SFT
    assert four["policy"]["kl"] == pytest.approx(math.log(4) - 3 / 4)
    assert four["policy"]["reward_proxy"] >= one["policy"]["reward_proxy"] - 1e-6  # never below its first pick
    assert four["policy"]["train"] == {**four["policy"]["train"], "n": 4, "steps": 0}
