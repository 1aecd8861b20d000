"""The GPU code paths, on a CUDA GPU: bf16 PPO, a DeepSpeed ZeRO-2 engine, LoRA's adapter-off reference, offloading.

Marked ``gpu`` (``pytest -m gpu``; ``bench/gpu/check.sh`` runs them on the GPU machine) and skipped
where no CUDA device is visible, so CI (CPU) collects them and moves on. With
``HARNESS_GPU_TESTS_ON_CPU=1`` the first three run on the CPU instead, to rehearse their code between
GPU sessions (the dry run of ``check.sh`` does this); offloading needs two devices and stays skipped.
Models are the tiny random Llamas of ``tests/test_ppo.py``: these test where tensors live, which
precision they run in and that the numbers are right, not speed.
"""
from __future__ import annotations

import gc
import os

import pytest
import torch
from torch import nn

from harness._core.compute import ComputeOptions
from harness._core.contracts import StageContext
from harness._core.generation import sequence_logprobs
from harness._online import setup
from harness._online.memory import AdapterOffReference, parameter_bytes, plain_state_dict
from harness._online.rollout import collect_rollout
from tests.fakes import make_experiment
from harness_builtins.optimizers.ppo import PPO, PPOOptions
from tests.test_ppo import FAST, WORDS, FakeWorld, GoodWordReward, save_tiny_sft, sft_dir  # noqa: F401 - fixture

CUDA = torch.cuda.is_available()
REHEARSE = os.environ.get("HARNESS_GPU_TESTS_ON_CPU") == "1"
pytestmark = pytest.mark.gpu
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def device() -> str:
    """``cuda`` when there is one; ``cpu`` when rehearsing; else the test is skipped."""
    if CUDA:
        return "cuda"
    if REHEARSE:
        return "cpu"
    pytest.skip("needs a CUDA GPU (HARNESS_GPU_TESTS_ON_CPU=1 rehearses it on the CPU)")


@pytest.fixture(autouse=True)
def release_gpu_memory():
    yield
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def make_ctx(tmp_path, sft, logged: list, **compute) -> StageContext:
    return StageContext(experiment=make_experiment(compute=ComputeOptions(**compute)), stage="policy",
                        stage_dir=tmp_path / "policy", world=FakeWorld(),
                        log=lambda metrics, step: logged.append((step, dict(metrics))),
                        artifacts={"sft": sft}, checkpoint_dir=None)


def make_run(tmp_path, sft, compute: dict, reward=None, **options):
    return setup(make_ctx(tmp_path, sft, [], **compute), PPOOptions(**{**FAST, **options}),
                 reward or GoodWordReward(), "ppo")


def trained_weights(run) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().clone() for n, p in run.model.named_parameters() if p.requires_grad}


def assert_trained(before: dict, run) -> None:
    after = trained_weights(run)
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- bf16 PPO
def test_a_bf16_ppo_step_runs_on_the_device_and_updates_the_policy(tmp_path, sft_dir, device):
    run = make_run(tmp_path, sft_dir, {"backend": "auto", "mixed_precision": "bf16"}, value_model="shared")
    assert run.accelerator.mixed_precision == "bf16" and run.accelerator.device.type == device
    assert {p.device.type for p in run.policy.parameters()} == {device}
    batch = collect_rollout(run, 1)
    assert batch.logprobs.device.type == device and torch.isfinite(batch.logprobs).all()
    before = trained_weights(run)
    metrics = PPO(run.options).step(run, 2)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    assert metrics["ppo/updates"] == 4 and metrics["ppo/grad_norm"] > 0  # 4 epochs × 1 minibatch
    assert_trained(before, run)


# --------------------------------------------------------------------------- DeepSpeed ZeRO-2 on one device
def test_a_deepspeed_zero2_engine_from_compute_trains_the_actor_critic(tmp_path, sft_dir, device):
    import deepspeed

    precision = "bf16" if device == "cuda" else "no"  # DeepSpeed's bf16 is a GPU path
    run = make_run(tmp_path, sft_dir, {"backend": "deepspeed", "zero_stage": 2, "mixed_precision": precision},
                   value_model="shared")
    assert isinstance(run.model, deepspeed.DeepSpeedEngine)
    assert run.model.zero_optimization_stage() == 2 and run.model.bfloat16_enabled() == (precision == "bf16")
    assert run.model.gradient_clipping() == FAST.get("max_grad_norm", 1.0)
    weights = {p.device.type for p in run.model.parameters()}
    assert weights == {device}
    if precision == "bf16":
        assert {p.dtype for p in run.model.parameters()} == {torch.bfloat16}  # fp32 masters live in the optimizer
    before = trained_weights(run)
    metrics = [PPO(run.options).step(run, step) for step in (1, 2)]
    assert all(m["ppo/grad_norm"] > 0 and abs(m["ppo/policy_loss"]) < 1e3 for m in metrics), metrics
    assert_trained(before, run)


# --------------------------------------------------------------------------- LoRA, adapter-off reference
def test_lora_on_the_device_keeps_one_base_copy_and_its_reference_is_pi_sft(tmp_path, sft_dir, device):
    lora = dict(lora=True, lora_r=4, lora_alpha=8.0, value_model="shared", lr=1e-2,
                lora_target_modules=LLAMA_LINEAR + ["lm_head"])
    run = make_run(tmp_path / "lora", sft_dir, {"backend": "auto"}, **lora)
    assert isinstance(run.reference, AdapterOffReference) and run.reference.device.type == device
    base = {k: v.detach().cpu().clone() for k, v in plain_state_dict(run.policy.get_base_model()).items()}
    step0 = collect_rollout(run, 1)
    assert (step0.logprobs - step0.ref_logprobs).abs().max() < 1e-6  # B = 0: π_θ is π_SFT at step 0
    for step in (1, 2, 3):
        PPO(run.options).step(run, step)
    after = plain_state_dict(run.policy.get_base_model())
    assert all(torch.equal(base[k], after[k].cpu()) for k in base)  # only the adapters moved
    batch = collect_rollout(run, 4)
    fresh = make_run(tmp_path / "full", sft_dir, {"backend": "auto"}, value_model="shared")
    want = sequence_logprobs(fresh.reference, batch.query_ids, batch.response_ids, batch.mask, batch.query_mask)
    assert torch.allclose(batch.ref_logprobs, want, atol=1e-5)  # the adapter-off base is still π_SFT
    assert not torch.allclose(batch.logprobs, batch.ref_logprobs, atol=1e-3)  # and π_θ has moved away from it


# --------------------------------------------------------------------------- offload_frozen
class ModuleReward:
    """A reward source holding a torch module: the score of a word is a learned scalar. Records where it ran."""

    def __init__(self, device: str = "cpu"):
        torch.manual_seed(0)
        self.head = nn.Embedding(len(WORDS), 1).to(device)
        self.devices: list[str] = []

    def score(self, prompts, responses):
        self.devices.append(self.head.weight.device.type)
        ids = [[WORDS.index(w) for w in r.split() if w in WORDS] or [0] for r in responses]
        with torch.no_grad():
            return torch.stack([self.head(torch.tensor(i, device=self.head.weight.device)).mean() for i in ids]).cpu()


def allocated_mb() -> float:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def test_offload_frozen_parks_the_reference_and_reward_model_off_the_gpu_between_their_forwards(tmp_path):
    if not CUDA:
        pytest.skip("needs a CUDA GPU: on a CPU offloading is a no-op")
    sft = save_tiny_sft(tmp_path / "sft", hidden=256)  # ~1.3 M parameters a copy: megabytes to see move
    start = allocated_mb()
    resident = make_run(tmp_path / "resident", sft, {"backend": "auto"}, reward=ModuleReward("cuda"))
    resident_mb = allocated_mb() - start
    want = collect_rollout(resident, 1)
    del resident
    gc.collect()
    torch.cuda.empty_cache()
    start = allocated_mb()
    reward = ModuleReward("cuda")
    run = make_run(tmp_path / "offloaded", sft, {"backend": "auto"}, reward=reward, offload_frozen=True)
    offloaded_mb = allocated_mb() - start
    frozen = [run.reference, reward.head]
    assert {p.device.type for m in frozen for p in m.parameters()} == {"cpu"}  # parked at setup
    assert {p.device.type for p in run.policy.parameters()} == {"cuda"}
    parked_mb = parameter_bytes(*frozen) / 2**20
    assert offloaded_mb < resident_mb - 0.9 * parked_mb, (offloaded_mb, resident_mb, parked_mb)
    seen = []
    hook = run.reference.register_forward_hook(lambda m, i, o: seen.append(next(m.parameters()).device.type))
    got = collect_rollout(run, 1)
    hook.remove()
    assert seen == ["cuda"] and reward.devices == ["cuda"]  # each visited the GPU for its forward pass
    assert {p.device.type for m in frozen for p in m.parameters()} == {"cpu"}  # and went back
    assert torch.equal(got.response_ids, want.response_ids)  # the same rollout, wherever the frozen models live
    assert torch.allclose(got.ref_logprobs, want.ref_logprobs, atol=1e-5)
    assert torch.allclose(got.scores, want.scores, atol=1e-6)
    PPO(run.options).step(run, 2)
    assert {p.device.type for m in frozen for p in m.parameters()} == {"cpu"}
