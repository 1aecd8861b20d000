"""``group_rewards``: a K-wise ranking's prompt computed once, the rewards and gradients of the one-pass forward."""
from __future__ import annotations

import pytest
import torch

from harness._core.reward_models import group_rewards, reward_sequence, sequence_rewards
from harness._core.text import encode_prompt, encode_response
from tests.test_generation import tiny_tokenizer


def tiny_reward_model(tok, attention: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, num_labels=1,
                         pad_token_id=tok.pad_token_id, attn_implementation=attention)
    return LlamaForSequenceClassification(config)


class Wrapped(torch.nn.Module):
    """A DDP-like wrapper (``.module``): its own forward must run, so the KV-cache path is taken, not packing."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, **kwargs):
        return self.module(**kwargs)


def groups(tok):
    """Prompts of different lengths, responses of different lengths, and one bare EOS (an empty answer)."""
    prompts = [encode_prompt(tok, t) for t in ["User: the cat Assistant:", "User: a Assistant:",
                                               "User: dog runs and sits Assistant:"]]
    answers = [["good", "bad yes no", "the a cat dog runs", ""], ["yes", "no"], ["cat sits", "", "dog", "a a a"]]
    return prompts, [[encode_response(tok, a) for a in group] for group in answers]


def one_pass(model, tok, prompts, responses, max_length):
    seqs = [reward_sequence(p, r, max_length) for p, rs in zip(prompts, responses) for r in rs]
    return sequence_rewards(model, seqs, tok.pad_token_id, "cpu")


@pytest.mark.parametrize("pad_is_eos,attention,wrapped", [(False, "sdpa", False), (True, "sdpa", False),
                                                            (False, "eager", False), (True, "sdpa", True)],
                         ids=["packed", "packed-pad-is-eos", "packed-eager", "kv-cache"])
def test_shared_prompts_give_the_one_pass_rewards_and_gradients(pad_is_eos, attention, wrapped):
    tok = tiny_tokenizer(pad_is_eos)
    model = tiny_reward_model(tok, attention).train()
    prompts, responses = groups(tok)
    loss_weights = torch.linspace(-1, 1, sum(map(len, responses)))

    shared = group_rewards(Wrapped(model) if wrapped else model, prompts, responses, tok.pad_token_id, "cpu",
                           max_length=64)
    (shared * loss_weights).sum().backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    alone = one_pass(model, tok, prompts, responses, 64)
    (alone * loss_weights).sum().backward()

    assert shared.shape == (10,)
    assert torch.allclose(shared, alone, atol=1e-5)
    assert not torch.allclose(alone[:4], alone[:4].mean(), atol=1e-4)  # the responses are told apart
    for a, b in zip(shared_grads, (p.grad for p in model.parameters())):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_bare_eos_is_read_where_the_one_pass_forward_reads_it():
    """pad = EOS: an empty answer has no token that is not the pad id, so both read the prompt's last token."""
    tok = tiny_tokenizer(pad_is_eos=True)
    model = tiny_reward_model(tok).eval()
    prompts, responses = groups(tok)
    with torch.no_grad():
        shared = group_rewards(model, prompts, responses, tok.pad_token_id, "cpu", max_length=64)
        prompt_only = sequence_rewards(model, [prompts[0]], tok.pad_token_id, "cpu")
    assert torch.allclose(shared[3], prompt_only[0], atol=1e-5)


def test_sequences_cut_to_max_length_take_the_one_pass_forward():
    """A cut sequence loses the start of its prompt, so its group no longer shares one: rewards stay the cut ones."""
    tok = tiny_tokenizer()
    model = tiny_reward_model(tok).eval()
    prompts, responses = groups(tok)
    with torch.no_grad():
        shared = group_rewards(model, prompts, responses, tok.pad_token_id, "cpu", max_length=6)
        cut = one_pass(model, tok, prompts, responses, 6)
        uncut = one_pass(model, tok, prompts, responses, 64)
    assert torch.equal(shared, cut)
    assert not torch.allclose(cut, uncut, atol=1e-4)


def test_a_mismatch_of_prompts_and_groups_is_an_error():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="2 prompts for 1 groups"):
        group_rewards(tiny_reward_model(tok), [[1], [2]], [[[3]]], tok.pad_token_id, "cpu", max_length=64)
