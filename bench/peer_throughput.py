"""Samples/s of harness GRPO and RLOO against trl 1.16's GRPOTrainer and RLOOTrainer, on the CPU.

    python bench/peer_throughput.py                   # the embedded world's SFT model, 10 steps each, 2 threads, 3 rounds
    python bench/peer_throughput.py --model DIR       # any HF causal-LM directory
    python bench/peer_throughput.py --quick           # micro model, 5 steps of 16 completions, 1 thread: it runs

In rounds (``--repeats``, 3 by default: this machine's speed drifts by tens of percent between
minutes, so one round proves little), each one process after another (a fresh subprocess each, so
nothing is shared or warmed up): trl's
``GRPOTrainer``, harness ``grpo``, trl's ``RLOOTrainer``, harness ``rloo`` — on the same HF model
directory, the same prompts (the embedded world's ``rl`` split, as chat text), the same group size
(4), completions per step (64), max new tokens (24), temperature (1), learning rate (1e-6) and
reward function (distinct words / 10, computed from the text: cheap, so the bench measures the
trainers), on the CPU in fp32 (trl: ``use_cpu=True, bf16=False``) with the same torch threads.
Each side runs its peer's defaults where they meet: GRPO with β = 0 (no reference model loaded) and
the ``dapo`` loss, RLOO with β = 0.05 (a reference model), one on-policy update per batch (μ = 1).
trl's ``gradient_checkpointing`` (on by default in trl 1.16) is off, as it is in harness.

A sample is one completion generated, scored and trained on; samples/s = completions per step /
mean wall time of a step, over the steps after the first (warm-up). The table prints each, and
harness/trl. Then harness's profile of one step (its phase timers, over the same steps): generation,
scoring (the reward function), π_θ's rollout forward (old log-probs and entropy; at μ = 1 it keeps
its graph and is the forward the update's loss is built on), the reference forward, the update
(backward + AdamW, and a fresh forward when μ > 1), and the rest (prompt tokenizing, advantages,
metrics, logging; each round's remainder, then their median). The default model is
``runs/instructgpt/sft/model`` (a finished ``harness run experiments/instructgpt.toml``), else the
world's ``embedded:tiny`` base model, which has the SFT model's architecture and size.
Figures are printed, not asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("trl-grpo", "harness-grpo", "trl-rloo", "harness-rloo")
PHASES = ("generation", "reward", "policy", "reference", "update")
SFT_MODEL = ROOT / "runs" / "instructgpt" / "sft" / "model"


def distinct_words(texts) -> list[float]:
    """The reward both trainers optimize: distinct words / 10 (cheap, so the trainers are what is timed)."""
    return [len(set(t.split())) / 10.0 for t in texts]


# --------------------------------------------------------------------------- inputs
def world_and_model(quick: bool, model: str | None):
    """(world, model directory): the embedded world (its ``rl`` prompts) and the model both sides train."""
    from harness._core.config import load_experiment
    from harness._core.plugins import get_plugin_manager
    from harness_builtins.worlds.embedded.world import world_for

    if quick:  # the test world's micro model (cached by the test suite's runs)
        experiment = load_experiment(ROOT / "tests" / "data" / "tiny.toml", get_plugin_manager(autoload=False).registry)
        world = world_for(experiment)
        return world, Path(model) if model else world.base_model("micro")
    world = world_for(None)
    if model:
        return world, Path(model)
    if SFT_MODEL.is_dir():
        return world, SFT_MODEL
    print(f"note: no {SFT_MODEL.relative_to(ROOT)} (run experiments/instructgpt.toml for it); using the world's "
          "embedded:tiny base model, the SFT model's architecture and size", flush=True)
    return world, world.base_model("tiny")


class StepClock:
    """Wall-clock time at the end of every step; steps after the first are the measured ones."""

    def __init__(self):
        self.ends: list[float] = []

    def tick(self) -> None:
        self.ends.append(time.perf_counter())

    def s_per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.ends, self.ends[1:])]
        return sum(gaps) / len(gaps)


# --------------------------------------------------------------------------- one configuration (in its own process)
def run_trl(algo: str, world, model_dir: Path, args, clock: StepClock) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.tick()

    def reward(prompts, completions, **kwargs):
        return distinct_words(completions)

    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if algo == "grpo" else (RLOOConfig, RLOOTrainer)
    with tempfile.TemporaryDirectory() as out:
        config = config_cls(output_dir=out, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                            per_device_train_batch_size=args.completions, num_generations=args.group,
                            max_completion_length=args.new_tokens, max_steps=args.steps, learning_rate=1e-6,
                            temperature=1.0, report_to="none", save_strategy="no", logging_steps=10**6,
                            disable_tqdm=True, seed=0, dataloader_num_workers=0)
        prompts = Dataset.from_list([{"prompt": world.chat_text(p)} for p in world.prompts("rl")])
        trainer = trainer_cls(model=str(model_dir), reward_funcs=reward, args=config, train_dataset=prompts,
                              callbacks=[Clock()])
        trainer.train()
    return {}


def run_harness(algo: str, world, model_dir: Path, args, clock: StepClock) -> dict:
    import torch

    from harness._core.compute import ComputeOptions
    from harness._core.contracts import StageContext
    from harness._online import loop
    from harness_builtins.optimizers.grpo import GRPO
    from harness_builtins.optimizers.rloo import RLOO

    class NoGold:  # trl measures no gold reward: neither does this run
        def __getattr__(self, name):
            return getattr(world, name)

        def gold(self):
            return None

    class Reward:
        def score(self, prompts, responses):
            return torch.tensor(distinct_words(responses))

    runs, phases = [], []  # the run's phase timers, read at the end of every step (as the clock is)
    real_setup = loop.setup
    loop.setup = lambda *a, **kw: runs.append(real_setup(*a, **kw)) or runs[-1]

    def log(metrics, step):
        clock.tick()
        phases.append(dict(runs[-1].seconds))

    common = dict(steps=args.steps, batch_size=args.completions, group_size=args.group, max_new_tokens=args.new_tokens,
                  lr=1e-6, checkpoint_every=0)
    optimizer = GRPO(GRPO.Options(**common, init_kl_coef=0.0, loss_type="dapo")) if algo == "grpo" else \
        RLOO(RLOO.Options(**common, init_kl_coef=0.05))
    with tempfile.TemporaryDirectory() as out:
        compute = ComputeOptions(backend="cpu", threads=args.threads)
        ctx = StageContext(experiment=SimpleNamespace(seed=0, compute=compute), stage="policy",
                           stage_dir=Path(out) / "policy", world=NoGold(), log=log, artifacts={"sft": model_dir})
        optimizer.train(ctx, Reward())
    first, last = phases[0], phases[-1]  # the timed steps: after the first
    return {"phase_s": {k: (last[k] - first.get(k, 0.0)) / (len(phases) - 1) for k in last if k != "total"}}


def child(name: str, args) -> None:
    """Run configuration ``name`` and print its figures as one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    world, model_dir = world_and_model(args.quick, args.model)
    clock = StepClock()
    side, algo = name.split("-")
    extra = (run_trl if side == "trl" else run_harness)(algo, world, model_dir, args, clock)
    s = clock.s_per_step()
    print("RESULT " + json.dumps({"config": name, "s_per_step": s, "samples_per_s": args.completions / s,
                                  "steps_timed": len(clock.ends) - 1, **extra}), flush=True)


# --------------------------------------------------------------------------- the parent: one process after another
def run_child(name: str, args) -> dict:
    flags = ["--child", name, "--steps", str(args.steps), "--threads", str(args.threads),
             "--completions", str(args.completions), "--group", str(args.group), "--new-tokens", str(args.new_tokens)]
    flags += ["--quick"] * args.quick + (["--model", args.model] if args.model else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, *flags], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def report(rounds: list[dict[str, dict]], args) -> str:
    """Per configuration the median over rounds (and the range); per algorithm the ratio of each round's
    harness to that round's trl (a round runs both back to back, so drift of the machine cancels) and
    their median; harness's phase profile as medians. Printed, and returned as text."""
    lines: list[str] = []

    def print(line: str = "") -> None:  # noqa: A001 - collects what the report prints
        lines.append(line)
        sys.stdout.write(line + "\n")

    print(f"\n{args.completions} completions/step (group {args.group}), {args.new_tokens} new tokens, "
          f"{args.threads} thread(s), {args.steps} steps (first one not timed), {len(rounds)} round(s)\n")
    print(f"{'configuration':<16} {'s/step':>8} {'samples/s':>10}   samples/s per round")
    for name in rounds[0]:
        rates = [r[name]["samples_per_s"] for r in rounds]
        steps = median([r[name]["s_per_step"] for r in rounds])
        print(f"{name:<16} {steps:>8.3f} {median(rates):>10.1f}   " + ", ".join(f"{x:.1f}" for x in rates))
    for algo in ("grpo", "rloo"):
        if f"trl-{algo}" in rounds[0] and f"harness-{algo}" in rounds[0]:
            ratios = [r[f"harness-{algo}"]["samples_per_s"] / r[f"trl-{algo}"]["samples_per_s"] for r in rounds]
            print(f"{algo}: harness / trl = {median(ratios):.2f}x (median of rounds: "
                  + ", ".join(f"{x:.2f}x" for x in ratios) + ")")
    for algo in ("grpo", "rloo"):
        if f"harness-{algo}" not in rounds[0]:
            continue
        runs = [r[f"harness-{algo}"] for r in rounds]
        phases = {p: median([run["phase_s"].get(p, 0.0) for run in runs]) for p in PHASES}
        total = median([run["s_per_step"] for run in runs])
        # each round's own remainder, then their median: a median of totals minus medians of phases taken
        # from different rounds mixes the rounds' speeds (which drift by tens of percent) into "other"
        rest = median([run["s_per_step"] - sum(run["phase_s"].get(p, 0.0) for p in PHASES) for run in runs])
        cells = "  ".join(f"{p} {phases[p] * 1e3:.0f} ms ({phases[p] / total:.0%})" for p in PHASES)
        print(f"\nharness {algo} step profile ({total * 1e3:.0f} ms): {cells}  other {rest * 1e3:.0f} ms ({rest / total:.0%})")
    return "\n".join(lines).strip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF model directory (default: runs/instructgpt/sft/model, else embedded:tiny)")
    parser.add_argument("--steps", type=int, default=10, help="steps per configuration (the first is not timed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--completions", type=int, default=64, help="completions per step")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--only", nargs="+", choices=CONFIGS, help="run only these configurations")
    parser.add_argument("--quick", action="store_true", help="micro model, 5 steps of 16 completions, 1 thread")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of every configuration (medians are reported; this machine's speed drifts)")
    parser.add_argument("--json", help="also write the figures of every round to this file")
    parser.add_argument("--doc", type=Path, help="write the report between this document's <!-- peer:now --> markers")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and not args.child:
        args.steps, args.completions, args.threads, args.repeats = 5, 16, 1, 1
    if args.child:
        child(args.child, args)
        return
    rounds = []
    for round_ in range(args.repeats):  # every configuration once per round, in the same order
        rounds.append({})
        for name in args.only or CONFIGS:
            print(f"· round {round_ + 1}/{args.repeats}: {name} …", flush=True)
            rounds[-1][name] = run_child(name, args)
    text = report(rounds, args)
    if args.doc:
        import platform

        import torch
        from doc_markers import write_between_markers

        command = " ".join(["python bench/peer_throughput.py", *sys.argv[1:]])
        write_between_markers(args.doc, "peer", "now", f"```console\n$ {command}\n{text}\n```\n\n{os.cpu_count()} CPUs "
                              f"({platform.machine()}), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
