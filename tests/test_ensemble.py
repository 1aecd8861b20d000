"""Reward-model ensembles: the ``bradley_terry`` stage with ``members = N`` and reward source ``ensemble``.

Same toy world, tiny Llama and SFT model as ``test_stages`` (its fixtures are imported by name).
"""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from harness._core.errors import HarnessError
from harness._core.plugins import DEFAULT_PLUGINS, get_plugin_manager
from harness.api import load_reward_model, member_dirs, read_offset, score_texts
from harness_builtins.feedback.ranking import Ranking
from harness_builtins.rewards.ensemble import EnsembleReward, aggregate
from harness_builtins.stages.reward_model import (
    BradleyTerryRM,
    bootstrap_groups,
    encode_groups,
    pair_accuracy,
    split_by_prompt,
)
from tests.test_stages import (  # noqa: F401 - fixtures are used by name
    RM_OPTIONS,
    VALUE,
    ToyWorld,
    _restore_torch_threads,
    base_dir,
    collect_feedback,
    make_ctx,
    metric,
    sft_run,
)

ENSEMBLE = RM_OPTIONS.model_copy(update={"members": 3})
FEEDBACK = Ranking.Options(k=4, overlap=0.2)  # as test_stages' reward model


def run_stage(run_dir, sft_run, options=ENSEMBLE):
    artifacts, _ = collect_feedback(run_dir, Ranking(FEEDBACK), {"sft": sft_run.model_dir})
    ctx, logged = make_ctx(run_dir, "reward_model", artifacts, feedback=Ranking(FEEDBACK))
    return ctx, logged, BradleyTerryRM(options).run(ctx)


def prepared(stage_dir, run_dir, **options) -> EnsembleReward:
    reward = EnsembleReward(EnsembleReward.Options(batch_size=16, **options))
    reward.prepare(make_ctx(run_dir, "prepare", {"reward_model": stage_dir})[0])
    return reward


def toy_inputs():
    """Every adjective for every topic: responses the members rank, from best to worst."""
    prompts = ToyWorld().prompts("eval")[:8]
    pairs = [(p, f"{p.text.split()[-1]} are {adj}") for p in prompts for adj in VALUE]
    return [p for p, _ in pairs], [r for _, r in pairs]


@pytest.fixture(scope="module")
def ensemble_run(sft_run):
    ctx, logged, summary = run_stage(sft_run.dir, sft_run)
    return SimpleNamespace(ctx=ctx, logged=logged, summary=summary, stage_dir=ctx.stage_dir)


@pytest.fixture(scope="module")
def reference(ensemble_run):
    """Each member's offset-corrected scores on the toy inputs, computed model by model ([M, B])."""
    prompts, responses = toy_inputs()
    rows = []
    for path in member_dirs(ensemble_run.stage_dir):
        model, tok = load_reward_model(path)
        raw = score_texts(model, tok, ToyWorld(), prompts, responses, max_length=256, batch_size=16)
        rows.append(raw - read_offset(path))
    return torch.stack(rows)


# ----------------------------------------------------------------- the stage
def test_stage_writes_one_model_per_member(ensemble_run):
    stage_dir, summary = ensemble_run.stage_dir, ensemble_run.summary
    dirs = member_dirs(stage_dir)
    assert dirs == [stage_dir / "model", stage_dir / "members" / "1", stage_dir / "members" / "2"]
    for path, member in zip(dirs, summary["members"]):
        assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
        assert json.loads((path / "reward_normalization.json").read_text())["offset"] == pytest.approx(member["offset"])
    assert summary["offset"] == summary["members"][0]["offset"]
    for prefix in ("rm", "rm/member1", "rm/member2"):
        assert metric(ensemble_run.logged, f"{prefix}/val_accuracy") and metric(ensemble_run.logged, f"{prefix}/train_loss")
    json.dumps(summary)


def test_every_member_and_the_ensemble_beat_chance_on_heldout_pairs(ensemble_run):
    summary = ensemble_run.summary
    assert len(summary["members"]) == 3
    assert summary["accuracy"] == summary["members"][0]["accuracy"]
    for member in summary["members"]:
        assert member["accuracy"] > 0.75 and member["gold_accuracy"] > 0.75  # test_stages' bar for one RM
    assert summary["ensemble_accuracy"] > 0.75 and summary["ensemble_gold_accuracy"] > 0.75


def test_members_differ(reference):
    for i in range(len(reference)):
        for j in range(i):
            assert not torch.allclose(reference[i], reference[j], atol=1e-4)


def test_bootstrap_resamples_whole_prompts_with_replacement():
    def group(prompt_id):
        return SimpleNamespace(group=SimpleNamespace(prompt=SimpleNamespace(id=prompt_id)))

    groups = [group(f"p{i}") for i in range(30) for _ in range(1 + i % 3)]  # 1-3 records per prompt
    sample = bootstrap_groups(groups, seed=1)
    ids = [g.group.prompt.id for g in sample]
    per_prompt = {f"p{i}": 1 + i % 3 for i in range(30)}
    assert all(ids.count(p) % per_prompt[p] == 0 for p in set(ids))  # a drawn prompt brings all its records
    assert sum(ids.count(p) // per_prompt[p] for p in set(ids)) == 30  # one draw per prompt, with replacement
    assert len(set(ids)) < 30  # so some prompts are left out
    assert [g.group.prompt.id for g in bootstrap_groups(groups, seed=1)] == ids
    assert [g.group.prompt.id for g in bootstrap_groups(groups, seed=2)] != ids


def test_ensemble_accuracy_is_that_of_the_mean_reward(ensemble_run, sft_run):
    # the stage's figure, recomputed through the reward source on the same held-out split
    records = ensemble_run.ctx.feedback_records()
    reward = prepared(ensemble_run.stage_dir, sft_run.dir, aggregate="mean")
    groups = encode_groups(reward.members[0].tokenizer, ToyWorld(), Ranking(FEEDBACK).preference_groups(records))
    _, heldout = split_by_prompt(records, groups, ENSEMBLE.val_fraction, seed=0)
    rewards = [reward.score([g.group.prompt] * len(g.response_ids), list(g.group.responses)) for g in heldout]
    assert pair_accuracy(heldout, rewards) == pytest.approx(ensemble_run.summary["ensemble_accuracy"])


def test_interrupted_stage_resumes_at_the_member_it_was_training(ensemble_run, sft_run, tmp_path, monkeypatch):
    real_epoch = BradleyTerryRM._epoch

    def dies_in_member_2(self, *args):
        epoch, member = args[7], args[9]
        if member.index == 2 and epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, *args)

    monkeypatch.setattr(BradleyTerryRM, "_epoch", dies_in_member_2)
    with pytest.raises(KeyboardInterrupt):
        run_stage(tmp_path, sft_run)
    saved = member_dirs(tmp_path / "reward_model")
    assert len(saved) == 2
    mtimes = [(d / "model.safetensors").stat().st_mtime_ns for d in saved]
    monkeypatch.setattr(BradleyTerryRM, "_epoch", real_epoch)

    _, logged, summary = run_stage(tmp_path, sft_run)
    assert [(d / "model.safetensors").stat().st_mtime_ns for d in saved] == mtimes
    assert metric(logged, "rm/train_loss") == [] and metric(logged, "rm/member1/train_loss") == []
    straight = len(metric(ensemble_run.logged, "rm/member2/val_accuracy"))
    assert len(metric(logged, "rm/member2/val_accuracy")) == straight - 1  # epoch 0 came from its checkpoint
    for resumed, expected in zip(summary["members"], ensemble_run.summary["members"]):
        assert resumed["accuracy"] == expected["accuracy"] and resumed["best_epoch"] == expected["best_epoch"]
        assert resumed["offset"] == pytest.approx(expected["offset"], abs=1e-5)


# ----------------------------------------------------------------- the reward source
def test_aggregates_of_real_member_scores(ensemble_run, sft_run, reference):
    prompts, responses = toy_inputs()
    score = {how: prepared(ensemble_run.stage_dir, sft_run.dir, aggregate=how, k=0.5).score(prompts, responses)
             for how in ("mean", "min", "mean_minus_std")}
    mean, std = reference.mean(0), reference.std(0, correction=0)
    assert torch.allclose(score["mean"], mean, atol=1e-5)
    assert torch.allclose(score["min"], reference.min(0).values, atol=1e-5)
    assert (score["min"] <= score["mean"] + 1e-6).all() and (score["min"] < score["mean"] - 1e-4).any()
    assert torch.allclose(score["mean_minus_std"], mean - 0.5 * std, atol=1e-5)


def test_member_scores_and_diagnostics(ensemble_run, sft_run, reference):
    prompts, responses = toy_inputs()
    reward = prepared(ensemble_run.stage_dir, sft_run.dir)
    assert reward.diagnostics() == {}
    assert torch.allclose(reward.member_scores(prompts, responses), reference, atol=1e-5)
    reward.score(prompts, responses)
    diagnostics = reward.diagnostics()
    assert diagnostics["reward/ensemble_std"] == pytest.approx(reference.std(0, correction=0).mean().item(), rel=1e-4)
    assert 0 < diagnostics["reward/ensemble_std"] <= diagnostics["reward/ensemble_range"]


def test_aggregate_by_hand():
    scores = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert aggregate(scores, "mean").tolist() == [2.0, 0.0]
    assert aggregate(scores, "min").tolist() == [1.0, 0.0]
    assert aggregate(scores, "mean_minus_std", k=2.0).tolist() == [0.0, 0.0]  # population std: 1 and 0


def test_ensemble_needs_at_least_two_members(ensemble_run, sft_run, tmp_path):
    single = tmp_path / "reward_model"
    shutil.copytree(ensemble_run.stage_dir / "model", single / "model")
    with pytest.raises(HarnessError, match=r"members = N ≥ 2"):
        prepared(single, sft_run.dir)


def test_ensemble_is_a_builtin_reward_source():
    assert "harness_builtins.rewards.ensemble" in DEFAULT_PLUGINS
    host = get_plugin_manager(builtins=("harness_builtins.rewards.ensemble",), autoload=False)
    assert host.registry.get("reward_source", "ensemble").factory is EnsembleReward
