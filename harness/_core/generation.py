"""The one place responses are sampled, and the one convention for scoring them token by token.

Rollouts (PPO, A2C) and evaluation all sample through :func:`generate_responses`, so a faster
engine (vLLM) replaces one function. Log-probs of those samples go through
:func:`response_forward`, which rebuilds exactly the padding, attention mask and position ids
that generation used; that is what makes log π_θ, log π_SFT and the sampler agree token for token.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from harness._core.packing import pack, packable
from harness._core.text import decode_response


@dataclass
class Generation:
    """A batch of sampled responses: the left-padded queries, the right-padded responses, their masks, their text."""

    query_ids: torch.Tensor  # [B, Q], left-padded with the pad id
    query_mask: torch.Tensor  # [B, Q], 1 on real prompt tokens
    response_ids: torch.Tensor  # [B, T], pad after the first EOS
    response_mask: torch.Tensor  # [B, T], 1 up to and including the first EOS
    texts: list[str]

    @property
    def lengths(self) -> torch.Tensor:
        """Response length in tokens (EOS included)."""
        return self.response_mask.sum(-1)


def pad_id_of(tokenizer) -> int:
    """The pad id, falling back to EOS for tokenizers saved without one."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def ensure_pad(tokenizer) -> None:
    """Batches need a pad id; reuse EOS when the tokenizer has none (padding is masked anyway)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) with prompts aligned on the right, so every response starts at the same column."""
    width = max(len(ids) for ids in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, prompt in enumerate(prompt_ids):
        if prompt:
            ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt):] = 1
    return ids, mask


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T], attention mask [B, T]) with sequences aligned on the left; ``fill`` overrides the value
    written into padding (e.g. −100 for labels)."""
    width = max(len(s) for s in seqs)
    value = pad_id if fill is None else fill
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def mask_through_eos(response_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on every token up to and including the first EOS, 0 after it (a response ends at its EOS)."""
    is_eos = (response_ids == eos_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # how many EOS strictly before each position
    return (eos_before == 0).long()


# Logits processors a model's saved generation_config could switch on, set to "off": the sampled
# distribution must be exactly softmax(logits / T) (after top-k/top-p), or PPO's log-probs would be wrong.
# min_new_tokens = 0 also overrides a saved min_length (transformers warns when both are passed).
_NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0,
            "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def _sampling_kwargs(do_sample: bool, temperature: float, top_k: int, top_p: float) -> dict:
    """Explicit settings, so a model's saved generation_config (e.g. top_k=50) never changes what we sample."""
    if not do_sample:
        return {"do_sample": False, **_NEUTRAL}
    return {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p, **_NEUTRAL}


def unwrap_model(model):
    """The bare HF model inside DDP / DeepSpeed (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        inner = getattr(model, "_orig_mod", None) if inner is None else inner
        if inner is None:
            return model
        model = inner


@contextmanager
def _eval_mode(model):
    """Sampling never uses dropout; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class RowSeededSampling:
    """A logits processor that samples each row from its own seeded stream (the Gumbel-max trick).

    argmax(log softmax(logits / T) + Gumbel noise) is an exact draw from softmax(logits / T); with
    the noise of row i drawn from a generator seeded by ``seeds[i]``, a response depends on its own
    seed only, not on which other prompts share its batch (so several processes, each sampling a
    slice of a batch, draw what one process would). Used with greedy decoding.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int, top_p: float):
        from transformers import TopKLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.warpers = ([TopKLogitsWarper(top_k)] if top_k > 0 else []) + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        return torch.log_softmax(scores, dim=-1) + gumbel


def generate_responses(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                       temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, do_sample: bool = True,
                       seed: int | None = None, row_seeds: Sequence[int] | None = None) -> Generation:
    """Sample one response per prompt (ids from ``encode_prompt``) with HF ``generate``.

    ``seed`` makes the sample reproducible without touching the global RNG; without it the global
    torch RNG is used (so a training run's checkpointed RNG state reproduces its rollouts).
    ``row_seeds`` (one per prompt) makes each response a function of its own seed alone
    (:class:`RowSeededSampling`), whatever else is in the batch.
    """
    model = unwrap_model(model)
    pad_id = pad_id_of(tokenizer)
    query_ids, query_mask = left_pad(prompt_ids, pad_id)
    query_ids, query_mask = query_ids.to(model.device), query_mask.to(model.device)
    cuda = [model.device] if model.device.type == "cuda" else []
    sampling = _sampling_kwargs(do_sample, temperature, top_k, top_p)
    if row_seeds is not None and do_sample:
        from transformers import LogitsProcessorList

        sampling = {**_sampling_kwargs(False, temperature, top_k, top_p),
                    "logits_processor": LogitsProcessorList([RowSeededSampling(row_seeds, temperature, top_k, top_p)])}
    with _eval_mode(model), torch.random.fork_rng(devices=cuda, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(input_ids=query_ids, attention_mask=query_mask, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, **sampling,
                             **generation_cache(model, query_ids, query_mask, max_new_tokens))
    response_ids = out[:, query_ids.shape[1]:]
    response_mask = mask_through_eos(response_ids, tokenizer.eos_token_id)
    response_ids = response_ids.masked_fill(response_mask == 0, pad_id)
    texts = [decode_response(tokenizer, row) for row in response_ids.tolist()]
    return Generation(query_ids, query_mask, response_ids, response_mask, texts)


def generation_cache(model, query_ids: torch.Tensor, query_mask: torch.Tensor, reserve: int) -> dict:
    """``generate``'s KV cache argument: room for the ``reserve`` tokens to come (``harness._core.kv_cache``), the
    prompts prefilled once where rows repeat them (:func:`prefilled_prompts`); empty for a model with its own cache."""
    from harness._core.kv_cache import reserved_cache

    cache = reserved_cache(model, reserve)
    prefilled = prefilled_prompts(model, query_ids, query_mask, cache)
    return prefilled or ({cache_argument(): cache} if cache is not None else {})


@torch.no_grad()
def prefilled_prompts(model, query_ids: torch.Tensor, query_mask: torch.Tensor, cache=None) -> dict:
    """``generate``'s KV cache with each distinct prompt run once, when rows repeat their prompt (k samples
    per prompt): all but the last prompt column, indexed out to every row, so ``generate`` starts from
    the last column as it would have. The samples are the same; the repeated prefill work is gone.
    The prompts go into ``cache`` when given. Empty (``generate`` prefills as usual) when nothing repeats."""
    owners = shared_prompt_owners(model, query_ids, query_mask)
    if owners is None or query_ids.shape[1] < 2:
        return {}
    firsts = first_rows(owners)
    prefill = model(input_ids=query_ids[firsts, :-1], attention_mask=query_mask[firsts, :-1],
                    position_ids=position_ids(query_mask)[firsts, :-1], use_cache=True, logits_to_keep=1,
                    **{cache_argument(): cache})
    cache = getattr(prefill, cache_argument())
    cache.batch_select_indices(owners)
    return {cache_argument(): cache}


# --------------------------------------------------------------------------- scoring samples
def _infer_query_mask(model, query_ids: torch.Tensor) -> torch.Tensor:
    """Mask of the leading pad run, when a caller has only the ids (pad id from the model's config)."""
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    if pad is None:
        return torch.ones_like(query_ids)
    return (query_ids != pad).long().cummax(dim=1).values


def response_inputs(query_ids, query_mask, response_ids, response_mask) -> dict[str, torch.Tensor]:
    """Model inputs for query + response with the position ids ``generate`` used (count of real tokens − 1)."""
    attention_mask = torch.cat([query_mask, response_mask], dim=1)
    return {"input_ids": torch.cat([query_ids, response_ids], dim=1), "attention_mask": attention_mask,
            "position_ids": position_ids(attention_mask)}


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """The position ids ``generate`` derives from a left-padded attention mask: real tokens counted from 0, pads 0."""
    return (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def response_forward(model, query_ids, response_ids, response_mask, query_mask=None, *, hidden: bool = False):
    """(logits, last hidden states or None) at the T positions that predict the T response tokens.

    Hidden states are the final (normed) layer, for a shared value head. A model that packs runs
    packed (:func:`packed_response_forward`): no padding, and each run of rows with the same prompt
    (GRPO's and RLOO's groups of k samples) one tree. Otherwise only those positions go through the LM
    head (``logits_to_keep``), which skips the prompt's vocabulary projection, and rows that repeat the
    row above's prompt share one forward of it (:func:`forward_sharing_prompts`). The same numbers to
    float rounding every way. Where a response's mask is 0 the values predict nothing (packed: states 0,
    logits the head's value at 0): weigh them by the mask.
    """
    if query_mask is None:
        query_mask = _infer_query_mask(model, query_ids)
    if packable(model) and _packs_as_trees(query_mask, response_mask):
        return packed_response_forward(model, query_ids, query_mask, response_ids, response_mask, hidden=hidden)
    owners = shared_prompt_owners(model, query_ids, query_mask)
    if owners is not None:
        return forward_sharing_prompts(model, query_ids, query_mask, response_ids, response_mask, owners, hidden=hidden)
    width = response_ids.shape[1]
    out = model(**response_inputs(query_ids, query_mask, response_ids, response_mask),
                logits_to_keep=width + 1, output_hidden_states=hidden, use_cache=False)
    states = out.hidden_states[-1][:, -width - 1:-1] if hidden else None
    return out.logits[:, :-1], states


def _packs_as_trees(query_mask: torch.Tensor, response_mask: torch.Tensor) -> bool:
    """Every prompt has a token and every response mask is a run of ones from column 0 (through EOS)."""
    columns = torch.arange(response_mask.shape[1], device=response_mask.device)
    contiguous = bool((response_mask == (columns < response_mask.sum(-1, keepdim=True))).all())
    return contiguous and bool(query_mask.any(-1).all())


def packed_response_forward(model, query_ids, query_mask, response_ids, response_mask, *, hidden: bool = False):
    """:func:`response_forward` as one packed forward (``harness._core.packing``).

    Each run of rows with the same prompt is a tree: the prompt once, then each row's response but its
    last token (which predicts nothing asked for). The logit predicting a response's first token is
    its prompt's last; the others are its own tokens'. They come back in the padded [B, T] layout.
    """
    rows, width = response_ids.shape
    lengths = response_mask.sum(-1).tolist()
    trees: list[tuple[list[int], list[int]]] = []  # (prompt, the rows that answer it)
    for row, starts_run in enumerate(prompt_run_starts(query_ids, query_mask).tolist()):
        if starts_run:
            trees.append((query_ids[row][query_mask[row].bool()].tolist(), [row]))
        else:
            trees[-1][1].append(row)
    branches = [[response_ids[row, : max(0, lengths[row] - 1)].tolist() for row in members] for _, members in trees]
    packed = pack([prompt for prompt, _ in trees], branches, pad_id=0)  # padding is never read: any id does
    index = torch.zeros(rows, width, dtype=torch.long)
    for t, (prompt, members) in enumerate(trees):
        for j, row in enumerate(members):
            at = packed.flat_positions(t, j)[len(prompt) - 1 :]
            index[row, : len(at)] = torch.tensor(at, dtype=torch.long)
    index, keep = index.to(query_ids.device).reshape(-1), response_mask.reshape(rows, width, 1).bool()

    def unpack(values: torch.Tensor) -> torch.Tensor:
        picked = values.reshape(-1, values.shape[-1])[index].reshape(rows, width, -1)
        return torch.where(keep, picked, picked.new_zeros(()))

    if plain_head(model):  # the LM head only where a response token is predicted, not on the prompts
        states = unpack(model.base_model(**packed.inputs(model, query_ids.device), use_cache=False).last_hidden_state)
        return model.get_output_embeddings()(states), (states if hidden else None)
    out = model(**packed.inputs(model, query_ids.device), use_cache=False, output_hidden_states=hidden)
    return unpack(out.logits), (unpack(out.hidden_states[-1]) if hidden else None)


def plain_head(model) -> bool:
    """True when ``model``'s logits are its output embedding applied to its trunk's last hidden state, nothing
    after it (no soft-capping or scaling of logits): checked once per model, on one token, in eval mode."""
    known = getattr(model, "_harness_plain_head", None)
    if known is None:
        head, was_training = model.get_output_embeddings(), model.training
        ids = torch.zeros((1, 1), dtype=torch.long, device=next(model.parameters()).device)
        try:
            with torch.no_grad():
                model.eval()
                known = head is not None and torch.allclose(
                    head(model.base_model(input_ids=ids).last_hidden_state), model(input_ids=ids).logits)
        finally:
            model.train(was_training)
        model._harness_plain_head = known
    return known


@lru_cache(maxsize=1)
def cache_argument() -> str:
    """What transformers calls the KV cache (argument and output): ``cache`` in 5.x, ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def shared_prompt_owners(model, query_ids: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor | None:
    """Row → index of its prompt among the distinct runs of equal consecutive prompts, or None when fewer
    than half the rows repeat the row above (nothing worth sharing) or the model cannot keep a KV cache
    in this mode (activation checkpointing in training turns the cache off)."""
    rows = query_ids.shape[0]
    if rows < 2 or not can_keep_cache(model):
        return None
    starts = prompt_run_starts(query_ids, query_mask)
    if 2 * int(starts.sum()) > rows:
        return None
    return starts.long().cumsum(0) - 1


def prompt_run_starts(query_ids: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    """True on each row whose prompt differs from the row above's (the first row included): where a run of
    rows sharing one prompt (GRPO's and RLOO's k samples) starts."""
    same = (query_ids[1:] == query_ids[:-1]).all(-1) & (query_mask[1:] == query_mask[:-1]).all(-1)
    return torch.cat([same.new_ones(1), ~same])


def can_keep_cache(model) -> bool:
    """False when the model cannot keep a KV cache in its current mode: activation checkpointing in training
    turns the cache off, so a forward that shares prompts through the cache must run in one pass."""
    inner = unwrap_model(model)
    checkpointing = getattr(inner, "is_activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = getattr(inner, "is_gradient_checkpointing", False)
    return not (checkpointing and inner.training)


def first_rows(owners: torch.Tensor) -> torch.Tensor:
    """True on the first row of each run of :func:`shared_prompt_owners` (the rows whose prompt is run)."""
    return torch.cat([owners.new_ones(1, dtype=torch.bool), owners[1:] != owners[:-1]])


def forward_sharing_prompts(model, query_ids, query_mask, response_ids, response_mask, owners: torch.Tensor, *,
                            hidden: bool = False):
    """:func:`response_forward` with each distinct prompt run once: its KV cache is indexed out to the rows
    that share it and the responses run on top (gradients flow back through the shared prompt).

    The logit that predicts a response's first token is the prompt's last; the other T − 1 come from
    the response forward over tokens 0..T−2, with the attention mask and position ids of the one-pass forward.
    """
    inputs = response_inputs(query_ids, query_mask, response_ids, response_mask)
    width, prompt_width = response_ids.shape[1], query_ids.shape[1]
    firsts = first_rows(owners)
    prompt = model(input_ids=query_ids[firsts], attention_mask=query_mask[firsts],
                   position_ids=inputs["position_ids"][firsts, :prompt_width], use_cache=True, logits_to_keep=1,
                   output_hidden_states=hidden)
    cache = getattr(prompt, cache_argument())
    logits = [prompt.logits[owners, -1:]]
    states = [prompt.hidden_states[-1][owners, -1:]] if hidden else []
    if width > 1:
        cache.batch_select_indices(owners)  # each row gets its prompt's keys and values
        rest = model(input_ids=response_ids[:, :-1], attention_mask=inputs["attention_mask"][:, :-1],
                     position_ids=inputs["position_ids"][:, prompt_width:-1], use_cache=True,
                     output_hidden_states=hidden, **{cache_argument(): cache})
        logits.append(rest.logits)
        states += [rest.hidden_states[-1]] if hidden else []
    return torch.cat(logits, 1), (torch.cat(states, 1) if hidden else None)


def log_softmax_at(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) in float32; at temperature 1 nothing is divided (x / 1 is x: the same numbers)."""
    logits = logits.float()
    return torch.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(ids) under softmax(logits / temperature): the distribution that was actually sampled."""
    return log_softmax_at(logits, temperature).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(model, query_ids, response_ids, response_mask, query_mask=None, *,
                      temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probs [B, T] of the responses under ``model`` (0 where the mask is 0).

    Pass ``query_mask=gen.query_mask``; without it the leading pad run is found from the model's pad id.
    """
    logits, _ = response_forward(model, query_ids, response_ids, response_mask, query_mask)
    return token_logprobs(logits, response_ids, temperature) * response_mask
