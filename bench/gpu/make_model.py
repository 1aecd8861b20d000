"""A base model of a real shape, with random weights, for rehearsing the GPU pipeline without a hub.

    python bench/gpu/make_model.py OUT_DIR [--shape 0.5b|tiny] [--dtype bf16|fp32] [--experiment EXP.toml] [--json F]

The GPU machine has no network, so no pretrained checkpoint can be fetched; what a GPU check needs
is the *shape* of a real model (its memory and its arithmetic), not its knowledge. This builds a
Llama-architecture model from a config (``0.5b``: hidden 1024, 24 layers, 16 query / 8 key-value
heads, FFN 5632 — about 0.49 B parameters, the size of Qwen2.5-0.5B without its 152k vocabulary)
with seeded random weights, and saves it with the embedded world's tokenizer (taken from the
world's own base model, so prompts tokenize exactly as the pipeline tokenizes them), in bf16 as
released checkpoints are. ``[model] base = OUT_DIR`` then runs the whole pipeline on it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# name: hidden, layers, query heads, key-value heads, FFN
SHAPES = {"0.5b": (1024, 24, 16, 8, 5632), "tiny": (64, 2, 4, 2, 176)}


def world_tokenizer(experiment: Path | None):
    """The embedded world's tokenizer: the one its smallest base model is saved with, trained alone (the
    micro model's pretraining, most of a minute on a busy CPU, would be thrown away: only its tokenizer is kept)."""
    from harness_builtins.worlds.embedded.world import EmbeddedWorld

    raw = tomllib.loads(experiment.read_text()) if experiment else {}
    table = raw.get("world", {}).get("embedded", {})
    world = EmbeddedWorld(EmbeddedWorld.Options(**table), seed=raw.get("experiment", {}).get("seed", 0))
    return world.base_tokenizer("micro")


def build(out: Path, shape: str, dtype: str, experiment: Path | None = None) -> dict:
    """Save a random-init Llama of ``shape`` in ``dtype`` with the world's tokenizer at ``out``; return its facts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = world_tokenizer(experiment)
    hidden, layers, heads, kv_heads, ffn = SHAPES[shape]
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
                         rope_theta=1e6, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to({"bf16": torch.bfloat16, "fp32": torch.float32}[dtype])
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"path": str(out), "shape": shape, "dtype": dtype, "params": sum(p.numel() for p in model.parameters()),
            "vocab": len(tok), "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads, "ffn": ffn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--experiment", type=Path, help="take the world's options and seed from this TOML")
    parser.add_argument("--json", type=Path, help="also write the facts printed to this file")
    args = parser.parse_args()
    facts = json.dumps(build(args.out, args.shape, args.dtype, args.experiment))
    print(facts)
    if args.json:
        args.json.write_text(facts)


if __name__ == "__main__":
    main()
