"""PPO end to end on a tiny problem: a random tiny Llama learns to say one word.

The world, the reward and the model are built here in a few lines: a word-level tokenizer, a
2-layer Llama saved as the "SFT" model, prompts from a fixed vocabulary, and a reward equal to
the fraction of response words that are ``good``. Each test takes about a second on one CPU core.
``tests/test_a2c.py`` reuses these helpers.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from harness._core.compute import ComputeOptions
from harness._core.contracts import Prompt, StageContext
from tests.fakes import make_experiment
from tests.tiny_models import save_tiny_llama

WORDS = "good bad yes no the a cat dog runs sits and or is it".split()
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "User:", "Assistant:"]


def tiny_tokenizer():
    """A word-level tokenizer over WORDS (no training, no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def save_tiny_sft(path: Path, hidden: int = 32) -> Path:
    """A randomly initialised 2-layer Llama + tokenizer in HF format: the "SFT" model of these tests."""
    tok = tiny_tokenizer()
    return save_tiny_llama(path, tok, hidden=hidden, pad_id=tok.pad_token_id)


class Gold:
    """Ground truth of the fake world: shorter is better (unrelated to the proxy, as gold should be)."""

    def score(self, prompt: Prompt, response: str) -> float:
        return -len(response.split()) / 10

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        return 0.5

    preference = compare


class FakeWorld:
    name = "fake"

    def chat_text(self, prompt: Prompt) -> str:
        return f"User: {prompt.text} Assistant:"

    def prompts(self, split):
        rng = random.Random(split)
        return [Prompt(f"{split}-{i}", "echo", " ".join(rng.choices(WORDS[2:], k=rng.randint(1, 4))))
                for i in range(32)]

    def pretraining_texts(self, split):
        return ["the cat sits and the dog runs", "a dog is a dog", "it is good or it is bad"]

    def gold(self):
        return Gold()


class GoodWordReward:
    """Proxy reward: the fraction of response words that are ``good``."""

    def score(self, prompts, responses):
        return torch.tensor([r.split().count("good") / max(len(r.split()), 1) for r in responses])


def make_ctx(tmp_path: Path, sft: Path, logged: list) -> StageContext:
    """A real StageContext whose compute table asks for one thread (see ``one_thread``)."""
    return StageContext(experiment=make_experiment(compute=ComputeOptions(backend="cpu", threads=1)),
                        stage="policy", stage_dir=tmp_path / "policy", world=FakeWorld(),
                        log=lambda metrics, step: logged.append((step, dict(metrics))),
                        artifacts={"sft": sft}, checkpoint_dir=tmp_path / "policy" / "checkpoints")


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    return save_tiny_sft(tmp_path_factory.mktemp("sft") / "model")


FAST = dict(batch_size=16, max_new_tokens=6, lr=3e-3, init_kl_coef=0.01, adaptive_kl=False, checkpoint_every=0)
REQUIRED = {"reward/proxy", "reward/gold", "kl", "kl_coef", "approx_kl", "value_loss", "policy_loss",
            "explained_variance", "policy/entropy", "policy/response_len", "policy/distinct_2"}


def names(metrics: dict, algo: str) -> set[str]:
    return {k.removeprefix(f"{algo}/") for k in metrics}


def train(algo, tmp_path, sft, reward=None, ctx=None, **options):
    """Run ``algo`` ("ppo"/"a2c"/"grpo"/"rloo") with the fast test settings; returns (summary, logged [(step, metrics)])."""
    from harness_builtins.optimizers.a2c import A2C
    from harness_builtins.optimizers.grpo import GRPO
    from harness_builtins.optimizers.ppo import PPO
    from harness_builtins.optimizers.rloo import RLOO

    cls = {"ppo": PPO, "a2c": A2C, "grpo": GRPO, "rloo": RLOO}[algo]
    logged: list = []
    ctx = ctx or make_ctx(tmp_path, sft, logged)
    summary = cls(cls.Options(**{**FAST, **options})).train(ctx, reward or GoodWordReward())
    return summary, logged


def mean_reward(logged, steps) -> float:
    return sum(m["reward/proxy"] for s, m in logged if s in steps) / len(steps)


def test_ppo_raises_the_proxy_reward(tmp_path, sft_dir):
    summary, logged = train("ppo", tmp_path, sft_dir, steps=15)
    first, last = mean_reward(logged, {1, 2, 3}), mean_reward(logged, {13, 14, 15})
    assert last > first + 0.3, (first, last)
    assert REQUIRED | {"clipfrac"} <= names(logged[-1][1], "ppo")
    assert logged[-1][1]["ppo/kl"] > 0  # it moved away from π_SFT to get there
    assert summary["steps"] == 15 and 0 < summary["generation_share"] < 1
    assert summary["final"]["reward/proxy"] == logged[-1][1]["reward/proxy"]
    assert (tmp_path / "policy" / "model" / "config.json").is_file()


class CrashAtStepFour(GoodWordReward):
    """The proxy reward, until the process is killed during step 4 (its fourth scoring)."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        if self.calls == 4:
            raise KeyboardInterrupt
        return super().score(prompts, responses)


def assert_resumes_exactly(algo: str, tmp_path: Path, sft: Path, **options) -> None:
    """A run killed during step 4 (checkpoints every 2 steps) resumes from step 2's checkpoint and logs what
    an uninterrupted run logs at steps 3–5: same prompts, samples, minibatches, β, moments, reference."""
    options = dict(steps=5, checkpoint_every=2, **options)
    _, uninterrupted = train(algo, tmp_path / "a", sft, **options)
    with pytest.raises(KeyboardInterrupt):
        train(algo, tmp_path / "b", sft, reward=CrashAtStepFour(), **options)
    checkpoints = tmp_path / "b" / "policy" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-000002"]  # step 3 was not a checkpoint step
    summary, resumed = train(algo, tmp_path / "b", sft, **options)
    assert summary["resumed_from"] == 2 and [s for s, _ in resumed] == [3, 4, 5]
    for (_, want), (_, got) in zip(uninterrupted[2:], resumed):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_checkpoint_and_resume_continue_exactly_where_the_run_stopped(tmp_path, sft_dir):
    assert_resumes_exactly("ppo", tmp_path, sft_dir, adaptive_kl=True, normalize_rewards=True, ref_refresh_every=3)


def test_shared_value_head_ptx_and_adaptive_kl(tmp_path, sft_dir):
    _, logged = train("ppo", tmp_path, sft_dir, steps=3, value_model="shared", ptx_coef=0.5, adaptive_kl=True,
                      kl_target=1e-4, kl_horizon=10)
    (_, first), (_, second), (_, third) = logged
    assert all(m["ppo/ptx_loss"] > 0 for _, m in logged)
    assert first["ppo/kl"] == 0 and second["ppo/kl_coef"] < first["ppo/kl_coef"]  # π_θ = π_SFT: below target
    assert second["ppo/kl"] > 1.2e-4 and third["ppo/kl_coef"] > second["ppo/kl_coef"]  # above target: β rises


def test_early_stop_kl_cuts_the_epochs_short(tmp_path, sft_dir):
    _, full = train("ppo", tmp_path / "a", sft_dir, steps=1, minibatch_size=8, ppo_epochs=4)
    _, stopped = train("ppo", tmp_path / "b", sft_dir, steps=1, minibatch_size=8, ppo_epochs=4, early_stop_kl=1e-9)
    assert full[0][1]["ppo/updates"] == 8
    # the first minibatch is on-policy (approx KL 0) and steps; the second has moved, trips the limit, stops
    assert stopped[0][1]["ppo/updates"] == 1


def test_each_step_runs_through_the_optimizer_step_hook(tmp_path, sft_dir):
    calls = []

    class Hook:  # stands in for the plugin manager's hook relay
        def optimizer_step(self, experiment, stage, step, run_step):
            calls.append((stage, step))
            return run_step() | {"timer/seen": 1.0}

    logged: list = []
    ctx = make_ctx(tmp_path, sft_dir, logged)
    ctx.hook = Hook()
    train("ppo", tmp_path, sft_dir, ctx=ctx, steps=2)
    assert calls == [("policy", 1), ("policy", 2)]
    assert all(m["timer/seen"] == 1.0 for _, m in logged)


def test_the_periodic_evaluation_sees_the_policy_as_trained_so_far(tmp_path, sft_dir):
    from transformers import AutoModelForCausalLM

    seen = []  # (step, the model object, its weights then)
    logged: list = []
    ctx = make_ctx(tmp_path, sft_dir, logged)
    ctx.evaluate_every = 1
    ctx.evaluate = lambda model, step: seen.append((step, model, {k: v.clone() for k, v in model.state_dict().items()}))
    train("ppo", tmp_path, sft_dir, ctx=ctx, steps=2)
    assert [step for step, _, _ in seen] == [1, 2] and seen[0][1] is seen[1][1]
    assert any(not torch.equal(seen[0][2][k], seen[1][2][k]) for k in seen[0][2])  # step 2 moved the weights
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "policy" / "model").state_dict()
    assert saved.keys() == seen[1][2].keys()
    assert all(torch.equal(saved[k], v) for k, v in seen[1][2].items())  # the last one seen is what was saved


def test_plugins_register_their_optimizers():
    from harness_builtins.optimizers import a2c, ppo

    registered = {}
    for module in (ppo, a2c):
        module.register_optimizers(register=lambda name, factory: registered.setdefault(name, factory))
    assert registered == {"ppo": ppo.PPO, "a2c": a2c.A2C}
    assert ppo.PPO.mode == a2c.A2C.mode == "online"


def test_an_online_optimizer_without_a_reward_source_says_so(tmp_path, sft_dir):
    from harness._core.errors import HarnessError
    from harness_builtins.optimizers.ppo import PPO

    with pytest.raises(HarnessError, match="reward source"):
        PPO(PPO.Options(steps=1)).train(make_ctx(tmp_path, sft_dir, []), None)
