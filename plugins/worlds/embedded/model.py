"""The world's base models: a byte-level BPE tokenizer and a tiny Llama pretrained on the corpus.

Built on first use and cached under ``$HARNESS_CACHE_DIR`` (default ``~/.cache/harness``) in a
directory keyed by the world seed and a hash of everything the build reads (corpus options, the
model spec, :data:`BUILD_VERSION`), so a changed recipe never reuses a stale model. The build
happens in a temporary directory that is renamed into place only when complete: a killed build
leaves no half cache. Same seed, same weights (fixed seeds, fixed data order, fp32 on CPU).

Documents are tokenized with the convention of ``harness.text`` (BOS, prompt, " " + response,
EOS), so the base model already ends its replies with EOS exactly where SFT and PPO expect it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from harness.errors import HarnessError

from .corpus import Doc

BUILD_VERSION = 2
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and pretraining budget of one named base model."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    steps: int
    batch: int = 32
    seq_len: int = 128
    lr: float = 2e-3
    warmup: int = 30
    vocab: int = 1536


SPECS = {
    # ~1.2 M parameters; ~1.15 M training tokens (~4 epochs of the corpus); ~90 s on 2 idle CPU cores.
    "tiny": ModelSpec(hidden=128, layers=4, heads=4, ffn=512, steps=280, lr=4e-3),
    # For tests: builds in seconds, knows little.
    "micro": ModelSpec(hidden=64, layers=2, heads=4, ffn=128, steps=40, batch=16, warmup=5),
}


def cache_root() -> Path:
    """``$HARNESS_CACHE_DIR/embedded`` (``~/.cache/harness/embedded`` by default)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or "~/.cache/harness").expanduser() / "embedded"


def config_hash(payload: dict) -> str:
    """Short stable hash of a JSON-ready build description."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def spec_for(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise HarnessError(
            f"unknown embedded model {name!r}; available: {', '.join(sorted(SPECS))} (use base = 'embedded:tiny')."
        ) from None


def train_tokenizer(texts: Sequence[str], vocab: int):
    """A byte-level BPE tokenizer over ``texts``, wrapped for transformers (BOS/EOS/PAD set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)


def token_stream(tok, docs: Sequence[Doc]) -> list[int]:
    """All documents as one id stream, each framed like ``harness.text`` frames prompt and response."""
    from harness.text import encode_prompt, encode_response

    ids: list[int] = []
    for doc in docs:
        if doc.context is None:
            ids += encode_prompt(tok, doc.text) + [tok.eos_token_id]
        else:
            ids += encode_prompt(tok, doc.context) + encode_response(tok, doc.text)
    return ids


def new_model(tok, spec: ModelSpec, seed: int):
    """A freshly initialized Llama of ``spec`` (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=spec.hidden, intermediate_size=spec.ffn,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def lr_at(step: int, spec: ModelSpec) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(model, stream: list[int], spec: ModelSpec, seed: int) -> list[float]:
    """Next-token training on random blocks of the stream; returns the loss of every step."""
    import torch

    blocks = torch.tensor(stream[: len(stream) // spec.seq_len * spec.seq_len]).view(-1, spec.seq_len)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.95), weight_decay=0.05)
    model.train()
    losses = []
    for step in range(spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        batch = blocks[torch.randint(0, len(blocks), (spec.batch,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def build_into(out: Path, docs: Sequence[Doc], spec: ModelSpec, seed: int) -> dict:
    """Tokenizer + pretrained model saved into ``out``; returns the build summary."""
    import torch

    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tok = train_tokenizer([d.joined() for d in docs], spec.vocab)
        model = new_model(tok, spec, seed)
        losses = pretrain(model, token_stream(tok, docs), spec, seed)
    finally:
        torch.set_num_threads(threads)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"params": sum(p.numel() for p in model.parameters()), "first_loss": losses[0],
            "final_loss": sum(losses[-10:]) / len(losses[-10:]), "seconds": time.perf_counter() - start}


def cached_build(name: str, seed: int, corpus_config: dict, docs: Callable[[], Sequence[Doc]],
                 log: Callable[[str], None] | None = None) -> Path:
    """The directory of base model ``name``; built (atomically) when the cache lacks it."""
    from harness.io import atomic_directory, atomic_write_json

    spec = spec_for(name)
    key = {"version": BUILD_VERSION, "seed": seed, "corpus": corpus_config, "spec": asdict(spec)}
    path = cache_root() / "models" / f"{name}-s{seed}-{config_hash(key)}"
    if (path / "build.json").exists():
        return path
    if log:
        log(f"building base model embedded:{name} (seed {seed}) into {path} ...")
    with atomic_directory(path) as tmp:
        summary = build_into(tmp, docs(), spec, seed)
        atomic_write_json(tmp / "build.json", key | summary)
    return path
