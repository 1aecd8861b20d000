"""RLOO on the tiny problem of ``tests/test_ppo.py``: the leave-one-out baseline and the folded KL by hand,
the proxy reward rises, the clipped update is REINFORCE at ρ = 1, and REINFORCE refuses to reuse a batch."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from harness_builtins.optimizers.rloo import RLOO, leave_one_out, sequence_rewards
from tests.test_ppo import mean_reward, names, sft_dir, train  # noqa: F401 - fixture


def test_the_baseline_leaves_each_sample_out():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    # sample i of a group: r_i − (sum of the group − r_i) / (k − 1)
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, 0 - 4 / 3, 0 - 4 / 3, 0 - 4 / 3, 4 - 0]
    assert leave_one_out(rewards, 4).tolist() == pytest.approx(expected)
    assert leave_one_out(torch.tensor([1.0, 3.0]), 2).tolist() == [-2.0, 2.0]  # k = 2: the other sample
    assert leave_one_out(torch.ones(6), 3).abs().sum() == 0  # equal rewards: nothing to learn


def test_the_kl_penalty_is_folded_into_each_reward():
    scores, kl = torch.tensor([1.0, 0.5]), torch.tensor([2.0, 0.0])
    assert sequence_rewards(scores, kl, beta=0.1).tolist() == pytest.approx([0.8, 0.5])
    assert sequence_rewards(scores, None, beta=0.1).tolist() == [1.0, 0.5]  # β = 0: no reference, the score alone


def test_rloo_raises_the_proxy_reward(tmp_path, sft_dir):
    summary, logged = train("rloo", tmp_path, sft_dir, steps=15, lr=1e-2)
    first, last = mean_reward(logged, {1, 2, 3}), mean_reward(logged, {13, 14, 15})
    assert last > first + 0.3, (first, last)
    assert {"reward/proxy", "reward/gold", "kl", "kl_coef", "loss", "grad_norm", "updates"} <= names(logged[-1][1], "rloo")
    assert summary["optimizer"] == "rloo" and logged[-1][1]["rloo/kl"] > 0


def test_the_clipped_update_is_reinforce_at_ratio_one(tmp_path, sft_dir):
    """One pass over the whole batch: ρ = 1 at the only step, and ∇ min(ρ·A, clip(ρ)·A) = A·∇log π_θ(y|x)."""
    _, reinforce = train("rloo", tmp_path / "a", sft_dir, steps=3)
    _, clipped = train("rloo", tmp_path / "b", sft_dir, steps=3, update="clipped")
    for (_, want), (_, got) in zip(reinforce, clipped):
        for key in ("reward/proxy", "rloo/kl", "rloo/grad_norm"):  # the same gradients, so the same next samples
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert abs(clipped[0][1]["rloo/loss"]) < 1e-6  # ρ = 1: the value is −mean A, 0 for leave-one-out advantages
    assert clipped[0][1]["rloo/clipfrac"] == 0.0 and "rloo/clipfrac" not in reinforce[0][1]


def test_reinforce_takes_one_on_policy_step_per_batch():
    with pytest.raises(ValidationError, match="update = 'reinforce' takes one on-policy step"):
        RLOO.Options(iterations=2)
    with pytest.raises(ValidationError, match="update = 'reinforce' takes one on-policy step"):
        RLOO.Options(batch_size=16, minibatch_size=8)
    assert RLOO.Options(update="clipped", iterations=2, batch_size=16, minibatch_size=8).minibatch() == 8
