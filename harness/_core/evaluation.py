"""Held-out samples drawn once per run and shared by every evaluator.

One sample per held-out prompt from π_θ and from π_SFT (same seed, same settings), plus the
per-prompt KL of the policy's sample to π_SFT. Win rate, rewards and over-optimization
evaluators all read these, so they judge exactly the same responses. A policy that is a sampling
procedure (best-of-n; :class:`harness._core.contracts.PolicySampler`) answers the prompts itself.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch

from harness._core.config import EvaluationTable
from harness._core.contracts import Cell, DescribedEvaluator, EvalSamples, PolicySampler, Prompt, World
from harness._core.generation import generate_responses, sequence_logprobs
from harness._core.models import load_causal_lm
from harness._core.tables import deep_merge
from harness._core.text import encode_prompt


def draw_eval_samples(world: World, policy_dir: Path, sft_dir: Path, options: EvaluationTable, seed: int,
                      device: str | torch.device = "cpu", sampler: PolicySampler | None = None) -> EvalSamples:
    """Sample both models on the first ``options.prompts`` eval prompts; KL measured on the policy's samples.

    ``device``: where both models run (the run's GPU when it has one; a bf16 checkpoint of a real
    size would take minutes per batch on a CPU). ``sampler``: the optimizer's policy when it is a
    sampling procedure (best-of-n); it answers the prompts and says its KL, and ``policy_dir`` is not read.
    """
    prompts = world.prompts("eval")[: options.prompts]
    reference, tokenizer = load_causal_lm(sft_dir)
    reference = reference.to(device)
    sft_texts = sample_texts(reference, tokenizer, world, prompts, options, seed)
    if sampler is not None:
        texts, kl = sampler.respond(prompts, options, seed)
        return EvalSamples(tuple(prompts), tuple(texts), tuple(sft_texts), tuple(float(k) for k in kl))
    policy, tokenizer = load_causal_lm(policy_dir)
    return samples_from_models(world, policy.to(device), reference, tokenizer, prompts, sft_texts, options, seed)


def sample_texts(model, tokenizer, world: World, prompts: Sequence[Prompt], options: EvaluationTable,
                 seed: int) -> list[str]:
    """One sampled response per prompt (what π_SFT's side of every comparison is)."""
    return [t for b in _batches(prompts, options.batch_size) for t in _sample(model, tokenizer, world, b, options, seed).texts]


def samples_from_models(world: World, policy, reference, tokenizer, prompts: Sequence[Prompt],
                        sft_texts: Sequence[str], options: EvaluationTable, seed: int) -> EvalSamples:
    """Policy samples (and their KL to ``reference``) beside given SFT samples; models are used as they are
    in memory, so a policy can be evaluated in the middle of training."""
    policy_texts, kl = [], []
    for batch in _batches(prompts, options.batch_size):
        gen = _sample(policy, tokenizer, world, batch, options, seed)
        policy_texts += gen.texts
        kl += _sequence_kl(policy, reference, gen).tolist()
    return EvalSamples(tuple(prompts), tuple(policy_texts), tuple(sft_texts), tuple(kl))


def _batches(items: Sequence[Prompt], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sample(model, tokenizer, world: World, prompts: Sequence[Prompt], options: EvaluationTable, seed: int):
    ids = [encode_prompt(tokenizer, world.chat_text(p)) for p in prompts]
    return generate_responses(model, tokenizer, ids, max_new_tokens=options.max_new_tokens,
                              temperature=options.temperature, seed=seed)


@torch.inference_mode()
def _sequence_kl(policy, reference, gen) -> torch.Tensor:
    """Σ_t log π_θ(y_t) − log π_SFT(y_t) over each sampled response (a single-sample KL estimate)."""
    lp = sequence_logprobs(policy, gen.query_ids, gen.response_ids, gen.response_mask, query_mask=gen.query_mask)
    lr = sequence_logprobs(reference, gen.query_ids, gen.response_ids, gen.response_mask, query_mask=gen.query_mask)
    return ((lp - lr) * gen.response_mask).sum(-1)


def build_evaluators(registry, experiment, *, periodic_only: bool = False) -> dict[str, Any]:
    """Instances of the experiment's evaluators, in order (only those with ``periodic = True`` if asked)."""
    found = {}
    for name, options in experiment.evaluators.items():
        factory = registry.get("evaluator", name).factory
        if not periodic_only or getattr(factory, "periodic", False):
            found[name] = factory(options)
    return found


def run_evaluators(evaluators: dict[str, Any], ctx, samples: EvalSamples, *, describe: bool = False) -> dict[str, Any]:
    """Every evaluator on the same samples; their fragments deep-merged in order.

    With ``describe``, the fragment also carries ``headline``: the cells (:class:`harness._core.contracts.Cell`)
    each evaluator declares for its own fragment, as dicts with the evaluator's name — what the run
    summary and ``harness compare`` show, whatever the evaluator.
    """
    fragment: dict[str, Any] = {}
    cells: list[dict[str, Any]] = []
    for name, evaluator in evaluators.items():
        own = evaluator.evaluate(ctx, samples)
        deep_merge(fragment, own)
        if describe and isinstance(evaluator, DescribedEvaluator):
            cells += [cell_json(name, cell) for cell in evaluator.headline(own)]
    if describe:
        fragment["headline"] = cells
    return fragment


def cell_json(evaluator: str, cell: Cell) -> dict[str, Any]:
    """A cell as results.json keeps it, with its evaluator's name; ``per_prompt``, ``lead`` and ``compact`` only where given."""
    data = {"evaluator": evaluator, **dataclasses.asdict(cell)}
    for key, unset in (("per_prompt", None), ("lead", False), ("compact", "")):
        if data[key] == unset:
            del data[key]
    if cell.per_prompt is not None:
        data["per_prompt"] = list(cell.per_prompt)
    return data
