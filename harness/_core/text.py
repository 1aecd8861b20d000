"""One convention for where a prompt ends and a response begins, shared by every stage.

A prompt is the world's ``chat_text`` (ending in ``Assistant:``); a response is tokenized
separately as ``" " + response`` and closed with EOS. Tokenizing the two halves apart (rather
than the joined string) keeps the boundary exact under BPE, so SFT masks exactly the prompt,
the reward model reads exactly what PPO generated, and log-probs line up token for token.
"""
from __future__ import annotations

from typing import Sequence


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Token ids of the conditioning text (BOS first where the tokenizer has one)."""
    ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None and bos != tokenizer.eos_token_id else []) + list(ids)


def encode_response(tokenizer, response: str, *, eos: bool = True) -> list[int]:
    """Token ids of a response, with the leading space and (by default) EOS."""
    ids = list(tokenizer(" " + response.strip(), add_special_tokens=False)["input_ids"])
    return ids + ([tokenizer.eos_token_id] if eos else [])


def decode_response(tokenizer, ids: Sequence[int]) -> str:
    """Text of generated response ids, cut at the first EOS."""
    ids = list(ids)
    eos = tokenizer.eos_token_id
    if eos in ids:
        ids = ids[: ids.index(eos)]
    pad = tokenizer.pad_token_id
    ids = [i for i in ids if i != pad]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()
