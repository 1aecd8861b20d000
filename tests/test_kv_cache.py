"""The sampling KV cache with room reserved (``harness._core.kv_cache``): the same keys, values and samples as
transformers' dynamic cache, without copying the cache at every token."""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from harness._core.generation import cache_argument, generate_responses, generation_cache, left_pad
from harness._core.kv_cache import ReservedLayer, reserved_cache
from test_generation import prompt_ids, tiny_llama, tiny_tokenizer


def states(rows: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, 2, length, 4, generator=generator), torch.randn(rows, 2, length, 4, generator=generator))


def test_a_reserved_layer_holds_what_a_dynamic_layer_holds_through_growth_and_reindexing():
    reserved, dynamic = ReservedLayer(reserve=3), DynamicLayer()
    updates = [states(4, 5, 0)] + [states(4, 1, seed) for seed in range(1, 9)]  # a prompt, then 8 tokens: past the room
    buffers = set()
    for step, (keys, values) in enumerate(updates):
        if step == 4:  # what generate's prefill sharing does: rows re-indexed, the buffer replaced
            for layer in (reserved, dynamic):
                layer.batch_select_indices(torch.tensor([0, 0, 2, 3]))
        got, want = reserved.update(keys, values), dynamic.update(keys, values)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert reserved.get_seq_length() == dynamic.get_seq_length()
        buffers.add(reserved.keys.untyped_storage().data_ptr())
    assert len(buffers) < len(updates) / 2, "tokens within the room are written in place, not reallocated"


def test_a_layer_that_trains_through_its_cache_keeps_the_graph():
    layer = ReservedLayer(reserve=4)
    keys, values = (t.requires_grad_() for t in states(2, 3, 0))
    got_keys, got_values = layer.update(keys, values)
    (got_keys.sum() + got_values.sum()).backward()
    assert torch.equal(keys.grad, torch.ones_like(keys)) and torch.equal(values.grad, torch.ones_like(values))


def test_samples_are_the_same_with_the_reserved_cache_as_with_generates_own(monkeypatch):
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    grouped = [p for p in prompt_ids(tok)[:3] for _ in range(4)]  # rows repeat their prompt: prefilled once
    distinct = prompt_ids(tok)[:3]
    ids, mask = left_pad(grouped, pad_id=tok.pad_token_id)
    cache = generation_cache(model, ids, mask, reserve=10)[cache_argument()]
    assert any(isinstance(layer, ReservedLayer) for layer in cache.layers)

    def sample(prompts):
        return [generate_responses(model, tok, prompts, max_new_tokens=10, seed=5).response_ids,
                generate_responses(model, tok, prompts, max_new_tokens=10, row_seeds=range(len(prompts))).response_ids]

    with_reserve = sample(grouped) + sample(distinct)
    monkeypatch.setattr("harness._core.kv_cache.reserved_cache", lambda model, reserve: None)  # generate's own cache
    without = sample(grouped) + sample(distinct)
    assert all(torch.equal(a, b) for a, b in zip(with_reserve, without))


def test_no_reserved_cache_where_generate_would_not_build_a_dynamic_one():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    assert isinstance(reserved_cache(model, 8), DynamicCache)
    model.generation_config.cache_implementation = "static"
    assert reserved_cache(model, 8) is None
