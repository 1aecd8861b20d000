"""PPO samples/s for 1 vs 2 processes on CPU (gloo), and generation's share of a step.

    python bench/ppo_processes.py                  # tiny test pipeline, micro model, 6 PPO steps of 16 prompts

Trains SFT and the reward model once (one process, ``tests/data/tiny.toml``), then runs only the
policy stage (the others are reused: [compute] is not part of their hash) as
  (1) one process, plain PyTorch;
  (2) two processes, ``torchrun --nproc_per_node 2``, plain PyTorch (DDP over gloo);
  (3) two processes, ``torchrun --nproc_per_node 2``, DeepSpeed ZeRO-2 (gloo).
The global batch is the same in all three (each of two processes samples half of it). Figures come
from the policy stage's summary (``s_per_step``, ``generation_share``, both timed on rank 0) and
are printed, not asserted. On a 2-core machine two processes share the cores a single process
would use with 2 threads, so expect little speed-up here; the point is on several GPUs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"


def run(output: Path, settings: list[str], processes: int, env: dict) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 \
        else [sys.executable]
    args = [a for s in settings for a in ("--set", s)]
    out = subprocess.run([*launcher, "-m", "harness", "run", str(TINY), "-o", str(output), "--no-progress", *args],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        errors = [line for line in out.stderr.splitlines() if "Error" in line or "error" in line]
        sys.exit(out.stdout[-2000:] + "\n".join(errors[:20]) + out.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the one-process run")
    args = parser.parse_args()
    # one folder per Python environment: the op's build names the environment's paths (tests/test_deepspeed.py)
    extensions = os.environ.get("TORCH_EXTENSIONS_DIR") or str(
        Path("~/.cache/harness/torch_extensions").expanduser() / hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])
    env = {**os.environ, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1", "TORCH_EXTENSIONS_DIR": extensions}
    common = ["evaluation.evaluators=['rewards']", f"optimizer.ppo.steps={args.steps}",
              f"optimizer.ppo.batch_size={args.batch_size}", f"optimizer.ppo.minibatch_size={args.batch_size // 2}",
              "optimizer.ppo.checkpoint_every=0"]
    configs = [("1 process, plain PyTorch", 1, ["compute.backend='cpu'", f"compute.threads={args.threads}"]),
               ("2 processes, plain PyTorch (DDP)", 2, ["compute.backend='cpu'", "compute.threads=1"]),
               ("2 processes, DeepSpeed ZeRO-2", 2, ["compute.backend='deepspeed'", "compute.zero_stage=2",
                                                     "compute.threads=1"])]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        run(base, common + configs[0][2], 1, env)
        print(f"PPO on {TINY.name} (micro model), {args.steps} steps × {args.batch_size} prompts, CPU, "
              f"{os.cpu_count()} cores\n")
        print(f"{'configuration':<34} {'s/step':>7} {'samples/s':>10} {'generation share':>17}")
        for label, processes, settings in configs:
            output = Path(tmp) / label.split(",")[0].replace(" ", "") / label[-4:].strip("()")
            (output / "tiny").mkdir(parents=True)
            for stage in ("sft", "reward_model"):
                shutil.copytree(base / "tiny" / stage, output / "tiny" / stage, symlinks=True)
            run(output, common + settings, processes, env)
            summary = json.loads((output / "tiny" / "policy" / "manifest.json").read_text())["summary"]
            print(f"{label:<34} {summary['s_per_step']:>7.2f} {args.batch_size / summary['s_per_step']:>10.1f} "
                  f"{summary['generation_share']:>16.0%}")


if __name__ == "__main__":
    main()
