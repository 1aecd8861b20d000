"""Best-of-n: KL_bon by hand, the pick, best-of-1 = π_SFT, evaluation samples it through the optimizer's
policy (not the saved weights), the n axis of a comparison, and the report's reward-vs-KL_bon plot."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness._core.compute import ComputeOptions
from harness._core.config import EvaluationTable, load_experiment
from harness._core.contracts import Components, NoOptions, StageContext
from harness._core.errors import HarnessError
from harness._core.evaluation import sample_texts
from harness._core.models import load_causal_lm
from harness._core.plugins import get_plugin_manager
from harness_builtins.optimizers.best_of_n import BestOfN, BestOfNPolicy, kl_bon, pick_best
from tests.fakes import make_experiment
from tests.test_ppo import FakeWorld, GoodWordReward, make_ctx, sft_dir  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = EvaluationTable(prompts=16, max_new_tokens=6, batch_size=8)


def test_kl_bon_by_hand():
    assert kl_bon(1) == 0.0
    assert kl_bon(2) == pytest.approx(math.log(2) - 0.5)  # 0.1931
    assert kl_bon(16) == pytest.approx(2.772589 - 0.9375, abs=1e-6)
    assert [round(kl_bon(n), 3) for n in (4, 8, 32)] == [0.636, 1.204, 2.497]


def test_the_best_of_each_prompt_is_picked_first_on_ties():
    scores = torch.tensor([[0.1, 0.5, 0.0], [0.3, 0.5, -1.0], [0.2, 0.9, -2.0]])  # [n = 3, prompts = 3]
    assert pick_best(scores).tolist() == [1, 2, 0]


def test_best_of_n_picks_with_the_reward_source_and_best_of_1_is_sft(sft_dir):
    model, tokenizer = load_causal_lm(sft_dir)
    world, reward = FakeWorld(), GoodWordReward()
    prompts = world.prompts("eval")[:16]
    sft = sample_texts(model, tokenizer, world, prompts, SETTINGS, seed=0)
    one, kl_one = BestOfNPolicy(model, tokenizer, world, reward, 1).respond(prompts, SETTINGS, 0)
    assert one == sft and kl_one == [0.0] * 16  # the first candidate is π_SFT's own sample
    eight, kl_eight = BestOfNPolicy(model, tokenizer, world, reward, 8).respond(prompts, SETTINGS, 0)
    assert kl_eight == [pytest.approx(kl_bon(8))] * 16
    better, base = reward.score(prompts, eight), reward.score(prompts, sft)
    assert bool((better >= base).all()) and better.mean() > base.mean()  # never worse than its first candidate


def test_training_saves_sft_as_the_policy_and_needs_a_reward(tmp_path, sft_dir):
    summary = BestOfN(BestOfN.Options(n=4)).train(make_ctx(tmp_path, sft_dir, []), GoodWordReward())
    assert summary == {"optimizer": "best_of_n", "n": 4, "kl_bon": pytest.approx(kl_bon(4)), "steps": 0, "curve": []}
    saved = (tmp_path / "policy" / "model" / "model.safetensors").read_bytes()
    assert saved == (sft_dir / "model.safetensors").read_bytes()  # its weights are π_SFT's: tax 0 by construction
    with pytest.raises(HarnessError, match="reward source"):
        BestOfN().train(make_ctx(tmp_path, sft_dir, []), None)


def test_evaluation_samples_the_optimizers_policy_not_the_saved_weights(tmp_path, sft_dir):
    from harness._core.stage_driver import _evaluate

    reward = GoodWordReward()
    experiment = make_experiment(compute=ComputeOptions(backend="cpu", threads=1), evaluation=SETTINGS,
                                 evaluators={"rewards": NoOptions()})
    run = SimpleNamespace(experiment=experiment, world=FakeWorld(), host=get_plugin_manager(autoload=False),
                          components=Components(optimizer=BestOfN(BestOfN.Options(n=4)), reward=reward),
                          artifacts={"policy": tmp_path / "no-such-model", "sft": sft_dir})
    ctx = StageContext(experiment=experiment, stage="evaluation", stage_dir=tmp_path, world=run.world,
                       log=lambda m, s: None, artifacts=dict(run.artifacts), components=run.components)
    fragment = _evaluate(run, ctx)
    assert fragment["policy"]["kl"] == pytest.approx(kl_bon(4))  # KL_bon, not a single-sample estimate
    assert fragment["policy"]["reward_proxy"] > fragment["policy"]["sft_reward_proxy"]
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert len(samples) == 16 and all(row["kl"] == pytest.approx(kl_bon(4)) for row in samples)


def test_n_is_an_axis_of_a_comparison(tmp_path):
    exp = tmp_path / "bon.toml"
    exp.write_text((ROOT / "tests" / "data" / "tiny.toml").read_text()
                   + '\n[compare]\noptimizer.name = ["best_of_n"]\n"optimizer.best_of_n.n" = [1, 4, 16]\n')
    loaded = load_experiment(exp, get_plugin_manager(autoload=False).registry)
    assert {label: v.choice("optimizer").options.n for label, v in loaded.variants.items()} == {
        "best_of_n,n=1": 1, "best_of_n,n=4": 4, "best_of_n,n=16": 16}


def test_the_report_draws_gold_and_proxy_against_kl_bon(tmp_path):
    from harness._core.report import render_report

    def run(n, proxy, gold):
        policy = {"optimizer": "best_of_n", "reward_proxy": proxy, "reward_gold": gold, "kl": kl_bon(n),
                  "sft_reward_proxy": 0.1, "sft_reward_gold": 0.2, "train": {"n": n, "kl_bon": kl_bon(n), "curve": []}}
        return {"label": f"best_of_n,n={n}", "dir": tmp_path / str(n), "curve": [],
                "results": {"policy": policy, "components": {"optimizer": "best_of_n"}}}

    registry = get_plugin_manager(autoload=False).registry
    report = render_report([run(1, 0.1, 0.2), run(4, 0.4, 0.3), run(16, 0.7, 0.25)], tmp_path / "report", registry,
                           title="bon")
    assert (tmp_path / "report" / "best_of_n.png").read_bytes()[:4] == b"\x89PNG"
    assert "(best_of_n.png)" in report.read_text()
