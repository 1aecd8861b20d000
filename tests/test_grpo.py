"""GRPO on the tiny problem of ``tests/test_ppo.py``: group advantages and loss types by hand, the proxy
reward rises, β = 0 loads no reference (and no critic is ever built), an interrupted run resumes
exactly, and two processes train like one."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness_builtins.optimizers.grpo import GRPO, aggregate, group_advantages
from tests.test_ppo import (GoodWordReward, assert_resumes_exactly, make_ctx, mean_reward, names, sft_dir,  # noqa: F401
                            train)

ROOT = Path(__file__).resolve().parents[1]
GRPO_METRICS = {"reward/proxy", "reward/gold", "kl", "kl_coef", "kl_loss", "loss", "clipfrac", "approx_kl",
                "grad_norm", "updates", "reward_std", "zero_std_frac", "policy/entropy", "policy/response_len"}


# ----------------------------------------------------------------- the math, by hand
def test_group_advantage_is_the_reward_relative_to_its_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    # group 1: mean 3, sample std √(14/3); group 2: mean 1, sample std √(12/3) = 2; ε = 1e-4
    s1, s2 = math.sqrt(14 / 3) + 1e-4, 2.0 + 1e-4
    expected = [-2 / s1, -1 / s1, 0.0, 3 / s1, -1 / s2, -1 / s2, -1 / s2, 3 / s2]
    assert group_advantages(rewards, 4).tolist() == pytest.approx(expected, rel=1e-6)
    # Dr. GRPO: centred, never divided by the std (no difficulty bias)
    assert group_advantages(rewards, 4, scale=False).tolist() == pytest.approx([-2, -1, 0, 3, -1, -1, -1, 3])
    assert group_advantages(torch.full((4,), 0.7), 4).tolist() == [0.0] * 4  # equal rewards: no signal, no NaN


def test_loss_types_reduce_tokens_as_their_papers_do():
    per_token = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # responses of 2 tokens and of 1
    assert aggregate(per_token, mask, "grpo", 3).item() == pytest.approx((1.5 + 3.0) / 2)  # mean of token means
    assert aggregate(per_token, mask, "dr_grpo", 3).item() == pytest.approx((3 / 3 + 3 / 3) / 2)  # sums / max_new_tokens
    assert aggregate(per_token, mask, "dapo", 3).item() == pytest.approx((1 + 2 + 3) / 3)  # one token mean


# ----------------------------------------------------------------- training
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_raises_the_proxy_reward(tmp_path, sft_dir, loss_type):
    summary, logged = train("grpo", tmp_path, sft_dir, steps=15, iterations=4, loss_type=loss_type)
    first, last = mean_reward(logged, {1, 2, 3}), mean_reward(logged, {13, 14, 15})
    assert last > first + 0.3, (first, last)
    assert GRPO_METRICS <= names(logged[-1][1], "grpo")
    assert logged[-1][1]["grpo/kl"] > 0 and logged[-1][1]["grpo/updates"] == 4
    assert summary["optimizer"] == "grpo" and {"generation", "reward", "policy", "reference", "update"} <= set(
        summary["phase_s"])


def test_beta_zero_loads_no_reference_and_no_critic_is_built(tmp_path, sft_dir, monkeypatch):
    import harness._online.run as online_run

    loaded = []
    real = online_run.load_causal_lm
    monkeypatch.setattr(online_run, "load_causal_lm", lambda path, **kw: loaded.append(path) or real(path, **kw))
    run = online_run.setup(make_ctx(tmp_path, sft_dir, []), GRPO.Options(batch_size=8, init_kl_coef=0.0), GoodWordReward(),
                          "grpo")
    assert run.reference is None and len(loaded) == 1  # the policy alone; trl's GRPO does the same at β = 0
    assert list(run.critic.parameters()) == []
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in run.policy.parameters()}
    loaded.clear()
    with_beta = online_run.setup(make_ctx(tmp_path, sft_dir, []), GRPO.Options(batch_size=8), GoodWordReward(), "grpo")
    assert with_beta.reference is not None and len(loaded) == 2

    summary, logged = train("grpo", tmp_path / "run", sft_dir, steps=2, init_kl_coef=0.0)
    assert "grpo/kl" not in logged[-1][1] and "grpo/kl_loss" not in logged[-1][1]  # not measured: never faked
    assert all("kl" not in point for point in summary["curve"])


def test_options_refuse_what_cannot_work():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="multiple of group_size"):
        GRPO.Options(batch_size=10, group_size=4)
    with pytest.raises(ValidationError, match="ref_refresh_every needs a reference"):
        GRPO.Options(init_kl_coef=0.0, ref_refresh_every=5)
    assert "value_model" not in GRPO.Options.model_fields and "lam" not in GRPO.Options.model_fields  # no critic, no GAE


def test_an_on_policy_step_builds_its_loss_on_the_rollout_forward(tmp_path, sft_dir, monkeypatch):
    """μ = 1 on the whole batch: one forward of π_θ per step (trl's shortcut), and the same training as two."""
    from harness._online import GroupOptions
    from harness._online.run import ActorCritic

    forwards = []
    real = ActorCritic.forward
    monkeypatch.setattr(ActorCritic, "forward", lambda self, *a, **kw: forwards.append(1) or real(self, *a, **kw))
    _, fused = train("grpo", tmp_path / "a", sft_dir, steps=3)
    assert len(forwards) == 3
    forwards.clear()
    monkeypatch.setattr(GroupOptions, "on_policy", lambda self: False)
    _, separate = train("grpo", tmp_path / "b", sft_dir, steps=3)
    assert len(forwards) == 6  # a no-grad rollout forward, then the update's
    for (_, want), (_, got) in zip(separate, fused):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_an_interrupted_grpo_run_resumes_exactly(tmp_path, sft_dir):
    assert_resumes_exactly("grpo", tmp_path, sft_dir, iterations=2, minibatch_size=8, adaptive_kl=True,
                           normalize_rewards=True, ref_refresh_every=3)  # minibatch order and β restored too


# ----------------------------------------------------------------- two processes
ALGOS = ["grpo", "rloo"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, sft_dir) -> Path:
    """``torchrun --nproc_per_node 2 tests/group_run.py``, once for the module: it trains every algorithm of ALGOS
    in turn (each seeds itself), since the launch's three Python starts cost more than the training."""
    out = tmp_path_factory.mktemp("two")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*launch, str(ROOT / "tests" / "group_run.py"), str(out), str(sft_dir), ",".join(ALGOS)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.mark.parametrize("algo", ALGOS)
def test_two_processes_train_like_one(tmp_path, sft_dir, two_processes, algo):
    """``torchrun --nproc_per_node 2`` (DDP over gloo): each process samples and scores 2 of the 4 prompts'
    groups, and the losses, gradient norms and rollouts of every step match the one-process run (here, in this
    process, with one thread as each launched process has). GRPO runs μ = 2 passes (a no-grad rollout forward,
    then two updates); RLOO one on-policy step (the rollout's forward, with its graph, is the update's)."""
    from tests.group_run import train_one

    train_one(tmp_path / "one", sft_dir, algo)
    one, two = (json.loads((d / "logged.json").read_text()) for d in (tmp_path / "one", two_processes / algo))
    assert json.loads((two_processes / algo / "rows.json").read_text()) == {"0": [8, 8, 8], "1": [8, 8, 8]}
    assert json.loads((tmp_path / "one" / "rows.json").read_text()) == {"0": [16, 16, 16]}
    keys = ["reward/proxy", "policy/entropy", f"{algo}/kl", f"{algo}/loss", f"{algo}/grad_norm"]
    keys += ["grpo/kl_loss", "grpo/approx_kl", "grpo/reward_std"] if algo == "grpo" else []
    for (step, want), (_, got) in zip(one, two):
        for key in keys:
            assert got[key] == pytest.approx(want[key], rel=1e-3, abs=1e-5), (step, key)
