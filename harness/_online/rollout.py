"""Phase one of every online step: sample responses, score them, and remember what the update needs.

A rollout runs each model once, without gradients: π_θ (log-probs, entropy and — for a shared
critic — values), π_SFT (reference log-probs; not where the run loaded no reference) and a separate
critic. The update phase reuses these as the "old" quantities, so no forward pass is repeated. The
:class:`Rollout` also carries the batch's mean KL(π_θ‖π_SFT), the number β's controller and the
``<name>/kl`` metric read. When the update is one step on the whole batch (``on_policy``),
:func:`collect_rollout_and_forward` also returns π_θ's forward with its graph (a
:class:`PolicyForward`), and that step's loss is built on it: one policy forward per step instead
of two (trl does the same at μ = 1).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

import torch

from harness._core import distributed
from harness._core.contracts import Prompt, WithDiagnostics
from harness._core.generation import generate_responses, log_softmax_at, sequence_logprobs
from harness._core.stats import distinct_n
from harness._core.text import encode_prompt
from harness._online.objectives import explained_variance, global_masked_mean
from harness._online.run import RLRun


class PolicyForward(NamedTuple):
    """π_θ's forward over a batch: log π_θ(y_t), the entropy H(π_θ(·|s_t)) and V(s_t), each [B, T]."""

    logprobs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor

    def select(self, index: torch.Tensor) -> "PolicyForward":
        """The rows at ``index`` (a minibatch's), graph included."""
        return PolicyForward(*(t[index] for t in self))


@dataclass(frozen=True)
class Rollout:
    """One batch of experience; every tensor is [B, T] over response tokens except ``scores`` [B]."""

    prompts: list[Prompt]
    texts: list[str]
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor  # 1 up to and including EOS
    logprobs: torch.Tensor  # log π_θ_old(y_t)
    ref_logprobs: torch.Tensor | None  # log π_SFT(y_t); None when the run has no reference (β = 0 in GRPO, RLOO)
    values: torch.Tensor  # V_old(s_t)
    entropy: torch.Tensor  # H(π_θ_old(·|s_t))
    scores: torch.Tensor  # reward-model score per response
    # the mean of ``kl`` over the whole step's batch (every process): what β's controller and ``<name>/kl`` read;
    # None without a reference, and for a minibatch (``select``), which is not a step's batch
    mean_kl: float | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: torch.Tensor) -> "Rollout":
        """The sub-batch at ``index`` (a minibatch)."""
        rows = index.tolist()
        return replace(self, prompts=[self.prompts[i] for i in rows], texts=[self.texts[i] for i in rows],
                       query_ids=self.query_ids[index], query_mask=self.query_mask[index],
                       response_ids=self.response_ids[index], response_mask=self.response_mask[index],
                       logprobs=self.logprobs[index], values=self.values[index], entropy=self.entropy[index],
                       scores=self.scores[index], mean_kl=None,
                       ref_logprobs=None if self.ref_logprobs is None else self.ref_logprobs[index])

    @property
    def mask(self) -> torch.Tensor:
        return self.response_mask

    @property
    def kl(self) -> torch.Tensor | None:
        """Per-sequence Σ_t log π_θ − log π_SFT (the k1 estimate of KL(π_θ ‖ π_SFT)); None without a reference."""
        if self.ref_logprobs is None:
            return None
        return ((self.logprobs - self.ref_logprobs) * self.mask).sum(-1)


def sample_prompts(pool: Sequence[Prompt], batch_size: int, seed: int, step: int) -> list[Prompt]:
    """The prompts of one step: a function of (seed, step) only, so a resumed run sees the same ones."""
    rng = random.Random(f"{seed}:{step}")
    return rng.sample(list(pool), batch_size) if batch_size <= len(pool) else rng.choices(pool, k=batch_size)


def sample_seed(seed: int, step: int, index: int) -> int:
    """The sampling seed of the ``index``-th response of a step (the same in any process)."""
    return random.Random(f"{seed}:{step}:{index}").getrandbits(63)


def token_entropy(logp: torch.Tensor) -> torch.Tensor:
    """H(π(·|s_t)) per position, from the (temperature-scaled) log-probabilities over the vocabulary."""
    return -(logp.exp() * logp).sum(-1)


def policy_outputs(run: RLRun, batch) -> PolicyForward:
    """π_θ's (and the critic's) forward over a Generation or Rollout: the rollout's forward and every update's.

    One log-softmax serves the log-probs and the entropy (the same numbers as one each)."""
    ids, mask = batch.response_ids, batch.response_mask
    logits, values = run.model(batch.query_ids, batch.query_mask, ids, mask)  # one forward of policy + critic
    if run.options.temperature != 1.0:
        logits = logits / run.options.temperature
    logp = log_softmax_at(logits)
    logprobs = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return PolicyForward(logprobs * mask, token_entropy(logp), values * mask)


def process_rows(total: int, group: int = 1) -> list[int]:
    """This process's rows of a step's ``total``: every n-th group of ``group`` consecutive rows, so a
    prompt's samples stay in one process (with ``group`` = 1, every n-th row)."""
    rank, n = distributed.rank(), distributed.world_size()
    return [g * group + j for g in range(rank, total // group, n) for j in range(group)]


def encode_prompts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """:func:`encode_prompt` of each text, each distinct text tokenized once: a step's k samples per prompt
    share one list of ids (read only), so a group step tokenizes batch_size / k prompts, not batch_size."""
    encoded: dict[str, list[int]] = {}
    for text in texts:
        if text not in encoded:
            encoded[text] = encode_prompt(tokenizer, text)
    return [encoded[text] for text in texts]


def step_prompts(pool: Sequence[Prompt], batch_size: int, seed: int, step: int, samples_per_prompt: int = 1) -> list[Prompt]:
    """The step's batch: ``batch_size / samples_per_prompt`` prompts, each repeated ``samples_per_prompt``
    times in a row (a group of k responses per prompt); with k = 1, exactly :func:`sample_prompts`."""
    if samples_per_prompt < 1 or batch_size % samples_per_prompt:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of samples_per_prompt {samples_per_prompt}")
    chosen = sample_prompts(pool, batch_size // samples_per_prompt, seed, step)
    return [p for p in chosen for _ in range(samples_per_prompt)]


def collect_rollout(run: RLRun, step: int, samples_per_prompt: int = 1) -> Rollout:
    """Sample a response per prompt from π_θ, score it with the reward source, and run every model once, no grad.

    With ``samples_per_prompt`` = k, the batch is ``batch_size / k`` prompts with k responses each, a
    prompt's k rows next to each other (RLOO's and GRPO's groups; see :func:`step_prompts`).
    Launched as several processes, each takes every n-th prompt of the step's batch with its k samples
    (:func:`process_rows`; the global batch stays ``batch_size``); each response is sampled from its own
    seed (seed, step, index in the batch), so the batch's responses are the same whatever the number of
    processes. A run without a reference gets ``ref_logprobs = None`` (and ``mean_kl = None``).
    """
    batch, _ = collect_rollout_and_forward(run, step, samples_per_prompt, keep_graph=False)
    return batch


@torch.no_grad()
def collect_rollout_and_forward(run: RLRun, step: int, samples_per_prompt: int = 1,
                                keep_graph: bool = True) -> tuple[Rollout, PolicyForward | None]:
    """:func:`collect_rollout`, and π_θ's forward over the batch with its graph when ``keep_graph`` (else None).

    For an update that is exactly one gradient step on the whole batch (``on_policy``): that step's
    loss is built on the returned forward, whose ratio to the rollout's "old" log-probs (the same
    numbers, detached) is exactly 1. A graph serves one backward: pass it to that one step only.
    """
    everyone = step_prompts(run.prompts, run.options.batch_size, run.ctx.seed, step, samples_per_prompt)
    rows = process_rows(len(everyone), samples_per_prompt)
    prompts = [everyone[i] for i in rows]
    seeds = [sample_seed(run.ctx.seed, step, i) for i in rows]
    prompt_ids = encode_prompts(run.tokenizer, [run.ctx.world.chat_text(p) for p in prompts])
    with run.timed("generation"), run.generation_policy() as policy:
        gen = generate_responses(policy, run.tokenizer, prompt_ids, max_new_tokens=run.options.max_new_tokens,
                                 temperature=run.options.temperature, row_seeds=seeds)
    with run.timed("reward"), run.reward_on_device():  # offload_frozen: on the device only now
        scores = run.reward.score(prompts, gen.texts)
    with run.timed("policy"), torch.set_grad_enabled(keep_graph):
        forward = policy_outputs(run, gen)
    logprobs, entropy, values = (t.detach() for t in forward)
    with run.timed("reference"):
        ref_logprobs = reference_logprobs(run, gen)
    batch = Rollout(prompts, gen.texts, gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask,
                    logprobs, ref_logprobs, values, entropy,
                    torch.as_tensor(scores, dtype=torch.float32).to(values.device))
    if batch.kl is not None:  # the whole batch's mean per-sequence KL, once, for β and the metrics
        batch = replace(batch, mean_kl=float(global_masked_mean(batch.kl, torch.ones_like(batch.scores))))
    return batch, forward if keep_graph else None


def reference_logprobs(run: RLRun, gen) -> torch.Tensor | None:
    """log π_SFT(y_t) of a Generation or Rollout (no grad), or None when the run has no reference."""
    if run.reference is None:
        return None
    with torch.no_grad(), run.reference_on_device():
        return sequence_logprobs(run.reference, gen.query_ids, gen.response_ids, gen.response_mask, gen.query_mask,
                                 temperature=run.options.temperature)


def rollout_metrics(run: RLRun, batch: Rollout, returns: torch.Tensor | None, name: str) -> dict[str, float]:
    """What every online optimizer reports about its samples. Gold reward is measured, never optimized.

    Every number is over the whole batch, also when processes hold slices of it. ``returns`` are the
    critic's regression targets (for ``<name>/explained_variance``); None for an optimizer without a critic.
    ``<name>/kl`` is left out when the run has no reference (it is not measured, never faked).
    """
    gold = run.gold
    per_response = torch.ones_like(batch.scores)
    texts = [t for part in distributed.gather_objects(batch.texts) for t in part]
    metrics = {
        "reward/proxy": float(global_masked_mean(batch.scores, per_response)),
        f"{name}/kl_coef": float(run.kl_ctl.value),
        "policy/entropy": float(global_masked_mean(batch.entropy, batch.mask)),
        "policy/response_len": float(global_masked_mean(batch.mask.sum(-1).float(), per_response)),
        "policy/distinct_2": distinct_n(texts, 2),
    }
    if batch.mean_kl is not None:
        metrics[f"{name}/kl"] = batch.mean_kl
    if returns is not None:
        metrics[f"{name}/explained_variance"] = explained_variance(batch.values, returns, batch.mask)
    if gold is not None:  # a world of real data has no gold judge: the metric is left out, never faked
        golds = torch.tensor([gold.score(p, t) for p, t in zip(batch.prompts, batch.texts)], dtype=torch.float32)
        metrics["reward/gold"] = float(global_masked_mean(golds, torch.ones_like(golds)))
    if isinstance(run.reward, WithDiagnostics):  # e.g. an ensemble's disagreement, a judge's cache hits
        metrics.update({k: float(v) for k, v in run.reward.diagnostics().items()})
    return metrics
