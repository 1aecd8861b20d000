"""The RL stage's memory options: LoRA policy with an adapter-off reference, shared trunk, offloading.

Uses the tiny world and Llama of ``tests/test_ppo.py``; each test runs in a second or two.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness._core.errors import HarnessError
from harness._online import save_policy, setup
from harness._online.memory import AdapterOffReference, frozen_on_device, parameter_bytes, plain_state_dict, reward_modules
from harness._online.rollout import collect_rollout
from harness_builtins.optimizers.ppo import PPO, PPOOptions
from tests.test_ppo import FAST, GoodWordReward, make_ctx, mean_reward, sft_dir, train  # noqa: F401 - fixture
from tests.test_stages import base_dir, sft_run  # noqa: F401 - fixtures
from tests.tiny_models import save_tiny_llama

# On this random-init 2-layer model the fastest route to "good" is the LM head, so it gets adapters too
# (the default, 'all-linear', leaves the LM head out); measured: +0.7 proxy reward in 15 steps vs +0.07 without.
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = dict(lora=True, lora_r=4, lora_alpha=8.0, value_model="shared", lora_target_modules=LLAMA_LINEAR + ["lm_head"])


def make_run(tmp_path, sft, **options):
    return setup(make_ctx(tmp_path, sft, []), PPOOptions(**{**FAST, **options}), GoodWordReward(), "ppo")


def base_weights(run) -> dict[str, torch.Tensor]:
    """The frozen π_SFT weights inside a LoRA policy, under their plain names, copied."""
    return {k: v.detach().clone() for k, v in plain_state_dict(run.policy.get_base_model()).items()}


def test_at_step_zero_the_adapter_off_reference_gives_the_same_zero_kl_as_a_full_copy(tmp_path, sft_dir):
    lora_run = make_run(tmp_path / "lora", sft_dir, **LORA)
    full_run = make_run(tmp_path / "full", sft_dir, value_model="shared")
    assert isinstance(lora_run.reference, AdapterOffReference) and isinstance(full_run.reference, nn.Module)
    torch.manual_seed(1)  # LoRA's init drew from the RNG: start both samplers from the same state
    lora = collect_rollout(lora_run, 1)
    torch.manual_seed(1)
    full = collect_rollout(full_run, 1)
    # LoRA's B starts at zero: the policy is π_SFT exactly, so every per-token log-ratio is exactly 0
    assert torch.equal(lora.logprobs, lora.ref_logprobs) and torch.equal(lora.kl, torch.zeros(len(lora)))
    assert torch.equal(full.kl, torch.zeros(len(full)))
    # and the two runs sampled the same responses with the same log-probs under both references
    assert torch.equal(lora.response_ids, full.response_ids)
    assert torch.equal(lora.ref_logprobs, full.ref_logprobs)


def test_lora_updates_move_only_the_adapters_and_the_kl_grows(tmp_path, sft_dir):
    run = make_run(tmp_path, sft_dir, lr=1e-2, **LORA)
    before = base_weights(run)
    metrics = [PPO(run.options).step(run, step) for step in (1, 2, 3)]
    assert metrics[0]["ppo/kl"] == 0 and metrics[-1]["ppo/kl"] != 0  # a one-sample estimate: either sign
    after = base_weights(run)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    lora_b = [p for n, p in run.policy.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.requires_grad for p in lora_b) and any(p.abs().sum() > 0 for p in lora_b)
    assert run.critic.head.linear.weight.abs().sum() > 0  # the shared value head on the peft model trains too
    # the reference is still π_SFT: its log-probs equal those of a freshly loaded SFT model
    batch = collect_rollout(run, 4)
    fresh = make_run(tmp_path / "fresh", sft_dir, value_model="shared")
    from harness._core.generation import sequence_logprobs
    want = sequence_logprobs(fresh.reference, batch.query_ids, batch.response_ids, batch.mask, batch.query_mask)
    assert torch.allclose(batch.ref_logprobs, want, atol=1e-6)
    assert not torch.allclose(batch.logprobs, batch.ref_logprobs)


def test_a_lora_run_holds_one_copy_of_the_base_weights_and_optimizes_only_adapters(tmp_path, sft_dir):
    full = make_run(tmp_path / "full", sft_dir)  # separate critic, full reference copy
    lora = make_run(tmp_path / "lora", sft_dir, **LORA)
    one_copy = parameter_bytes(full.reference)
    held_full = parameter_bytes(full.policy, full.reference, full.critic)
    held_lora = parameter_bytes(lora.policy, lora.reference, lora.critic)
    assert held_full > 2.5 * one_copy  # policy + reference + critic trunk
    assert one_copy < held_lora < 1.25 * one_copy  # one base copy + adapters + value head
    trained = sum(p.numel() for g in lora.optimizer.param_groups for p in g["params"])
    assert 0 < trained < 0.25 * sum(p.numel() for p in full.reference.parameters())


def test_lora_ppo_raises_the_proxy_reward(tmp_path, sft_dir):
    _, logged = train("ppo", tmp_path, sft_dir, steps=15, lr=1e-2, **LORA)
    first, last = mean_reward(logged, {1, 2, 3}), mean_reward(logged, {13, 14, 15})
    assert last > first + 0.3, (first, last)
    assert logged[0][1]["ppo/kl"] == 0 and logged[-1][1]["ppo/kl"] > 0


def test_a2c_runs_with_a_lora_policy_too(tmp_path, sft_dir):
    _, logged = train("a2c", tmp_path, sft_dir, steps=2, lr=1e-2, **LORA)
    assert logged[0][1]["a2c/kl"] == 0 and logged[1][1]["a2c/kl"] != 0 and logged[0][1]["a2c/approx_kl"] > 0


def test_the_saved_lora_policy_is_a_plain_causal_lm_with_the_adapters_merged(tmp_path, sft_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run = make_run(tmp_path, sft_dir, lr=1e-2, **LORA)
    for step in (1, 2):
        PPO(run.options).step(run, step)
    ids = torch.tensor([[6, 7, 8, 9, 10, 11]])
    with torch.no_grad():
        want = run.policy(input_ids=ids).logits
        target = save_policy(run)
        assert torch.equal(run.policy(input_ids=ids).logits, want)  # saving changed nothing: the run can go on
    keys = load_file(target / "model.safetensors").keys()
    assert not [k for k in keys if "lora" in k or "base_layer" in k]
    loaded = AutoModelForCausalLM.from_pretrained(target).eval()
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    sft = AutoModelForCausalLM.from_pretrained(sft_dir).eval()
    with torch.no_grad():
        assert not torch.allclose(sft(input_ids=ids).logits, want, atol=1e-4)  # it is π_θ, not π_SFT


def test_a_lora_run_resumes_from_its_checkpoint_exactly(tmp_path, sft_dir):
    options = dict(steps=3, lr=1e-2, **LORA)
    _, uninterrupted = train("ppo", tmp_path / "a", sft_dir, **options)
    train("ppo", tmp_path / "b", sft_dir, **{**options, "steps": 2, "checkpoint_every": 1})  # checkpoint at step 1
    summary, resumed = train("ppo", tmp_path / "b", sft_dir, **options)
    assert summary["resumed_from"] == 1 and [s for s, _ in resumed] == [2, 3]
    for (_, want), (_, got) in zip(uninterrupted[1:], resumed):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)  # adapters, optimizer state and RNG restored


# --------------------------------------------------------------------------- offloading
class Recorder(nn.Linear):
    """A module that records where it is asked to go (CPU-only machines cannot move to a GPU)."""

    def __init__(self):
        super().__init__(2, 2)
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(str(device))
        return self


def test_frozen_models_visit_the_device_only_for_their_block():
    a, b = Recorder(), Recorder()
    with frozen_on_device([a, b], "cuda", offload=True):
        assert a.moves == b.moves == ["cuda"]
    assert a.moves == ["cuda", "cpu"]
    with pytest.raises(RuntimeError), frozen_on_device([a], "cuda", offload=True):
        raise RuntimeError("a failed forward still puts the model back")
    assert a.moves == ["cuda", "cpu", "cuda", "cpu"]
    with frozen_on_device([b], "cuda", offload=False):
        pass
    assert b.moves == ["cuda", "cpu"]


def test_offload_frozen_is_a_no_op_on_cpu(tmp_path, sft_dir):
    run = make_run(tmp_path / "a", sft_dir, offload_frozen=True)
    assert not run.offloading
    assert {p.device.type for p in run.reference.parameters()} == {"cpu"}
    _, plain = train("ppo", tmp_path / "b", sft_dir, steps=2)
    _, offloaded = train("ppo", tmp_path / "c", sft_dir, steps=2, offload_frozen=True)
    assert [m for _, m in plain] == [pytest.approx(m, rel=1e-6, abs=1e-7) for _, m in offloaded]


def test_reward_modules_are_found_in_a_source_and_its_members():
    class Member:
        def __init__(self):
            self.model, self.offset = nn.Linear(2, 1), 0.0

    class Ensemble:
        def __init__(self):
            self.members, self.tokenizer = [Member(), Member()], object()

    class Learned:
        def __init__(self):
            self.model = nn.Linear(2, 1)

    class Says:
        def offloadable_modules(self):
            return [nn.Linear(1, 1)]

    assert len(reward_modules(Ensemble())) == 2 and len(reward_modules(Learned())) == 1
    assert len(reward_modules(Says())) == 1 and reward_modules(GoodWordReward()) == []


# --------------------------------------------------------------------------- config errors
def test_lora_with_a_refreshed_reference_is_a_config_error():
    from harness._core.config import ConfigError, validate_options

    with pytest.raises(ConfigError, match="ref_refresh_every"):
        validate_options(PPOOptions, {"lora": True, "ref_refresh_every": 5}, "x.toml", "optimizer.ppo")
    assert PPOOptions(lora=True).lora_dropout == 0 and PPOOptions(ref_refresh_every=5).ref_refresh_every == 5


def test_lora_target_modules_that_do_not_exist_say_so(tmp_path, sft_dir):
    with pytest.raises(HarnessError, match="lora_target_modules"):
        make_run(tmp_path, sft_dir, lora=True, lora_target_modules=["c_attn"])


# --------------------------------------------------------------------------- a smaller reward model
def test_a_reward_model_can_start_from_a_smaller_model_with_its_own_tokenizer(sft_run, tmp_path):
    """``[reward_model.bradley_terry] base``: a half-width RM whose token ids differ from the policy's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from harness._core.models import load_causal_lm
    from harness_builtins.feedback.ranking import Ranking
    from harness_builtins.rewards.learned import LearnedReward
    from harness_builtins.stages.common import sample_responses
    from harness_builtins.stages.reward_model import BradleyTerryRM
    from tests.test_stages import RM_OPTIONS, WORDS, ToyWorld, collect_feedback
    from tests.test_stages import make_ctx as stage_ctx

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "<bos>", *reversed(WORDS)])}  # other ids than the SFT's
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    small = save_tiny_llama(tmp_path / "small", tok, hidden=16, layers=1, seed=1)

    artifacts, _ = collect_feedback(tmp_path, Ranking(Ranking.Options(k=4)), {"sft": sft_run.model_dir})
    ctx, _ = stage_ctx(tmp_path, "reward_model", artifacts, feedback=Ranking(Ranking.Options(k=4)))
    summary = BradleyTerryRM(RM_OPTIONS.model_copy(update={"base": str(small), "lr": 1e-2})).run(ctx)
    assert summary["accuracy"] > 0.75

    reward = LearnedReward(LearnedReward.Options(batch_size=16))
    reward.prepare(stage_ctx(tmp_path, "prepare", {"reward_model": ctx.stage_dir})[0])
    assert reward.model.config.hidden_size == 16 and reward.tokenizer.get_vocab() == tok.get_vocab()
    prompts = ToyWorld().prompts("rm")[: RM_OPTIONS.normalization_samples]
    policy, policy_tok = load_causal_lm(sft_run.model_dir)
    texts = sample_responses(policy, policy_tok, ToyWorld(), prompts, max_new_tokens=6, seed=0)
    assert abs(reward.score(prompts, texts).mean().item()) < 1e-4  # offset measured on text the policy wrote
    good = reward.score(prompts[:2], ["cats are good", "dogs are good"])
    assert (good > reward.score(prompts[:2], ["cats are bad", "dogs are bad"])).all()
