"""The over-optimization evaluator reports the members' disagreement only for a source that has members."""
from __future__ import annotations

import pytest
import torch

from harness._core.contracts import Components, EvalSamples, Prompt, WithMemberScores
from harness_builtins.evaluators.overoptimization import OverOptimization
from tests.fakes import make_context

PROMPTS = tuple(Prompt(id=str(i), kind="k", text=f"q{i}") for i in range(3))
SAMPLES = EvalSamples(prompts=PROMPTS, policy=("a b", "a b c", "a"), sft=("a", "a", "a b"), kl=(0.1, 0.2, 0.3))


class NoGold:
    def gold(self):
        return None


class Length:
    """One reward model: the number of words."""

    def score(self, prompts, responses):
        return torch.tensor([float(len(r.split())) for r in responses])


class TwoMembers(Length):
    """Two reward models that disagree by the response's length: members (n, 2n)."""

    def member_scores(self, prompts, responses):
        n = self.score(prompts, responses)
        return torch.stack([n, 2 * n])


def evaluate(reward):
    ctx = make_context(world=NoGold(), components=Components(reward=reward))
    return OverOptimization(OverOptimization.Options()).evaluate(ctx, SAMPLES)["overoptimization"]


def test_an_ensembles_disagreement_is_reported_on_policy_and_sft_samples():
    assert isinstance(TwoMembers(), WithMemberScores) and not isinstance(Length(), WithMemberScores)
    out = evaluate(TwoMembers())
    # per sample the two members' std is |2n − n|/√2 = n/√2 (Bessel's correction over 2 members)
    assert out["ensemble_std_policy"] == pytest.approx((2 + 3 + 1) / 3 / 2 ** 0.5, rel=1e-6)
    assert out["ensemble_std_sft"] == pytest.approx((1 + 1 + 2) / 3 / 2 ** 0.5, rel=1e-6)


def test_a_single_reward_model_has_no_disagreement_to_report():
    out = evaluate(Length())
    assert "ensemble_std_policy" not in out and "ensemble_std_sft" not in out
    assert out["kl"] == pytest.approx(0.2)
