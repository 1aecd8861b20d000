"""A KV cache for sampling that keeps room for the tokens still to come, so a step writes its keys in place.

transformers' ``DynamicCache`` grows by ``torch.cat``: at every generated token each layer copies its
whole cache into a new tensor, work that grows with the prompt and the response. On the CPU at the
embedded world's size that copy was the largest operator after the matmuls in a GRPO step (11% of
its operator time, docs/performance.md). :class:`ReservedLayer` allocates the prompt's length plus
``reserve`` positions once and hands attention a view of the filled part; the keys and values are the
same numbers, so the samples are the same. Used for sampling only (``generate`` runs without
gradients): a forward that trains through its cache keeps transformers' own layers.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of buffers with ``reserve`` free positions.

    When the next tokens do not fit, or when something replaced ``keys`` (``batch_select_indices``,
    ``crop``, ``reset``: the inherited methods assign new tensors), the buffers are allocated again
    around what the layer holds, with ``reserve`` positions free: one copy, where ``cat`` copies at every token.
    """

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self._key_buffer = self._value_buffer = self._view = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if key_states.requires_grad and torch.is_grad_enabled():  # in-place writes would break the graph
            return super().update(key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held, new = self.get_seq_length(), key_states.shape[-2]
        if self.keys is not self._view or held + new > self._key_buffer.shape[-2]:  # replaced, or full
            self._key_buffer = self._with_room(self.keys, key_states, held, held + new + self.reserve)
            self._value_buffer = self._with_room(self.values, value_states, held, held + new + self.reserve)
        self._key_buffer[..., held:held + new, :].copy_(key_states)
        self._value_buffer[..., held:held + new, :].copy_(value_states)
        self.keys = self._view = self._key_buffer[..., :held + new, :]
        self.values = self._value_buffer[..., :held + new, :]
        return self.keys, self.values

    @staticmethod
    def _with_room(held_states: torch.Tensor, new_states: torch.Tensor, held: int, length: int) -> torch.Tensor:
        """A buffer of ``length`` positions (new_states' other dimensions) holding the ``held`` states in front."""
        shape = (*new_states.shape[:-2], length, new_states.shape[-1])
        buffer = new_states.new_empty(shape)
        if held:
            buffer[..., :held, :].copy_(held_states)
        return buffer


def reserved_cache(model, reserve: int) -> DynamicCache | None:
    """The cache ``generate`` would build for ``model`` (a ``DynamicCache`` from its config), with every plain
    layer a :class:`ReservedLayer` keeping ``reserve`` positions free; None where ``generate`` would not build a
    ``DynamicCache`` (a model with its own cache, or a ``cache_implementation`` set in its generation config)."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    if supports is None or not supports():
        return None
    if getattr(getattr(model, "generation_config", None), "cache_implementation", None) is not None:
        return None
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    cache.layers = [ReservedLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
