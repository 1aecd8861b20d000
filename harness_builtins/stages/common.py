"""Pieces the SFT stage and the reward-model stage share.

Every sequence is ``encode_prompt(chat_text(prompt)) + encode_response(response)`` (the
project's one tokenization convention, `harness.api`'s text), so SFT masks exactly the prompt
and the reward model reads what PPO generated (how a reward is read is the core's, in the
reward-model artifact: ``harness.api.score_texts``, which every reward source uses too).
Batches are right-padded; attention masks and SFT labels are built from lengths, never by
comparing with the pad id, because many tokenizers reuse EOS as pad and EOS is a real
(trained) token here.
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness.api import Prompt, World, encode_prompt, encode_response, generate_responses, pad_right

IGNORE = -100  # label of positions that carry no loss




def encode_pair(tokenizer, world: World, prompt: Prompt, response: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids with EOS) by the `harness.api`'s text convention."""
    return encode_prompt(tokenizer, world.chat_text(prompt)), encode_response(tokenizer, response)


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
    """(sum of next-token cross-entropy over labelled positions, number of those positions).

    Only the columns from the batch's first labelled token on go through the LM head
    (``logits_to_keep``): the shortest prompt's positions predict nothing that is trained, so their
    vocabulary projection and softmax were wasted work. The loss is the same sum over the same tokens.
    """
    labels = batch["labels"]
    first = first_labelled_column(labels)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=labels.shape[1] - first + 1).logits
    targets = labels[:, first:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return losses, int((targets != IGNORE).sum())


def first_labelled_column(labels: torch.Tensor) -> int:
    """The first column any row has a label in (≥ 1: token 0 is predicted by nothing); 1 when none has one."""
    labelled = (labels[:, 1:] != IGNORE).any(dim=0)
    return 1 + int(labelled.float().argmax()) if bool(labelled.any()) else 1


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
