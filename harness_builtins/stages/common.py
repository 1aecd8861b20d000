"""Pieces the SFT stage, the reward-model stage and the learned reward source share.

Every sequence is ``encode_prompt(chat_text(prompt)) + encode_response(response)`` (the
project's one tokenization convention, `harness.api`'s text), so SFT masks exactly the prompt,
the reward model reads what PPO generated, and the learned reward scores it the same way.
Batches are right-padded; attention masks and SFT labels are built from lengths, never by
comparing with the pad id, because many tokenizers reuse EOS as pad and EOS is a real
(trained) token here.
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness.api import Prompt, World, encode_prompt, encode_response, generate_responses
from harness.api import save_model, seed_everything  # noqa: F401  (the core's; the stages import them from here)

IGNORE = -100  # label of positions that carry no loss


def ensure_pad(tokenizer) -> None:
    """Batches need a pad id; reuse EOS when the tokenizer has none (padding is masked anyway)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def encode_pair(tokenizer, world: World, prompt: Prompt, response: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids with EOS) by the `harness.api`'s text convention."""
    return encode_prompt(tokenizer, world.chat_text(prompt)), encode_response(tokenizer, response)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T], attention mask [B, T]); ``fill`` overrides the value written into padding."""
    width = max(len(s) for s in seqs)
    value = pad_id if fill is None else fill
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def lm_batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """Causal-LM batch whose labels are −100 on prompt positions and padding.

    Over-long examples lose their tail (the prompt is kept whole), so the model is never
    trained to predict a prompt token.
    """
    inputs, labels = [], []
    for prompt_ids, response_ids in examples:
        seq = (prompt_ids + response_ids)[:max_length]
        inputs.append(seq)
        labels.append(([IGNORE] * len(prompt_ids) + response_ids)[: len(seq)])
    input_ids, attention_mask = pad_right(inputs, pad_id)
    label_ids, _ = pad_right(labels, pad_id, fill=IGNORE)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}


def token_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over labelled positions, number of those positions)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return losses, int((targets != IGNORE).sum())


# ----------------------------------------------------------------- reward read-out
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


@torch.no_grad()
def score_texts(model, tokenizer, world: World, prompts: Sequence[Prompt], responses: Sequence[str], *,
                max_length: int, batch_size: int, device=None) -> torch.Tensor:
    """Rewards of (prompt, response) texts on CPU, read exactly as in reward-model training."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    seqs = [reward_sequence(*encode_pair(tokenizer, world, p, r), max_length) for p, r in zip(prompts, responses)]
    parts = [sequence_rewards(model, seqs[i : i + batch_size], tokenizer.pad_token_id, device).cpu()
             for i in range(0, len(seqs), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)


def prepare_reward_model(model, tokenizer) -> None:
    """HF's pooled read-out finds the last token through ``config.pad_token_id``, so it must be set."""
    ensure_pad(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id


# ----------------------------------------------------------------- sampling
def sample_responses(model, tokenizer, world: World, prompts: Sequence[Prompt], *, max_new_tokens: int = 32,
                     temperature: float = 1.0, seed: int = 0, batch_size: int = 32) -> list[str]:
    """One sampled response per prompt through the project's generation seam (reproducible from ``seed``)."""
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        ids = [encode_prompt(tokenizer, world.chat_text(p)) for p in prompts[start : start + batch_size]]
        texts += generate_responses(model, tokenizer, ids, max_new_tokens=max_new_tokens, temperature=temperature,
                                    seed=seed + start).texts
    return texts
