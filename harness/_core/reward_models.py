"""The reward-model artifact: what a reward-model stage saves and every reward source loads.

A trained reward model is a Hugging Face sequence-classification directory (``num_labels=1``, so
any HF tool loads it unchanged) with ``reward_normalization.json`` beside it: the offset its
scores are shifted by so π_SFT's samples average 0 (InstructGPT normalizes its RM the same way).
The offset is a side file because Llama-style score heads are ``Linear(bias=False)``: there is no
bias to fold it into. An ensemble keeps member 0 in ``<stage>/model/`` and member i ≥ 1 in
``<stage>/members/<i>/``, each with its own offset. A reward is read at the last token of
prompt + response (cut from the left when too long), in training and in scoring alike.

The stage that trains reward models (``bradley_terry``) and every reward source that reads them
(``learned``, ``ensemble``, a third party's) meet here rather than in each other's modules, so the
format is written and read in one place.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from harness._core.contracts import Prompt, World
from harness._core.generation import (cache_argument, can_keep_cache, ensure_pad, left_pad, pad_right,
                                      position_ids)
from harness._core.io import atomic_directory
from harness._core.packing import pack, packable
from harness._core.text import encode_prompt, encode_response

NORMALIZATION_FILE = "reward_normalization.json"
MODEL_DIR = "model"  # member 0 (the only one without an ensemble): <stage_dir>/model/
MEMBERS_DIR = "members"  # members 1..N-1 of an ensemble: <stage_dir>/members/<i>/


# ----------------------------------------------------------------- where the models are
def reward_model_dir(stage_dir: Path, member: int = 0) -> Path:
    """Where member ``member`` of a reward-model stage's output lives (0: the single model)."""
    return Path(stage_dir) / (Path(MEMBERS_DIR) / str(member) if member else MODEL_DIR)


def member_dirs(stage_dir: Path) -> list[Path]:
    """Every reward model a stage saved: ``model/`` then ``members/<i>/`` in order of i."""
    stage_dir = Path(stage_dir)
    members = stage_dir / MEMBERS_DIR
    found = [d for d in members.iterdir() if d.name.isdigit() and (d / "config.json").exists()] if members.is_dir() else []
    first = [stage_dir / MODEL_DIR] if (stage_dir / MODEL_DIR / "config.json").exists() else []
    return first + sorted(found, key=lambda d: int(d.name))


# ----------------------------------------------------------------- loading and saving
def load_reward_tokenizer(model_dir):
    """The tokenizer, with a pad id (EOS when it has none) as the reward read-out needs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ensure_pad(tokenizer)
    return tokenizer


def load_reward_model(model_dir):
    """(model, tokenizer) of a saved reward model — or, given a causal LM (π_SFT), that model with a fresh
    scalar head (``num_labels=1``) to train."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_reward_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id  # HF's pooled read-out finds the last token through it
    return model, tokenizer


def save_reward_model(model, tokenizer, model_dir: Path, offset: float) -> None:
    """``save_pretrained`` model + tokenizer and the normalization offset into ``model_dir``, atomically."""
    with atomic_directory(Path(model_dir)) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / NORMALIZATION_FILE).write_text(json.dumps({"offset": offset}) + "\n", encoding="utf-8")


def read_offset(model_dir: Path) -> float:
    """The normalization offset saved beside a reward model (0 when absent, e.g. an RM trained elsewhere)."""
    path = Path(model_dir) / NORMALIZATION_FILE
    return float(json.loads(path.read_text(encoding="utf-8"))["offset"]) if path.exists() else 0.0


# ----------------------------------------------------------------- reading a reward
def reward_sequence(prompt_ids: list[int], response_ids: list[int], max_length: int) -> list[int]:
    """Prompt + response, cut from the left when too long: the reward is read at the end, so the end stays."""
    return (prompt_ids + response_ids)[-max_length:]


def sequence_rewards(model, seqs: Sequence[Sequence[int]], pad_id: int, device) -> torch.Tensor:
    """One scalar per sequence from a ``num_labels=1`` sequence-classification model.

    HF's classifier pools the rightmost token that is not ``config.pad_token_id``. Every
    response ends with EOS; when pad == EOS that puts the read-out on the last response
    token (which has seen the whole response), otherwise on EOS — the same place in training
    and in scoring either way, since both go through this function.
    """
    input_ids, attention_mask = pad_right(seqs, pad_id)
    out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
    return out.logits[:, 0].float()


def group_rewards(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[Sequence[int]]], pad_id: int,
                  device, max_length: int) -> torch.Tensor:
    """One scalar per response, groups in order: ``responses[i]`` are answers to ``prompts[i]`` (a ranking's K).

    The same rewards and gradients as :func:`sequence_rewards` over every
    ``reward_sequence(prompt, response, max_length)`` (to float rounding), with each prompt run once:
    its KV cache is indexed out to its responses, which run on top of it, and gradients flow back
    through the shared prompt. A reward-model step on K-wise rankings computes a prompt once instead
    of K times. The read-out is the one-pass forward's, the rightmost token that is not the pad id:
    in the response when it has one, else the prompt's last (a response of only pad ids, e.g. a bare
    EOS when pad = EOS).

    A sequence-classification model with a linear ``score`` head whose attention takes a 4D mask
    runs packed (:func:`packed_rewards`: no padding, prompts once); others share each prompt through
    its KV cache. When a sequence would be cut to ``max_length`` (its prompt then differs from its
    group's), or the model cannot pack and either keeps no KV cache (activation checkpointing in
    training) or has no prompt to share (groups of one), every sequence takes the one-pass forward.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"group_rewards: {len(prompts)} prompts for {len(responses)} groups of responses")
    too_long = any(len(p) + len(r) > max_length for p, rs in zip(prompts, responses) for r in rs)
    if not too_long and any(responses) and packable(model) and isinstance(getattr(model, "score", None), torch.nn.Linear):
        return packed_rewards(model, prompts, responses, pad_id, device)
    if too_long or not can_keep_cache(model) or not any(responses) or all(len(rs) == 1 for rs in responses):
        seqs = [reward_sequence(list(p), list(r), max_length) for p, rs in zip(prompts, responses) for r in rs]
        return sequence_rewards(model, seqs, pad_id, device)
    owners = torch.tensor([i for i, rs in enumerate(responses) for _ in rs], device=device)
    query_ids, query_mask = (t.to(device) for t in left_pad(prompts, pad_id))
    prompt = model(input_ids=query_ids, attention_mask=query_mask, position_ids=position_ids(query_mask), use_cache=True)
    cache = getattr(prompt, cache_argument())
    cache.batch_select_indices(owners)  # each response gets its prompt's keys and values
    response_ids, response_mask = (t.to(device) for t in pad_right([r for rs in responses for r in rs], pad_id))
    mask = torch.cat([query_mask[owners], response_mask], dim=1)
    out = model(input_ids=response_ids, attention_mask=mask, position_ids=position_ids(mask)[:, query_ids.shape[1]:],
                use_cache=False, **{cache_argument(): cache})
    read_in_response = (response_ids != pad_id).any(dim=1)
    return torch.where(read_in_response, out.logits[:, 0], prompt.logits[owners, 0]).float()


def packed_rewards(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[Sequence[int]]], pad_id: int,
                   device) -> torch.Tensor:
    """:func:`group_rewards` as one packed forward of the trunk (``harness._core.packing``): each group's prompt
    once, no padding between responses, the ``score`` head applied only where a reward is read."""
    packed = pack(prompts, responses, pad_id)
    hidden = model.base_model(**packed.inputs(model, device), use_cache=False).last_hidden_state
    reads = [packed.flat_positions(g, j)[_read_position(prompts[g], response, pad_id)]
             for g, group in enumerate(responses) for j, response in enumerate(group)]
    chosen = hidden.reshape(-1, hidden.shape[-1])[torch.tensor(reads, device=hidden.device)]
    return model.score(chosen)[:, 0].float()


def _read_position(prompt: Sequence[int], response: Sequence[int], pad_id: int) -> int:
    """Index in prompt + response of the rightmost token that is not the pad id (the one-pass read-out)."""
    sequence = list(prompt) + list(response)
    return max((i for i, token in enumerate(sequence) if token != pad_id), default=0)  # HF pools index 0 then


@torch.no_grad()
def score_texts(model, tokenizer, world: World, prompts: Sequence[Prompt], responses: Sequence[str], *,
                max_length: int, batch_size: int, device=None) -> torch.Tensor:
    """Raw rewards (no offset) of (prompt, response) texts, on CPU, read exactly as in reward-model training:
    ``encode_prompt(world.chat_text(prompt)) + encode_response(response)``."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    prompt_ids = [encode_prompt(tokenizer, world.chat_text(p)) for p in prompts]
    response_ids = [[encode_response(tokenizer, r)] for r in responses]  # groups of one: a packed row holds several
    parts = [group_rewards(model, prompt_ids[i : i + batch_size], response_ids[i : i + batch_size],
                           tokenizer.pad_token_id, device, max_length).cpu()
             for i in range(0, len(prompt_ids), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)
