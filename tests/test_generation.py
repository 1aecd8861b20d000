"""``generate_responses`` and the log-prob convention built on it, on a tiny random Llama."""
from __future__ import annotations

import pytest
import torch

from harness._core.generation import (generate_responses, left_pad, mask_through_eos, prefilled_prompts, response_forward,
                                sequence_logprobs, shared_prompt_owners, token_logprobs, unwrap_model)
from harness._core.text import decode_response, encode_prompt

WORDS = "good bad yes no the a cat dog runs sits".split()


def tiny_tokenizer(pad_is_eos: bool = False):
    """Word-level tokenizer; ``pad_is_eos`` mimics tokenizers that pad with EOS (GPT-2 style)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", "User:", "Assistant:", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>" if pad_is_eos else "<pad>")


def tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


def prompt_ids(tok):
    texts = ["User: the cat Assistant:", "User: a Assistant:", "User: dog runs and sits Assistant:"] * 8
    return [encode_prompt(tok, t) for t in texts]


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_responses_are_masked_and_padded_after_the_first_eos(pad_is_eos):
    tok = tiny_tokenizer(pad_is_eos)
    gen = generate_responses(tiny_llama(len(tok)), tok, prompt_ids(tok), max_new_tokens=20, seed=3)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ended = 0
    for ids, mask, text in zip(gen.response_ids.tolist(), gen.response_mask.tolist(), gen.texts):
        end = ids.index(eos) + 1 if eos in ids else len(ids)
        ended += end < len(ids)
        assert mask == [1] * end + [0] * (len(ids) - end)
        assert ids[end:] == [pad] * (len(ids) - end)
        assert text == decode_response(tok, ids)
    assert ended > 0, "the test needs some responses that stop before max_new_tokens"
    assert gen.lengths.tolist() == gen.response_mask.sum(-1).tolist()


def test_queries_are_left_padded_so_responses_start_in_one_column():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert mask_through_eos(torch.tensor([[3, 2, 4, 2], [3, 4, 4, 4]]), eos_id=2).tolist() == [[1, 1, 0, 0],
                                                                                              [1, 1, 1, 1]]


def test_a_seed_reproduces_the_sample_and_leaves_the_global_rng_alone():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate_responses(model, tok, prompt_ids(tok), max_new_tokens=8, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = generate_responses(model, tok, prompt_ids(tok), max_new_tokens=8, seed=7)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    greedy = generate_responses(model, tok, prompt_ids(tok), max_new_tokens=8, do_sample=False)
    assert greedy.response_ids.shape[0] == len(prompt_ids(tok))


@pytest.fixture(params=[True, False], ids=["packed", "padded"])
def packing(request, monkeypatch):
    """Run a test with ``response_forward`` packing (the default for a bare HF model) and without it."""
    import harness._core.generation as generation

    if not request.param:
        monkeypatch.setattr(generation, "packable", lambda model: False)
    return request.param


def test_logprobs_of_padded_batches_equal_those_of_each_sequence_alone(packing):
    """Left padding, masks and position ids must not change a single log-prob (PPO ratios depend on it)."""
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    prompts = prompt_ids(tok)[:3]
    gen = generate_responses(model, tok, prompts, max_new_tokens=10, seed=1)
    batched = sequence_logprobs(model, gen.query_ids, gen.response_ids, gen.response_mask, gen.query_mask)
    for row, prompt in enumerate(prompts):
        n = int(gen.response_mask[row].sum())
        response = gen.response_ids[row, :n]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + response.tolist()])).logits[0, len(prompt) - 1:-1]
        assert torch.allclose(batched[row, :n], token_logprobs(logits, response), atol=1e-5)
        assert (batched[row, n:] == 0).all()


def grouped_samples(tok, model, k: int = 4):
    """k samples of each of three prompts, a prompt's rows next to each other (GRPO's and RLOO's layout)."""
    prompts = [p for p in prompt_ids(tok)[:3] for _ in range(k)]
    return generate_responses(model, tok, prompts, max_new_tokens=10, seed=2)


def test_rows_sharing_a_prompt_get_the_log_probs_and_gradients_of_a_one_pass_forward(packing):
    """Groups run each prompt once (packed, or reusing its KV cache): same log-probs, hidden states and gradients."""
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    gen = grouped_samples(tok, model)
    assert shared_prompt_owners(model, gen.query_ids, gen.query_mask).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    logits, hidden = response_forward(model, gen.query_ids, gen.response_ids, gen.response_mask, gen.query_mask,
                                      hidden=True)
    (token_logprobs(logits, gen.response_ids) * gen.response_mask).sum().backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for row in range(len(gen.texts)):  # one row at a time: nothing to share, the one-pass forward
        one = slice(row, row + 1)
        assert shared_prompt_owners(model, gen.query_ids[one], gen.query_mask[one]) is None
        alone, alone_hidden = response_forward(model, gen.query_ids[one], gen.response_ids[one],
                                               gen.response_mask[one], gen.query_mask[one], hidden=True)
        n = int(gen.response_mask[row].sum())
        assert torch.allclose(logits[row, :n], alone[0, :n], atol=1e-5)
        assert torch.allclose(hidden[row, :n], alone_hidden[0, :n], atol=1e-5)
        (token_logprobs(alone, gen.response_ids[one]) * gen.response_mask[one]).sum().backward()
    for shared, alone in zip(shared_grads, (p.grad for p in model.parameters())):
        assert torch.allclose(shared, alone, atol=1e-5)


def test_k_samples_per_prompt_are_those_each_row_draws_alone():
    """``generate`` starts from one prefill per distinct prompt; each row's sample is still its own seed's."""
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    prompts = [p for p in prompt_ids(tok)[:3] for _ in range(4)]
    seeds = list(range(100, 112))
    ids, mask = left_pad(prompts, pad_id=tok.pad_token_id)
    assert prefilled_prompts(model, ids, mask)  # the grouped batch is prefilled once per prompt
    grouped = generate_responses(model, tok, prompts, max_new_tokens=10, row_seeds=seeds)
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        alone = generate_responses(model, tok, [prompt], max_new_tokens=10, row_seeds=[seed])
        assert grouped.texts[row] == alone.texts[0]


def test_prompts_are_shared_only_where_rows_repeat_them():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    ids, mask = left_pad(prompt_ids(tok)[:4], pad_id=tok.pad_token_id)  # four different prompts
    assert shared_prompt_owners(model, ids, mask) is None
    pairs = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    assert shared_prompt_owners(model, *pairs).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    model.train()  # HF turns the KV cache off under activation checkpointing: the one-pass forward runs
    assert shared_prompt_owners(model, *pairs) is None


def test_generation_unwraps_a_wrapped_model():
    class Wrapper(torch.nn.Module):  # what DDP / DeepSpeed engines look like from outside
        def __init__(self, module):
            super().__init__()
            self.module = module

    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    assert unwrap_model(Wrapper(Wrapper(model))) is model
    model.train()
    gen = generate_responses(Wrapper(model), tok, prompt_ids(tok)[:2], max_new_tokens=4, seed=0)
    assert len(gen.texts) == 2 and model.training  # sampled in eval mode, mode restored


def test_a_models_saved_generation_settings_do_not_change_the_sampled_distribution():
    """Log-probs assume softmax(logits / T); a saved repetition penalty or top-k must not apply."""
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    plain = generate_responses(model, tok, prompt_ids(tok), max_new_tokens=8, seed=5)
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.top_k = 2
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.min_length = 40  # would forbid EOS for the whole response
    assert torch.equal(generate_responses(model, tok, prompt_ids(tok), max_new_tokens=8, seed=5).response_ids,
                       plain.response_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_log_probs_and_entropy_share_one_log_softmax_with_the_same_numbers(temperature):
    from types import SimpleNamespace

    from harness._core.generation import log_softmax_at
    from harness._online.rollout import policy_outputs

    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 5)
    assert torch.equal(log_softmax_at(logits, temperature), torch.log_softmax(logits.float() / temperature, dim=-1))
    assert torch.equal(token_logprobs(logits, ids, temperature),
                       torch.log_softmax(logits / temperature, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1))
    run = SimpleNamespace(model=lambda *inputs: (logits, torch.zeros(3, 5)),
                          options=SimpleNamespace(temperature=temperature))
    batch = SimpleNamespace(query_ids=None, query_mask=None, response_ids=ids, response_mask=mask)
    logprobs, entropy, _ = policy_outputs(run, batch)
    logp = torch.log_softmax(logits / temperature, -1)
    assert torch.equal(logprobs, logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1))
    assert torch.equal(entropy, -(logp.exp() * logp).sum(-1))
