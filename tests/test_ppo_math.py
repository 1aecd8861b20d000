"""The pieces of PPO/A2C checked against numbers worked out by hand (no models, milliseconds)."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from harness._online.objectives import (AdaptiveKLController, FixedKLController, RunningMoments, explained_variance,
                                        gae, kl_controller, masked_mean, masked_whiten, per_token_rewards)
from harness_builtins.optimizers.ppo import PPO, clipped_policy_loss, clipped_value_loss
from harness._core.stats import distinct_n
from harness._online import minibatches, sample_prompts, step_prompts
from harness._online.rollout import encode_prompts
from harness._core.text import encode_prompt


def test_gae_matches_a_hand_computed_example():
    # row 0: three real tokens; row 1: two real tokens, the third is padding (its reward/value are ignored)
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.5, 1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: δ2 = 1 − .7 = .3; δ1 = .9·.7 − .6 = .03, A1 = .03 + .45·.3; δ0 = .9·.6 − .5 = .04, A0 = .04 + .45·A1
    # row 1: δ1 = 2 − 1 = 1 (nothing after the last token); δ0 = .9·1 − .5 = .4, A0 = .4 + .45·1
    expected = torch.tensor([[0.11425, 0.165, 0.3], [0.85, 1.0, 0.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, (expected + values) * mask, atol=1e-6)


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards, values = torch.tensor([[0.1, -0.2, 0.3, 1.0]]), torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    advantages, returns = gae(rewards, values, torch.ones(1, 4), gamma=1.0, lam=1.0)
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(advantages, to_go - values)
    assert torch.allclose(returns, to_go)


def test_per_token_reward_puts_the_score_on_the_last_real_token_and_the_kl_penalty_everywhere():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5, -3.0], [-2.0, -7.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    rewards = per_token_rewards(torch.tensor([1.0, 2.0]), logprobs, ref_logprobs, mask, beta=0.5)
    expected = torch.tensor([[-0.25, 0.5, 0.0 + 1.0, 0.0], [-0.5 + 2.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)


def test_adaptive_kl_raises_beta_above_target_and_lowers_it_below():
    def after(kl):
        ctl = AdaptiveKLController(init=0.1, target=6.0, horizon=100)
        ctl.update(kl, n_steps=10)
        return ctl.value

    assert after(6.6) == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))  # error 0.1
    assert after(60.0) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped to +0.2
    assert after(3.0) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))  # error −0.5 clipped to −0.2
    assert after(6.0) == pytest.approx(0.1)


def test_fixed_kl_keeps_beta_and_both_controllers_round_trip_their_state():
    fixed = kl_controller(adaptive=False, init=0.2, target=6.0, horizon=100)
    fixed.update(100.0, n_steps=64)
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.2
    adaptive = kl_controller(adaptive=True, init=0.2, target=6.0, horizon=100)
    adaptive.update(100.0, n_steps=64)
    restored = AdaptiveKLController(0.2, 6.0, 100)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value != 0.2


def test_clipped_policy_loss_matches_a_hand_computed_case():
    old = torch.zeros(1, 4)
    logprobs = torch.log(torch.tensor([[1.5, 1.5, 0.5, 1.1]]))
    advantages = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    loss, clipfrac, approx_kl = clipped_policy_loss(logprobs, old, advantages, torch.ones(1, 4), clip=0.2)
    # per token max(−A·ρ, −A·clip(ρ)): ρ=1.5,A=1 → −1.2 (clipped); ρ=1.5,A=−1 → 1.5; ρ=.5,A=1 → −.5; ρ=1.1 → −1.1
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 - 1.1) / 4)
    assert clipfrac == pytest.approx(3 / 4)
    ratios = torch.tensor([1.5, 1.5, 0.5, 1.1])
    assert approx_kl == pytest.approx(((ratios - 1) - ratios.log()).mean().item(), rel=1e-5)


def test_clipped_value_loss_matches_a_hand_computed_case():
    values, old, returns = torch.tensor([[1.0, 0.1]]), torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: max((1−2)², (0.2−2)²) = 3.24; token 1: within the clip, (0.1)² = 0.01; ½·mean
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.01) / 2)
    assert clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.0).item() == pytest.approx(0.5 * 1.01 / 2)


def test_losses_ignore_padding():
    mask = torch.tensor([[1, 0]])
    values, returns = torch.tensor([[1.0, 100.0]]), torch.tensor([[0.0, -100.0]])
    assert clipped_value_loss(values, values.detach(), returns, mask, clip=0.2).item() == pytest.approx(0.5)
    assert masked_mean(torch.tensor([[2.0, 1e6]]), mask).item() == 2.0


def test_masked_whiten_gives_zero_mean_unit_variance_on_real_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 50.0], [4.0, 5.0, 60.0, 70.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    white = masked_whiten(x, mask)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (white[~mask.bool()] == 0).all()
    kept = masked_whiten(x, mask, shift_mean=False)[mask.bool()]
    assert kept.mean().item() == pytest.approx(x[mask.bool()].mean().item(), rel=1e-5)


def test_running_moments_match_the_moments_of_everything_seen():
    gen = torch.Generator().manual_seed(0)
    moments = RunningMoments()
    batches = [torch.randn(7, generator=gen) * 3 + 1, torch.randn(5, generator=gen), torch.randn(11, generator=gen) - 2]
    for batch in batches:
        moments.update(batch)
    everything = torch.cat(batches).double()  # the reference in float64: the batches' float32 means round at ~1e-7
    # abs as well as rel: a mean near 0 has no relative precision to speak of (this test once failed at mean −0.008)
    assert moments.mean == pytest.approx(everything.mean().item(), rel=1e-5, abs=1e-6)
    assert moments.var == pytest.approx(everything.var(unbiased=False).item(), rel=1e-5, abs=1e-6)
    assert moments.normalize(everything).std(unbiased=False).item() == pytest.approx(1.0, rel=1e-4)


def test_explained_variance():
    returns, mask = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 3), 2.0), returns, mask) == pytest.approx(0.0)
    assert math.isfinite(explained_variance(returns, torch.ones(1, 3), mask))  # constant returns: 0, not NaN


def test_minibatches_visit_every_sample_once_per_epoch():
    torch.manual_seed(0)
    chunks = list(minibatches(10, 4, epochs=2))
    assert [len(c) for c in chunks] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(chunks[:3]).tolist()) == list(range(10))


def test_prompts_of_a_step_depend_only_on_seed_and_step():
    pool = list(range(100))
    assert sample_prompts(pool, 8, seed=1, step=3) == sample_prompts(pool, 8, seed=1, step=3)
    assert sample_prompts(pool, 8, seed=1, step=3) != sample_prompts(pool, 8, seed=1, step=4)
    assert len(sample_prompts(pool[:3], 8, seed=1, step=1)) == 8  # a small pool is sampled with replacement


def test_k_samples_per_prompt_are_consecutive_groups_and_k_1_is_the_plain_batch():
    pool = list(range(100))
    assert step_prompts(pool, 8, seed=1, step=3) == sample_prompts(pool, 8, seed=1, step=3)
    grouped = step_prompts(pool, 8, seed=1, step=3, samples_per_prompt=4)
    assert grouped == [x for x in sample_prompts(pool, 2, seed=1, step=3) for _ in range(4)]
    with pytest.raises(ValueError, match="multiple of samples_per_prompt"):
        step_prompts(pool, 6, seed=1, step=3, samples_per_prompt=4)


def test_a_step_tokenizes_each_distinct_prompt_once_into_the_ids_each_row_would_get():
    from tests.test_ppo import tiny_tokenizer

    tok = tiny_tokenizer()
    calls: list[str] = []

    class Counting:  # the tokenizer, counting what it is asked to tokenize
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, text, **kwargs):
            calls.append(text)
            return tok(text, **kwargs)

    texts = [t for t in ("User: the cat Assistant:", "User: a dog Assistant:", "User: the cat Assistant:")
             for _ in range(3)]
    assert encode_prompts(Counting(), texts) == [encode_prompt(tok, t) for t in texts]
    assert sorted(calls) == sorted(set(texts))  # two distinct prompts, two tokenizer calls


def test_distinct_2():
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a", ""], 2) == 0.0


def test_options_have_paper_defaults_and_reject_unknown_keys():
    options = PPO.Options()
    assert (options.gamma, options.lam, options.clip, options.clip_value) == (1.0, 0.95, 0.2, 0.2)
    assert options.value_model == "separate" and options.ptx_coef == 0.0 and options.adaptive_kl
    with pytest.raises(ValidationError):
        PPO.Options(clipp=0.1)
    with pytest.raises(ValidationError):
        PPO.Options(value_model="tied")
