"""PPO-ptx (InstructGPT eq. 2): mix the pretraining objective γ·E_{x∼D_pretrain}[log π_θ(x)] into RL.

RL against a reward model erodes what the model knew (the "alignment tax"); a language-model
loss on pretraining text, weighted by ``ptx_coef``, pulls it back. Each update draws a fresh
batch of pretraining texts (from the global torch RNG, which checkpoints restore).
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness._core.errors import HarnessError
from harness._core.generation import pad_id_of
from harness._core.text import encode_prompt


class PretrainingBatches:
    """Random batches of pretraining texts, tokenized as BOS + text + EOS and truncated."""

    def __init__(self, texts: Sequence[str], tokenizer, batch_size: int, max_len: int):
        if not texts:
            raise HarnessError("ptx_coef > 0 needs pretraining texts, but the world has none; set ptx_coef = 0.")
        self.texts, self.tokenizer = list(texts), tokenizer
        self.batch_size, self.max_len = batch_size, max_len

    def sample(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask), right-padded."""
        picks = torch.randint(len(self.texts), (self.batch_size,)).tolist()
        rows = [(encode_prompt(self.tokenizer, self.texts[i]) + [self.tokenizer.eos_token_id])[: self.max_len]
                for i in picks]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_id_of(self.tokenizer), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
        return ids.to(device), mask.to(device)


def ptx_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−mean log π_θ(x_t | x_<t) over the real tokens of a pretraining batch."""
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
