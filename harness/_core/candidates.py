"""Which responses the annotators compare: the world's writers, samples of π_SFT, or both.

InstructGPT's labelers ranked *model outputs* — K responses sampled from the SFT model and
early policies (Ouyang et al. 2022, §3.4–3.5) — so the reward model learned to judge the text
the policy would produce. A reward model trained only on other writers' text judges a
distribution the policy never samples. Measured on the embedded world (seed 0): the default
RM reaches 0.70 held-out accuracy on world candidates, yet agrees with the gold judge on only
0.51 of the held-out (policy sample, SFT sample) pairs that gold does not tie — chance — and
PPO against it loses to SFT.

``candidates`` (a ``[feedback.<format>]`` option of :class:`harness._core.feedback.FeedbackOptions`) picks
the source:

- ``world``: ``world.candidate_responses`` (varied writers; the only choice for recorded data);
- ``sft``: K distinct samples of π_SFT per prompt. A prompt whose samples repeat is resampled
  (``RESAMPLE_ROUNDS``), and only then topped up from the world's writers;
- ``mixed``: ⌈K/2⌉ distinct π_SFT samples and the rest from the world's writers.

Samples are drawn with one seed per (prompt, round, slot), so the records are a function of the
run's seed and π_SFT alone, whatever the batching or the number of processes. Each record says
where each of its responses came from (``sources``).
"""
from __future__ import annotations

import hashlib
import random
from typing import Callable, Literal, Sequence

from harness._core.contracts import Prompt, World
from harness._core.generation import generate_responses
from harness._core.text import encode_prompt

Candidates = Literal["world", "sft", "mixed"]
# (prompt, k, rng) -> (k responses, where each came from: "sft" or "world")
CandidateSource = Callable[[Prompt, int, random.Random], tuple[list[str], list[str]]]
RESAMPLE_ROUNDS = 3  # extra sampling rounds for prompts whose samples repeat before topping up from the world
SFT, WORLD = "sft", "world"
TOP_UP_TRIES = 10  # draws of world candidates when some coincide with π_SFT's samples


def policy_share(mode: Candidates, k: int) -> int:
    """How many of an item's ``k`` responses are π_SFT samples under ``mode``."""
    return {"world": 0, "sft": k, "mixed": (k + 1) // 2}[mode]


def row_seed(seed: int, prompt_id: str, round_: int, slot: int) -> int:
    """A stable 63-bit seed for one sampled response (independent of batch composition)."""
    digest = hashlib.sha256(f"feedback-candidate|{seed}|{prompt_id}|{round_}|{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_distinct(model, tokenizer, world: World, prompts: Sequence[Prompt], n: int, *, seed: int,
                    max_new_tokens: int, temperature: float = 1.0, batch_size: int = 64) -> dict[str, list[str]]:
    """Up to ``n`` distinct, non-empty samples of ``model`` per prompt (prompt id → texts, in sampling order)."""
    found: dict[str, list[str]] = {p.id: [] for p in prompts}
    for round_ in range(1 + RESAMPLE_ROUNDS):
        rows = [(p, slot) for p in prompts for slot in range(n - len(found[p.id]))]
        if not rows:
            break
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ids = [encode_prompt(tokenizer, world.chat_text(p)) for p, _ in chunk]
            seeds = [row_seed(seed, p.id, round_, slot) for p, slot in chunk]
            texts = generate_responses(model, tokenizer, ids, max_new_tokens=max_new_tokens,
                                       temperature=temperature, row_seeds=seeds).texts
            for (p, _), text in zip(chunk, texts):
                if text.strip() and text not in found[p.id] and len(found[p.id]) < n:
                    found[p.id].append(text)
    return found


def candidate_source(world: World, mode: Candidates, samples: dict[str, list[str]] | None = None) -> CandidateSource:
    """``(prompt, k, rng) -> (responses, sources)``: π_SFT samples first, topped up with distinct world candidates."""
    def source(prompt: Prompt, k: int, rng: random.Random) -> tuple[list[str], list[str]]:
        own = list((samples or {}).get(prompt.id, []))[: policy_share(mode, k)]
        responses, sources = own, [SFT] * len(own)
        for _ in range(TOP_UP_TRIES):
            if len(responses) == k:
                break
            for text in world.candidate_responses(prompt, k, rng):
                if len(responses) < k and text not in responses:
                    responses.append(text)
                    sources.append(WORLD)
        if len(responses) < k:
            raise ValueError(f"could not gather {k} distinct responses to {prompt.id!r} for feedback")
        return responses, sources
    return source
