"""Where one PPO step's time goes at a real model size, and what a static KV cache buys generation.

    python bench/gpu/ppo_profile.py MODEL_DIR [--backend deepspeed|auto|cpu] [--json OUT.json]

MODEL_DIR is a causal LM in HF format (``bench/gpu/make_model.py`` writes one); it is π_SFT, and
with a fresh scalar head the reward model. The RL stage is set up through ``loop.setup`` (the
backend's engine, a shared value head) on the embedded world's ``rl`` prompts, one step is run to
warm up, then ``--repeats`` steps are timed piece by piece, in the order of ``PPO.step``:

  generation   ``generate_responses`` inside the rollout (HF generate, dynamic KV cache)
  scoring      the reward model on the sampled texts
  forwards     π_θ (log-probs, entropy, values) and π_SFT (reference log-probs), no grad
  update       advantages and the clipped PPO update (backward + optimizer step)

and reported as seconds, tokens/s (generated tokens for generation; query+response tokens through
forward and backward for the update), generation's share of the step and the peak GPU memory.
Then the same batch of prompts is generated with the default dynamic cache, with
``cache_implementation="static"`` (which transformers compiles with ``torch.compile`` on a GPU) and,
on a GPU, with a static cache left uncompiled: their time per batch and the speed-up. On a CPU
transformers does not compile, so the static path runs uncompiled (the dry run of check.sh).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_run(model_dir: Path, stage_dir: Path, args):
    """The RL stage as ``harness run`` builds it: ``setup`` with the chosen backend and PPO options."""
    from harness._core.compute import ComputeOptions
    from harness._core.contracts import StageContext
    from harness._online import setup
    from harness_builtins.optimizers.ppo import PPOOptions
    from harness_builtins.rewards.learned import LearnedReward
    from harness_builtins.worlds.embedded.world import EmbeddedWorld

    compute = {"backend": args.backend, "threads": args.threads}
    if args.backend == "deepspeed":
        compute |= {"zero_stage": 2, "mixed_precision": "bf16"}
    ctx = StageContext(experiment=SimpleNamespace(seed=0, compute=ComputeOptions(**compute)), stage="policy",
                       stage_dir=stage_dir, world=EmbeddedWorld(EmbeddedWorld.Options(rl_size=256)),
                       log=lambda metrics, step: None, artifacts={"sft": model_dir})
    reward = LearnedReward(LearnedReward.Options(batch_size=args.batch_size)).load(model_dir, ctx)
    options = PPOOptions(steps=args.repeats + 1, batch_size=args.batch_size, minibatch_size=args.minibatch_size,
                         ppo_epochs=1, max_new_tokens=args.new_tokens, value_model="shared", checkpoint_every=0)
    return setup(ctx, options, reward, "ppo")


def timed_step(run, step: int) -> dict:
    """One ``PPO.step``, its pieces timed (the GPU synchronised at each boundary)."""
    from harness._online import rewards_and_advantages
    from harness_builtins.optimizers.ppo import ppo_update
    from harness._online.rollout import collect_rollout

    gen0, score0 = run.seconds["generation"], run.seconds["reward"]
    sync()
    start = time.perf_counter()
    batch = collect_rollout(run, step)
    sync()
    rollout = time.perf_counter() - start
    advantages, returns = rewards_and_advantages(run, batch)
    ppo_update(run, batch, advantages, returns)
    sync()
    total = time.perf_counter() - start
    generation, scoring = run.seconds["generation"] - gen0, run.seconds["reward"] - score0
    rows, width = batch.response_ids.shape
    return {"step_s": total, "generation_s": generation, "scoring_s": scoring,
            "forwards_s": rollout - generation - scoring, "update_s": total - rollout,
            "generated_tokens": rows * width, "response_tokens": int(batch.mask.sum()),
            "update_tokens": rows * (batch.query_ids.shape[1] + width) * run.options.ppo_epochs}


def step_profile(run, repeats: int) -> dict:
    """Median of ``repeats`` timed steps after one warm-up step, with throughputs and shares."""
    from harness_builtins.optimizers.ppo import PPO

    PPO(run.options).step(run, 1)  # warm-up: CUDA context, allocator, kernels picked
    steps = [timed_step(run, 2 + i) for i in range(repeats)]
    median = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    return median | {"steps": steps,
                     "generation_tokens_per_s": median["generated_tokens"] / median["generation_s"],
                     "update_tokens_per_s": median["update_tokens"] / median["update_s"],
                     "generation_share": median["generation_s"] / median["step_s"]}


def generation_profile(run, repeats: int) -> dict:
    """One batch of the run's prompts generated with a dynamic cache, a static cache (+ compile on a GPU)."""
    import torch

    from harness._core.generation import generate_responses, unwrap_model
    from harness._core.text import encode_prompt
    from harness._online.rollout import sample_prompts, sample_seed

    prompts = sample_prompts(run.prompts, run.options.batch_size, run.ctx.seed, 10**6)
    ids = [encode_prompt(run.tokenizer, run.ctx.world.chat_text(p)) for p in prompts]
    seeds = [sample_seed(run.ctx.seed, 10**6, i) for i in range(len(ids))]
    model = unwrap_model(run.policy)
    config = model.generation_config

    def generate():
        sync()
        start = time.perf_counter()
        out = generate_responses(model, run.tokenizer, ids, max_new_tokens=run.options.max_new_tokens,
                                 temperature=run.options.temperature, row_seeds=seeds)
        sync()
        return time.perf_counter() - start, out

    def variant(cache: str | None, compile_: bool) -> dict:
        config.cache_implementation, config.disable_compile = cache, not compile_
        first, out = generate()  # a static cache is allocated (and the forward compiled) on the first call
        times = [generate()[0] for _ in range(repeats)]
        tokens = out.response_ids.numel()
        return {"first_s": first, "s": statistics.median(times), "tokens_per_s": tokens / statistics.median(times),
                "response_ids": out.response_ids}

    cuda = model.device.type == "cuda"
    variants = {"dynamic": variant(None, False), "static": variant("static", cuda)}
    if cuda:
        variants["static_uncompiled"] = variant("static", False)
    config.cache_implementation, config.disable_compile = None, False
    want = variants["dynamic"]["response_ids"]
    for v in variants.values():  # same weights, same seeds: tokens differ only where kernels round differently
        got = v.pop("response_ids")
        v["speedup"] = variants["dynamic"]["s"] / v["s"]
        v["same_tokens"] = float((got == want).float().mean()) if got.shape == want.shape else 0.0
    return {"compiled": cuda, "batch": len(ids), "max_new_tokens": run.options.max_new_tokens,
            "torch": torch.__version__, **variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--backend", choices=["deepspeed", "auto", "cpu"], default="deepspeed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--minibatch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    from harness._online.memory import parameter_bytes

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(args.model, Path(tmp) / "policy", args)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        figures = {"model": str(args.model), "params": sum(p.numel() for p in run.policy.parameters()),
                   "weights_mb": parameter_bytes(run.policy) / 2**20, "backend": args.backend,
                   "device": str(run.accelerator.device), "batch_size": args.batch_size,
                   "new_tokens": args.new_tokens, "ppo": step_profile(run, args.repeats)}
        figures["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        figures["generation"] = generation_profile(run, args.repeats)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def report(f: dict) -> None:
    p, g = f["ppo"], f["generation"]
    print(f"PPO step profile — {f['params'] / 1e6:.0f} M params on {f['device']} ({f['backend']}), "
          f"batch {f['batch_size']}, {f['new_tokens']} new tokens (median of {len(p['steps'])} steps)")
    for key in ("generation_s", "scoring_s", "forwards_s", "update_s", "step_s"):
        print(f"  {key:<14} {p[key]:8.3f} s")
    print(f"  generation {p['generation_tokens_per_s']:,.0f} tok/s, update {p['update_tokens_per_s']:,.0f} tok/s, "
          f"generation share {p['generation_share']:.0%}"
          + (f", peak GPU memory {f['cuda_peak_mb']:,.0f} MB" if f["cuda_peak_mb"] else ""))
    for name in ("dynamic", "static", "static_uncompiled"):
        if name in g:
            v = g[name]
            print(f"  generate, {name:<18} {v['s']:7.3f} s/batch (first call {v['first_s']:.2f} s), "
                  f"{v['tokens_per_s']:,.0f} tok/s, speed-up {v['speedup']:.2f}×, same tokens {v['same_tokens']:.0%}")


if __name__ == "__main__":
    main()
