"""Packed forwards (``harness._core.packing``): trees laid into rows, each token seeing only its own sequence."""
from __future__ import annotations

import torch

from harness._core.packing import pack, packable
from tests.test_generation import tiny_llama
from tests.test_group_rewards import Wrapped


def test_trees_share_rows_and_each_token_sees_only_its_prefix_and_its_branch():
    # tree 0: 6 tokens; tree 1: 3; tree 2: 2 -> rows of 6: [tree 0], [tree 1, tree 2]
    packed = pack([[10, 11], [20], [30]], [[[12, 13], [14, 15]], [[21, 22]], []], pad_id=0)
    assert packed.input_ids.tolist() == [[10, 11, 12, 13, 14, 15], [20, 21, 22, 30, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 2, 3], [0, 1, 2, 0, 0, 0]]
    assert packed.prefix_at == [(0, 0, 2), (1, 0, 1), (1, 3, 1)]
    assert packed.branch_at == [[(0, 2, 2), (0, 4, 2)], [(1, 1, 2)], []]
    seen = packed.visible[0].int().tolist()
    assert seen[4] == [1, 1, 0, 0, 1, 0]  # branch 2's first token: the prefix and itself, not branch 1
    assert seen[5] == [1, 1, 0, 0, 1, 1]
    assert packed.visible[1, 3].int().tolist() == [0, 0, 0, 1, 0, 0]  # tree 2 does not see tree 1
    assert packed.visible[1, 5].int().tolist() == [0, 0, 0, 0, 0, 1]  # padding sees only itself
    assert packed.flat_positions(0, 1) == [0, 1, 4, 5]
    assert packed.flat_positions(2) == [6 + 3]


def test_a_packed_forward_computes_each_sequence_as_alone():
    model = tiny_llama(vocab_size=40)
    prefixes, branches = [[1, 5, 6, 7], [1, 8]], [[[9, 10, 2], [11, 2]], [[12, 13, 14, 2]]]
    packed = pack(prefixes, branches, pad_id=0)
    with torch.no_grad():
        logits = model(**packed.inputs(model, "cpu")).logits.reshape(-1, 40)
        for t, its_branches in enumerate(branches):
            for j, branch in enumerate(its_branches):
                alone = model(input_ids=torch.tensor([prefixes[t] + branch])).logits[0]
                assert torch.allclose(logits[packed.flat_positions(t, j)], alone, atol=1e-5)


def test_only_a_bare_model_whose_attention_takes_a_mask_packs():
    model = tiny_llama(vocab_size=40)
    assert packable(model)
    assert not packable(Wrapped(model))
    model.config._attn_implementation = "flash_attention_2"
    assert not packable(model)


def test_the_head_is_applied_alone_only_when_nothing_follows_it():
    """``response_forward`` packs and runs the LM head only where a response token is predicted; a model whose
    forward changes the logits after the head (soft-capping, scaling) keeps its own forward."""
    from harness._core.generation import plain_head

    class Capped(type(tiny_llama(vocab_size=40))):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = 30 * torch.tanh(out.logits / 30)
            return out

    model = tiny_llama(vocab_size=40)
    capped = Capped(model.config)
    assert plain_head(model) and not plain_head(capped)
    assert model.training is False and getattr(capped, "_harness_plain_head") is False  # checked once, mode kept

