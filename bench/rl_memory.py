"""Peak memory of one RL step: four full models vs LoRA + shared trunk + adapter-off reference + offloading.

    python bench/rl_memory.py --size small          # ~42 M-parameter Llama, random init, no download
    python bench/rl_memory.py --size 0.5b --json m.json   # on a GPU: bench/gpu/check.sh runs this

Builds a Llama of the chosen size (policy/SFT and a reward model of the same size) in a temp
directory, then runs, in a fresh subprocess per configuration so their peaks do not mix, the
real RL code path — ``setup`` (``load_models``, critic, AdamW) and one ``PPO.step``
(rollout: generation, reward, reference and value forwards; one PPO update) — and reports the
child's peak RSS (``ru_maxrss``) and, with CUDA, ``torch.cuda.max_memory_allocated``:

  (a) full:  policy + separate critic trunk + full reference copy + reward model, all weights trained
  (b) lean:  LoRA policy + value head on its trunk + adapter-off reference + reward model offloaded
             (``lora = true``, ``value_model = "shared"``, ``offload_frozen = true``)

On a CPU, offloading is a no-op (the frozen models are already in host memory), so (b)'s saving
there comes from LoRA (no reference copy; no gradients or AdamW moments for the base weights)
and the shared trunk (no critic copy with its gradients and moments). On a GPU, offloading also
takes the reward model (and a full reference) off the device between their forward passes.
Figures are printed, not asserted; the target is a ratio (b)/(a) ≤ 0.5.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (hidden, layers, FFN, vocab); heads = hidden / 64
SIZES = {"micro": (64, 2, 176, 2000), "tiny": (256, 4, 688, 8000), "small": (512, 8, 1376, 16000), "base": (768, 12, 2048, 32000),
         "0.5b": (1024, 24, 5632, 8000)}  # 0.5b: bench/gpu/make_model.py's shape (there with GQA), ~0.53 B
CONFIGS = {
    "full": dict(lora=False, value_model="separate", offload_frozen=False),
    "lean": dict(lora=True, value_model="shared", offload_frozen=True),
}
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "User:", "Assistant:"]


# --------------------------------------------------------------------------- the models (built once, in the parent)
def build_models(root: Path, size: str) -> tuple[Path, Path, int]:
    """A random-init Llama saved as the SFT model and, with a scalar head, as the reward model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

    hidden, layers, ffn, vocab_size = SIZES[size]
    vocab = {w: i for i, w in enumerate(SPECIALS + [f"w{i}" for i in range(vocab_size - len(SPECIALS))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                         max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, num_labels=1)
    torch.manual_seed(0)
    sft, rm = root / "sft", root / "reward_model" / "model"
    policy = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in policy.parameters())
    policy.save_pretrained(sft)
    del policy
    LlamaForSequenceClassification(config).save_pretrained(rm)
    for path in (sft, rm):
        tok.save_pretrained(path)
    return sft, rm.parent, n_params


# --------------------------------------------------------------------------- one configuration (in a child)
class BenchWorld:
    """Prompts of random words; a gold judge that measures nothing (the bench only looks at memory)."""

    name = "bench"

    def __init__(self, vocab_size: int):
        self.words = [f"w{i}" for i in range(vocab_size - len(SPECIALS))]

    def chat_text(self, prompt) -> str:
        return f"User: {prompt.text} Assistant:"

    def prompts(self, split):
        from harness._core.contracts import Prompt

        rng = random.Random(split)
        return [Prompt(f"{split}-{i}", "bench", " ".join(rng.choices(self.words, k=24))) for i in range(64)]

    def gold(self):
        return SimpleNamespace(score=lambda prompt, response: 0.0)


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(args) -> dict:
    """Set up the RL stage with this configuration's options and run one PPO step; report peaks."""
    import torch

    from harness._core.compute import ComputeOptions
    from harness._core.contracts import StageContext
    from harness._online import setup
    from harness._online.memory import parameter_bytes
    from harness_builtins.optimizers.ppo import PPO, PPOOptions
    from harness_builtins.rewards.learned import LearnedReward

    root = Path(args.models)
    compute = ComputeOptions(backend=args.backend, threads=args.threads)
    ctx = StageContext(experiment=SimpleNamespace(seed=0, compute=compute),
                       stage="policy", stage_dir=root / args.config, world=BenchWorld(SIZES[args.size][3]),
                       log=lambda metrics, step: None,
                       artifacts={"sft": root / "sft", "reward_model": root / "reward_model"})
    cuda = torch.cuda.is_available() and args.backend != "cpu"
    baseline = current_rss_mb()
    reward = LearnedReward(LearnedReward.Options(batch_size=args.batch_size))
    reward.prepare(ctx)
    options = PPOOptions(steps=1, batch_size=args.batch_size, minibatch_size=args.batch_size, ppo_epochs=1,
                         max_new_tokens=args.new_tokens, checkpoint_every=0, lora_r=args.lora_r, **CONFIGS[args.config])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run = setup(ctx, options, reward, "ppo")
    PPO(options).step(run, 1)
    seconds = time.perf_counter() - start
    trained = sum(p.numel() for g in run.optimizer.param_groups for p in g["params"])
    return {"config": args.config, "baseline_rss_mb": baseline,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KB on Linux
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "weights_mb": parameter_bytes(run.policy, run.reference, run.critic, *reward_models(run)) / 2**20,
            "trained_params": trained, "seconds": seconds}


def reward_models(run):
    from harness._online.memory import reward_modules

    return reward_modules(run.reward)


# --------------------------------------------------------------------------- the table (in the parent)
def child(args, config: str, models: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", config, "--models", str(models), "--size", args.size,
           "--batch-size", str(args.batch_size), "--new-tokens", str(args.new_tokens), "--threads", str(args.threads),
           "--backend", args.backend, "--lora-r", str(args.lora_r)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(rows: dict[str, dict], n_params: int, args) -> None:
    print(f"RL step peak memory — Llama '{args.size}' ({n_params / 1e6:.1f} M params, fp32), "
          f"batch {args.batch_size}, "
          f"{args.new_tokens} new tokens, one PPO update; LoRA r={args.lora_r}")
    print(f"{'config':<6} {'peak RSS MB':>12} {'RSS − baseline':>15} {'CUDA peak MB':>13} {'weights MB':>11} "
          f"{'trained params':>15} {'s':>6}")
    for name, r in rows.items():
        cuda = f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "—"
        print(f"{name:<6} {r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] - r['baseline_rss_mb']:>15.0f} {cuda:>13} "
              f"{r['weights_mb']:>11.0f} {r['trained_params']:>15,} {r['seconds']:>6.1f}")
    full, lean = rows["full"], rows["lean"]
    above = [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in (lean, full)]
    print(f"ratio lean/full: peak RSS {lean['peak_rss_mb'] / full['peak_rss_mb']:.2f}, "
          f"RSS above the import baseline {above[0] / above[1]:.2f}"
          + (f", CUDA peak {lean['cuda_peak_mb'] / full['cuda_peak_mb']:.2f}" if full["cuda_peak_mb"] else "")
          + " (target ≤ 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--json", help="also write the rows and ratios to this JSON file")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.config = args.child
        print(json.dumps(measure(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        sft, _, n_params = build_models(Path(tmp), args.size)
        rows = {name: child(args, name, Path(tmp)) for name in CONFIGS}
    report(rows, n_params, args)
    if args.json:
        write_json(Path(args.json), rows, n_params, args)


def write_json(path: Path, rows: dict[str, dict], n_params: int, args) -> None:
    """The rows and their lean/full ratios (CUDA peak where measured), for bench/gpu/check.sh's summary."""
    full, lean = rows["full"], rows["lean"]
    ratios = {"peak_rss": lean["peak_rss_mb"] / full["peak_rss_mb"]}
    if full["cuda_peak_mb"]:
        ratios["cuda_peak"] = lean["cuda_peak_mb"] / full["cuda_peak_mb"]
    path.write_text(json.dumps({"size": args.size, "params": n_params, "batch_size": args.batch_size,
                                "new_tokens": args.new_tokens, "lora_r": args.lora_r, "rows": rows,
                                "ratio_lean_over_full": ratios}, indent=2))


if __name__ == "__main__":
    main()
