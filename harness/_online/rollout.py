"""Phase one of every online step: sample responses, score them, and remember what the update needs.

A rollout runs each model once, without gradients: π_θ (log-probs, entropy and — for a shared
critic — values), π_SFT (reference log-probs; not where the run loaded no reference) and a separate
critic. The update phase reuses these as the "old" quantities, so no forward pass is repeated. When
the update is one step on the whole batch (``on_policy``), π_θ's forward keeps its graph and that
step's loss is built on it: one policy forward per step instead of two (trl does the same at μ = 1).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Sequence

import torch

from harness._core import distributed
from harness._core.contracts import Prompt, WithDiagnostics
from harness._core.generation import generate_responses, sequence_logprobs, token_logprobs
from harness._core.stats import distinct_n
from harness._core.text import encode_prompt
from harness._online.advantages import explained_variance, global_masked_mean
from harness._online.memory import reference_modules, reward_modules, using

if TYPE_CHECKING:  # pragma: no cover
    from harness._online.run_state import RLRun


@dataclass
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
    # (log π_θ, entropy, V) with their graph, for the one on-policy update step (collect_rollout(on_policy=True))
    live: tuple[torch.Tensor, ...] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: torch.Tensor) -> "Rollout":
        """The sub-batch at ``index`` (a minibatch)."""
        picked = {f.name: getattr(self, f.name)[index] for f in fields(self)
                  if f.name not in ("prompts", "texts", "live") and getattr(self, f.name) is not None}
        picked["live"] = None if self.live is None else tuple(t[index] for t in self.live)
        self.live = None  # handed to the sub-batch: a graph serves one backward
        rows = index.tolist()
        return replace(self, prompts=[self.prompts[i] for i in rows], texts=[self.texts[i] for i in rows], **picked)

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


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(π(·|s_t)) per position, from (temperature-scaled) logits."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def policy_outputs(run: "RLRun", batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log π_θ(y_t), entropy, V(s_t)) for a Generation or Rollout: the forward of the rollout and of every update.

    A rollout (or minibatch) that carries its rollout forward's graph (``live``) hands it over once.
    """
    live = getattr(batch, "live", None)
    if live is not None:
        batch.live = None  # its graph serves one backward
        return live
    ids, mask = batch.response_ids, batch.response_mask
    logits, values = run.model(batch.query_ids, batch.query_mask, ids, mask)  # one forward of policy + critic
    logits = logits / run.options.temperature
    return token_logprobs(logits, ids) * mask, token_entropy(logits), values * mask


def process_rows(total: int, group: int = 1) -> list[int]:
    """This process's rows of a step's ``total``: every n-th group of ``group`` consecutive rows, so a
    prompt's samples stay in one process (with ``group`` = 1, every n-th row)."""
    rank, n = distributed.rank(), distributed.world_size()
    return [g * group + j for g in range(rank, total // group, n) for j in range(group)]


def step_prompts(pool: Sequence[Prompt], batch_size: int, seed: int, step: int, samples_per_prompt: int = 1) -> list[Prompt]:
    """The step's batch: ``batch_size / samples_per_prompt`` prompts, each repeated ``samples_per_prompt``
    times in a row (a group of k responses per prompt); with k = 1, exactly :func:`sample_prompts`."""
    if samples_per_prompt < 1 or batch_size % samples_per_prompt:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of samples_per_prompt {samples_per_prompt}")
    chosen = sample_prompts(pool, batch_size // samples_per_prompt, seed, step)
    return [p for p in chosen for _ in range(samples_per_prompt)]


@torch.no_grad()
def collect_rollout(run: "RLRun", step: int, samples_per_prompt: int = 1, on_policy: bool = False) -> Rollout:
    """Sample a response per prompt from π_θ, score it with the reward source, and run every model once.

    With ``samples_per_prompt`` = k, the batch is ``batch_size / k`` prompts with k responses each, a
    prompt's k rows next to each other (RLOO's and GRPO's groups; see :func:`step_prompts`).
    Launched as several processes, each takes every n-th prompt of the step's batch with its k samples
    (:func:`process_rows`; the global batch stays ``batch_size``); each response is sampled from its own
    seed (seed, step, index in the batch), so the batch's responses are the same whatever the number of
    processes. A run without a reference gets ``ref_logprobs = None``.

    ``on_policy``: the update is exactly one gradient step on the whole batch, so π_θ's forward here
    runs with gradients and the batch keeps it (``live``) for that step's loss, whose ratio to the
    "old" log-probs (the same numbers, detached) is then exactly 1.
    """
    everyone = step_prompts(run.prompts, run.options.batch_size, run.ctx.seed, step, samples_per_prompt)
    rows = process_rows(len(everyone), samples_per_prompt)
    prompts = [everyone[i] for i in rows]
    seeds = [sample_seed(run.ctx.seed, step, i) for i in rows]
    prompt_ids = [encode_prompt(run.tokenizer, run.ctx.world.chat_text(p)) for p in prompts]
    with run.timed("generation"), run.generation_policy() as policy:
        gen = generate_responses(policy, run.tokenizer, prompt_ids, max_new_tokens=run.options.max_new_tokens,
                                 temperature=run.options.temperature, row_seeds=seeds)
    with run.timed("reward"), using(run, reward_modules(run.reward)):  # offload_frozen: on the device only now
        scores = run.reward.score(prompts, gen.texts)
    with run.timed("policy"), torch.set_grad_enabled(on_policy):
        live = policy_outputs(run, gen)
    logprobs, entropy, values = (t.detach() for t in live)
    with run.timed("reference"):
        ref_logprobs = reference_logprobs(run, gen)
    return Rollout(prompts, gen.texts, gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask,
                   logprobs, ref_logprobs, values, entropy, torch.as_tensor(scores, dtype=torch.float32).to(values.device),
                   live=live if on_policy else None)


def reference_logprobs(run: "RLRun", gen) -> torch.Tensor | None:
    """log π_SFT(y_t) of a Generation or Rollout (no grad), or None when the run has no reference."""
    if run.reference is None:
        return None
    with torch.no_grad(), using(run, reference_modules(run)):
        return sequence_logprobs(run.reference, gen.query_ids, gen.response_ids, gen.response_mask, gen.query_mask,
                                 temperature=run.options.temperature)


def rollout_metrics(run: "RLRun", batch: Rollout, returns: torch.Tensor | None, name: str) -> dict[str, float]:
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
    if batch.kl is not None:
        metrics[f"{name}/kl"] = float(global_masked_mean(batch.kl, per_response))
    if returns is not None:
        metrics[f"{name}/explained_variance"] = explained_variance(batch.values, returns, batch.mask)
    if gold is not None:  # a world of real data has no gold judge: the metric is left out, never faked
        golds = torch.tensor([gold.score(p, t) for p, t in zip(batch.prompts, batch.texts)], dtype=torch.float32)
        metrics["reward/gold"] = float(global_masked_mean(golds, torch.ones_like(golds)))
    if isinstance(run.reward, WithDiagnostics):  # e.g. an ensemble's disagreement, a judge's cache hits
        metrics.update({k: float(v) for k, v in run.reward.diagnostics().items()})
    return metrics
