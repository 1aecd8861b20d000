"""The world's base models: a byte-level BPE tokenizer and a tiny Llama pretrained on the corpus.

The default world's bases (``embedded:tiny``, seeds 0–2) ship in the package under ``weights/``
(another design's under ``weights/<name>-d<design>-s<seed>``, beside them):
pretraining them until they know their world takes about 9 minutes per seed on 2 cores, longer
than a first run may take. A shipped build is used only when its recorded recipe key equals the
current one (:func:`build_key`), so a changed recipe never reads stale weights; ``harness world
build --ship`` rebuilds them, and ``tests/test_world.py`` checks key and file hashes. Any other
seed or model is built on first use and cached under ``$HARNESS_CACHE_DIR`` (default ``~/.cache/harness``) in a
directory keyed by the world seed and a hash of everything the build reads (corpus options, the
model spec, :data:`BUILD_VERSION`), so a changed recipe never reuses a stale model. The build
happens in a temporary directory that is renamed into place only when complete: a killed build
leaves no half cache. Same seed, same weights (fixed seeds, fixed data order, fp32 on CPU).

Documents are tokenized with the convention of ``harness.api``'s text functions (BOS, prompt, " " + response,
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

from harness.api import HarnessError

from .corpus import Doc

BUILD_VERSION = 2
SHIPPED_ROOT = Path(__file__).with_name("weights")
SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
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
    # ~1.2 M parameters; 1,200 steps = 4.9 M training tokens (~4 per parameter, ~17 passes over the
    # corpus): the budget at which the base knows its world (cloze 1.00; docs/world.md, design 3).
    # ~9 min on 2 CPU cores, so seeds 0-2 ship in weights/.
    "tiny": ModelSpec(hidden=128, layers=4, heads=4, ffn=512, steps=1200, lr=4e-3),
    # For tests: builds in seconds, knows little.
    "micro": ModelSpec(hidden=64, layers=2, heads=4, ffn=128, steps=40, batch=16, warmup=5),
}


def cache_root() -> Path:
    """``$HARNESS_CACHE_DIR/embedded`` (``~/.cache/harness/embedded`` by default)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or "~/.cache/harness").expanduser() / "embedded"


def build_once(path: Path, done: str, build: Callable[[Path], None]) -> Path:
    """``path``, built by ``build(tmp)`` into a temporary directory that replaces it whole, unless ``path/done``
    already exists. Builds of one path are serialized by a file lock (``<cache>/.locks/``), so two processes sharing a cache
    (two runs, two test workers) build it once: the second waits, then finds it finished, instead of replacing
    the directory under a reader's feet."""
    from filelock import FileLock

    from harness.api import atomic_directory

    if (path / done).exists():
        return path
    locks = cache_root() / ".locks"  # beside the cache's content, never in it: a lock file is not a build
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{path.parent.name}-{path.name}.lock")):
        if not (path / done).exists():
            with atomic_directory(path) as tmp:
                build(tmp)
    return path


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


def base_tokenizer(docs: Sequence[Doc], spec: ModelSpec):
    """The tokenizer a base model of ``spec`` pretrained on ``docs`` is saved with: byte-level BPE over their text.

    The one recipe :func:`build_into` and a tool that needs the tokenizer without the model (bench/gpu/make_model.py,
    through :meth:`EmbeddedWorld.base_tokenizer`) both follow, so the two cannot drift apart."""
    return train_tokenizer([d.joined() for d in docs], spec.vocab)


def token_stream(tok, docs: Sequence[Doc]) -> list[int]:
    """All documents as one id stream, each framed like ``harness.api``'s text functions frames prompt and response."""
    from harness.api import encode_prompt, encode_response

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

    # At most two threads (the 2-core figures in docs/world.md), never more than the caller set: test workers run at
    # one thread each, and an extra thread on busy cores made a micro build 5-10x slower. The micro build's weights
    # are the same bytes at one thread and at two (measured 2026-12-03).
    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        tok = base_tokenizer(docs, spec)
        model = new_model(tok, spec, seed)
        losses = pretrain(model, token_stream(tok, docs), spec, seed)
    finally:
        torch.set_num_threads(threads)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"params": sum(p.numel() for p in model.parameters()), "first_loss": losses[0],
            "final_loss": sum(losses[-10:]) / len(losses[-10:]), "seconds": time.perf_counter() - start}


def build_key(name: str, seed: int, corpus_config: dict) -> dict:
    """Everything a build of model ``name`` reads: what its cache directory and a shipped copy are keyed by."""
    return {"version": BUILD_VERSION, "seed": seed, "corpus": corpus_config, "spec": asdict(spec_for(name))}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_dir_name(name: str, seed: int, corpus_config: dict) -> str:
    """``tiny-s0`` for the default design's corpus, ``tiny-d5-s0`` for design 5's: designs ship side by side."""
    design = corpus_config.get("design")
    return f"{name}-s{seed}" if design is None else f"{name}-d{design}-s{seed}"


def shipped_build(name: str, seed: int, corpus_config: dict, root: Path = SHIPPED_ROOT) -> Path | None:
    """The shipped directory of ``name`` at ``seed`` when its recorded key matches today's recipe, else None."""
    path = root / shipped_dir_name(name, seed, corpus_config)
    try:
        recorded = json.loads((path / "build.json").read_text())
    except (OSError, ValueError):
        return None
    key = build_key(name, seed, corpus_config)
    same = {k: recorded.get(k) for k in key} == json.loads(json.dumps(key))
    return path if same and all((path / f).exists() for f in SHIPPED_FILES) else None


def ship(built: Path, name: str, seed: int, root: Path = SHIPPED_ROOT) -> Path:
    """Copy a finished build into ``root`` (atomically), recording each file's sha256 in its build.json."""
    import shutil

    from harness.api import atomic_directory, atomic_write_json

    summary = json.loads((built / "build.json").read_text())
    summary["sha256"] = {f: file_sha256(built / f) for f in SHIPPED_FILES}
    target = root / shipped_dir_name(name, seed, summary.get("corpus") or {})
    with atomic_directory(target) as tmp:
        for f in SHIPPED_FILES:
            shutil.copyfile(built / f, tmp / f)
        atomic_write_json(tmp / "build.json", summary)
    return target


def cached_build(name: str, seed: int, corpus_config: dict, docs: Callable[[], Sequence[Doc]],
                 log: Callable[[str], None] | None = None, use_shipped: bool = True) -> Path:
    """The directory of base model ``name``: the shipped copy when it matches, else the cache, built (atomically) when missing."""
    from harness.api import atomic_write_json

    spec = spec_for(name)
    key = build_key(name, seed, corpus_config)
    shipped = shipped_build(name, seed, corpus_config) if use_shipped else None
    if shipped is not None:
        return shipped
    path = cache_root() / "models" / f"{name}-s{seed}-{config_hash(key)}"

    def build(tmp: Path) -> None:
        if log:
            log(f"building base model embedded:{name} (seed {seed}) into {path} ...")
        summary = build_into(tmp, docs(), spec, seed)
        atomic_write_json(tmp / "build.json", key | summary)

    return build_once(path, "build.json", build)
