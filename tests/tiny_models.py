"""Tiny random Llamas saved in HF format: the base/SFT models of the stage, optimizer and data tests."""
from __future__ import annotations

from pathlib import Path


def save_tiny_llama(path: Path, tokenizer, *, hidden: int = 32, layers: int = 2, positions: int = 64,
                    tie: bool = False, pad_id: int | None = None, seed: int = 0) -> Path:
    """A randomly initialised Llama (2 heads, FFN 2×hidden) and ``tokenizer`` saved at ``path``; pad = EOS unless given."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=positions, tie_word_embeddings=tie,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id if pad_id is None else pad_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
