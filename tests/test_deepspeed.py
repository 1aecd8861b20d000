"""[compute] on DeepSpeed and multi-process launches, on CPU with gloo.

The two-process runs launch ``torchrun --nproc_per_node 2 -m harness run`` on the tiny config,
reusing the SFT and reward-model stages of a one-process run (same hashes: [compute] is not part of
them), so the PPO stages start from the same weights and can be compared number for number:
- step 1's rollout is identical (each response is sampled from its own (seed, step, index) seed,
  metrics are means over the whole batch): reward, gold reward, KL, entropy, length;
- with one minibatch per step the update is the same too (token means over the global minibatch,
  gradients averaged over processes): step 1's policy/value loss and gradient norm agree to float
  rounding; later steps agree as closely as two fp32 AdamW implementations do.
Compiled DeepSpeed ops are cached in ``TORCH_EXTENSIONS_DIR`` (default ~/.cache/harness/torch_extensions/<this
Python environment>), so the ~1 minute shm-op build happens once per virtual environment: the build names the
environment's paths, so two checkouts sharing one folder rebuilt it in turn, each evicting the other's.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness._core.compute import ComputeOptions, deepspeed_config
from harness._core.config import load_experiment, resolve
from harness._core.errors import ConfigError, HarnessError
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"
# one minibatch per step (so the update can match across process counts), short evaluation
SETTINGS = ["evaluation.evaluators=['rewards']", "optimizer.ppo.minibatch_size=8"]
ROLLOUT = ("reward/proxy", "reward/gold", "ppo/kl", "policy/entropy", "policy/response_len", "policy/distinct_2")
UPDATE = ("ppo/policy_loss", "ppo/value_loss", "ppo/grad_norm", "ppo/approx_kl", "ppo/clipfrac")


def extensions_dir() -> str:
    """Where this Python environment's compiled DeepSpeed ops live (one folder per environment)."""
    return str(Path("~/.cache/harness/torch_extensions").expanduser() / hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])


@pytest.fixture(scope="module")
def env(tiny_cache):
    extensions = os.environ.get("TORCH_EXTENSIONS_DIR") or extensions_dir()
    return {**os.environ, "HARNESS_CACHE_DIR": tiny_cache,
            "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1", "TORCH_EXTENSIONS_DIR": extensions, "OMP_NUM_THREADS": "1"}


def harness_run(env, output: Path, *settings: str, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 \
        else [sys.executable]
    overrides = [arg for s in (*SETTINGS, *settings) for arg in ("--set", s)]
    out = subprocess.run([*launcher, "-m", "harness", "run", str(TINY), "--output", str(output), "--no-progress",
                          *overrides], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "policy" / "metrics.jsonl").read_text().splitlines()]


def copy_upstream(source: Path, run_dir: Path) -> None:
    """The finished SFT, feedback and reward-model stages of ``source`` into ``run_dir`` (the run reuses them)."""
    for stage in ("sft", "feedback", "reward_model"):
        shutil.copytree(source / stage, run_dir / stage, symlinks=True)


@pytest.fixture(scope="module")
def one_process(tiny_cache, clean_tiny_run, tmp_path_factory):
    """The tiny pipeline's policy and evaluation in one plain-PyTorch process (this one: a plain run needs no
    launcher, and another Python start would cost more than its training): the reference numbers. Its SFT,
    feedback and RM are the session's clean tiny run's (same config and seed, so the same stage hashes)."""
    output = tmp_path_factory.mktemp("one")
    copy_upstream(clean_tiny_run[0] / "tiny", output / "tiny")
    host = get_plugin_manager(autoload=False)
    experiment = load_experiment(TINY, host.registry, [*SETTINGS, "compute.backend='cpu'"])
    with harness_cache(tiny_cache):
        run_experiment(experiment, host, output, show_progress=False, echo=lambda s: None)
    return output / "tiny"


def two_process_run(env, one_process, tmp_path, *settings):
    run_dir = tmp_path / "tiny"
    copy_upstream(one_process, run_dir)  # the same trained models: only the policy stage differs
    out = harness_run(env, tmp_path, "compute.backend='deepspeed'", *settings, processes=2)
    return run_dir, out


def assert_written_once(run_dir: Path, out: subprocess.CompletedProcess) -> None:
    assert out.stdout.count("· policy: running") == 1 and out.stdout.count("harness results: tiny") == 1
    assert out.stdout.count("· sft: reusing") == 1
    assert [m["step"] for m in metrics(run_dir)] == [1, 2, 3]  # one line per step, not one per process
    for stage in ("sft", "feedback", "reward_model", "policy", "evaluation"):
        assert json.loads((run_dir / stage / "manifest.json").read_text())["status"] == "finished"
    assert json.loads((run_dir / "results.json").read_text())["policy"]["train"]["steps"] == 3
    assert [p.name for p in (run_dir / "policy" / "checkpoints").iterdir()] == ["step-000002"]
    assert (run_dir / "policy" / "model" / "model.safetensors").is_file()
    assert not list(run_dir.rglob(".*.tmp"))  # no temp directory of a collective checkpoint left behind


def assert_same_training(one: Path, two: Path) -> None:
    want, got = metrics(one), metrics(two)
    for key in ROLLOUT:  # step 1: the same 8 responses, sampled in 1 process or split over 2
        assert got[0][key] == pytest.approx(want[0][key], rel=1e-5, abs=1e-6), key
    for key in UPDATE:  # step 1's update: the same minibatch, token means over all of it
        assert got[0][key] == pytest.approx(want[0][key], rel=1e-3, abs=1e-6), key
    for step in (1, 2):  # after an update: same weights up to AdamW rounding, so the same samples
        for key in ("reward/proxy", "policy/response_len", "ppo/kl"):
            assert got[step][key] == pytest.approx(want[step][key], rel=1e-3, abs=1e-4), (step, key)


def test_two_processes_zero2_write_once_and_train_like_one(env, one_process, tmp_path):
    run_dir, out = two_process_run(env, one_process, tmp_path, "compute.zero_stage=2")
    assert_written_once(run_dir, out)
    assert_same_training(one_process, run_dir)


def test_two_processes_zero3_gather_for_generation_and_saving(env, one_process, tmp_path):
    run_dir, out = two_process_run(env, one_process, tmp_path, "compute.zero_stage=3")
    assert_written_once(run_dir, out)
    assert_same_training(one_process, run_dir)
    from safetensors.torch import load_file

    saved = load_file(run_dir / "policy" / "model" / "model.safetensors")
    reference = load_file(one_process / "policy" / "model" / "model.safetensors")
    assert saved.keys() == reference.keys()  # full tensors gathered from both partitions, not empty shards
    assert all(saved[k].shape == reference[k].shape for k in saved)


# ----------------------------------------------------------------- [compute] validation
def compute_error(**table) -> str:
    raw = {"experiment": {"name": "x"}, "compute": table}
    with pytest.raises(ConfigError) as err:
        resolve(raw, get_plugin_manager(autoload=False).registry, "exp.toml")
    return str(err.value)


def test_bad_zero_stage_names_the_field():
    assert "[compute] zero_stage = 4" in compute_error(backend="deepspeed", zero_stage=4)


def test_offload_params_needs_stage_3():
    message = compute_error(backend="deepspeed", zero_stage=2, offload_params="cpu")
    assert "offload_params = 'cpu' needs zero_stage = 3" in message


def test_offload_optimizer_needs_zero():
    assert "offload_optimizer = 'cpu' needs zero_stage >= 1" in compute_error(backend="deepspeed", zero_stage=0,
                                                                               offload_optimizer="cpu")


def test_deepspeed_knobs_need_the_deepspeed_backend():
    assert "zero_stage needs backend = 'deepspeed'" in compute_error(backend="cpu", zero_stage=3)


def test_deepspeed_config_excludes_the_knobs(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    message = compute_error(backend="deepspeed", deepspeed_config=str(path), zero_stage=3, mixed_precision="bf16")
    assert "deepspeed_config and zero_stage, mixed_precision are mutually exclusive" in message
    path.write_text(json.dumps({"optimizer": {"type": "AdamW"}}))
    assert "remove its optimizer block" in compute_error(backend="deepspeed", deepspeed_config=str(path))
    assert "no such file" in compute_error(backend="deepspeed", deepspeed_config=str(tmp_path / "missing.json"))


def test_deepspeed_config_from_the_knobs_and_from_a_file(tmp_path):
    config = deepspeed_config(ComputeOptions(backend="deepspeed", zero_stage=3, offload_params="cpu",
                                             offload_optimizer="cpu", mixed_precision="bf16"), gradient_clipping=0.5)
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    assert config["bf16"]["enabled"] and not config["fp16"]["enabled"] and config["gradient_clipping"] == 0.5
    assert config["train_micro_batch_size_per_gpu"] == 1 and zero["stage3_gather_16bit_weights_on_model_save"]
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "gradient_clipping": "auto",
                                "train_micro_batch_size_per_gpu": "auto"}))
    from_file = deepspeed_config(ComputeOptions(backend="deepspeed", deepspeed_config=str(path)), gradient_clipping=2.0)
    assert from_file["zero_optimization"]["stage"] == 1 and from_file["gradient_clipping"] == 2.0
    assert from_file["train_micro_batch_size_per_gpu"] == 1


def test_fp16_without_a_gpu_is_refused():
    import torch

    from harness._core.compute import check_mixed_precision

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HarnessError, match="fp16' needs a CUDA GPU"):
        check_mixed_precision(ComputeOptions(mixed_precision="fp16"), on_gpu=False)
    with pytest.warns(UserWarning, match="bf16' on CPU"):
        check_mixed_precision(ComputeOptions(mixed_precision="bf16"), on_gpu=False)


def test_every_process_splits_the_batch(tmp_path, monkeypatch):
    """A batch that does not split evenly over the launched processes is refused before any model loads."""
    from harness._core.contracts import StageContext
    from harness._online.run import _check_processes
    from harness_builtins.optimizers.ppo import PPOOptions
    from tests.fakes import make_experiment

    monkeypatch.setenv("WORLD_SIZE", "3")
    ctx = StageContext(experiment=make_experiment(compute=ComputeOptions()), stage="policy",
                       stage_dir=tmp_path, world=None, log=lambda m, s: None)
    with pytest.raises(HarnessError, match="batch_size = 8 must be a multiple of the 3 launched processes"):
        _check_processes(ctx, PPOOptions(batch_size=8, minibatch_size=4), "ppo")
    assert _check_processes(ctx, PPOOptions(batch_size=6, minibatch_size=3), "ppo") == 3


def test_dpo_runs_its_trl_trainer_on_deepspeed(env, one_process, tmp_path):
    """DPO honours [compute] through trl's ``deepspeed=`` argument (one process, ZeRO-2, CPU)."""
    run_dir = tmp_path / "tiny"
    copy_upstream(one_process, run_dir)
    harness_run(env, tmp_path, "compute.backend='deepspeed'", "compute.zero_stage=2", "optimizer.name='dpo'",
                "optimizer.dpo.batch_size=8")
    train = json.loads((run_dir / "results.json").read_text())["policy"]["train"]
    assert train["optimizer"] == "dpo" and train["deepspeed"] is True and train["steps"] > 0
    assert (run_dir / "policy" / "model" / "model.safetensors").is_file()
