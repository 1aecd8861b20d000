"""``EmbeddedWorld``: the offline default world, a simulated InstructGPT on a 2-core CPU.

It ties the pieces together behind the ``harness.api.World`` protocol; everything is
derived from ``(options, seed)`` and computed lazily, so constructing a world is free and two
worlds with the same seed and options are identical.
"""
from __future__ import annotations

import random
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness.api import Demonstration, Options, Prompt, Split

from .annotators import SimulatedAnnotator, make_annotators
from .corpus import Doc, corpus, design_counts
from .facts import Facts, make_facts
from .gold import GoldJudge
from .prompts import SPLITS, build_splits, chat_text
from .responses import DEMONSTRATORS, distinct_responses

# Options that change the pretraining corpus, hence the base models and their cache key. ``design`` joins
# the key only when it is not 4, so design 4's key, and with it its shipped weights, stay what they were.
CORPUS_FIELDS = ("n_countries", "n_things", "eval_size", "harmful_fraction", "corpus_paragraphs", "corpus_dialogues",
                 "corpus_quiz")
DEFAULT_DESIGN = 4


class EmbeddedOptions(Options):
    """The ``[world.embedded]`` table."""

    sft_size: int = Field(2000, ge=1, description="Prompts in the `sft` split (each gets one demonstration).")
    rm_size: int = Field(1500, ge=1, description="Prompts in the `rm` split (feedback collection).")
    rl_size: int = Field(1000, ge=1, description="Prompts in the `rl` split (policy optimization).")
    eval_size: int = Field(200, ge=1, description="Held-out `eval` prompts; their phrasings appear in no training data.")
    harmful_fraction: float = Field(0.13, ge=0.0, le=0.9, description="Share of each split that is a harmful request to decline.")
    n_countries: int = Field(32, ge=4, le=200, description="Fictional countries (and capitals) the corpus teaches.")
    n_things: int = Field(24, ge=4, le=200, description="Fictional objects with a colour the corpus teaches.")
    n_annotators: int = Field(10, ge=2, le=100, description="Simulated annotators in the pool.")
    corpus_paragraphs: int = Field(6000, ge=10, description="Fact paragraphs (4 sentences) in the pretraining corpus.")
    corpus_dialogues: int = Field(3000, ge=10, description="Chat dialogues (mixed-quality replies) in the pretraining corpus "
                                                             "(design 5: as many prose documents instead).")
    corpus_quiz: int = Field(3000, ge=0, description="Quiz pages (a training-pool question and its true answer, plain text) in the pretraining corpus.")
    heldout_docs: int = Field(400, ge=10, description="Held-out documents for perplexity (design 4: half facts, half "
                                                      "dialogues; design 5: prose in the training corpus's mix).")
    design: Literal[4, 5] = Field(DEFAULT_DESIGN, description="The world's design (docs/world.md): 4, the base corpus holds "
                                                              "chat dialogues; 5, prose only, so SFT teaches the chat format.")


class EmbeddedWorld:
    """A seeded simulated InstructGPT: fictional facts, five task kinds, annotators, gold judge, tiny LMs."""

    name = "embedded"
    Options = EmbeddedOptions

    def __init__(self, options: EmbeddedOptions | None = None, seed: int = 0) -> None:
        self.options = options if options is not None else EmbeddedOptions()
        self.seed = int(seed)

    # ---------------------------------------------------------------- world content
    @cached_property
    def facts(self) -> Facts:
        return make_facts(self.seed, self.options.n_countries, self.options.n_things)

    @cached_property
    def _splits(self) -> dict[str, list[Prompt]]:
        o = self.options
        sizes = {"sft": o.sft_size, "rm": o.rm_size, "rl": o.rl_size, "eval": o.eval_size}
        return build_splits(self.facts, self.seed, sizes, o.harmful_fraction)

    def chat_text(self, prompt: Prompt) -> str:
        return chat_text(prompt.text)

    def prompts(self, split: Split) -> list[Prompt]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        return list(self._splits[split])

    def demonstrations(self) -> list[Demonstration]:
        rng = random.Random(f"embedded-demos-{self.seed}")
        out = []
        for prompt in self._splits["sft"]:
            writer = rng.choice(DEMONSTRATORS)
            out.append(Demonstration(prompt, writer.write(self.facts, prompt, rng), writer.name))
        return out

    def candidate_responses(self, prompt: Prompt, k: int, rng: random.Random) -> list[str]:
        return distinct_responses(self.facts, prompt, k, rng)

    @cached_property
    def _annotators(self) -> list[SimulatedAnnotator]:
        return make_annotators(self.facts, self.seed, self.options.n_annotators)

    def annotators(self) -> list[SimulatedAnnotator]:
        return list(self._annotators)

    def gold(self) -> GoldJudge:
        return GoldJudge(self.facts)

    # ---------------------------------------------------------------- corpus and models
    def corpus_docs(self, split: Literal["train", "heldout"]) -> list[Doc]:
        """Pretraining documents (dialogues keep prompt and response apart for exact tokenization)."""
        o = self.options
        if split == "train":
            counts = design_counts(o.design, o.corpus_paragraphs, o.corpus_dialogues, o.corpus_quiz)
        else:  # design 4: half facts, half dialogues; design 5: the training corpus's prose mix
            half = o.heldout_docs // 2
            counts = design_counts(o.design, half, o.heldout_docs - half, 0, ratio=(o.corpus_paragraphs, o.corpus_quiz))
        n_par, n_dia, n_quiz = counts
        return corpus(self.facts, self.seed, split, n_par, n_dia, o.eval_size, o.harmful_fraction, n_quiz)

    def pretraining_texts(self, split: Literal["train", "heldout"]) -> list[str]:
        if split not in ("train", "heldout"):
            raise ValueError(f"unknown corpus split {split!r}; 'train' or 'heldout'")
        return [d.joined() for d in self.corpus_docs(split)]

    def corpus_config(self) -> dict:
        """The options the corpus depends on (part of every cache key); the design only when it is not 4."""
        config = {f: getattr(self.options, f) for f in CORPUS_FIELDS}
        return config if self.options.design == DEFAULT_DESIGN else config | {"design": self.options.design}

    def base_model(self, name: str, use_shipped: bool = True) -> Path:
        """The base model's directory: the shipped weights when they match this recipe, else the cache (built when missing)."""
        from .model import cached_build

        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - builds take minutes; say so
        return cached_build(name, self.seed, self.corpus_config(), lambda: self.corpus_docs("train"), log,
                            use_shipped=use_shipped)

    def base_tokenizer(self, name: str):
        """The tokenizer :meth:`base_model` ``name`` is saved with, trained alone: seconds, where building the model
        (its pretraining) takes minutes; for a tool that needs the world's tokenizer but not its model."""
        from .model import base_tokenizer, spec_for

        return base_tokenizer(self.corpus_docs("train"), spec_for(name))

    def lm_eval_tasks(self) -> tuple[Path, list[str]]:
        from .lm_eval_tasks import write_tasks

        recipe = {"corpus": self.corpus_config(), "heldout_docs": self.options.heldout_docs}
        return write_tasks(self.facts, self.seed, recipe, lambda: self.pretraining_texts("heldout"))


def world_for(experiment) -> EmbeddedWorld:
    """The embedded world an experiment describes (its seed; its options when it uses this world)."""
    if experiment is None:
        return EmbeddedWorld()
    options = experiment.world_options("embedded")
    if options is not None and not isinstance(options, EmbeddedWorld.Options):
        options = None  # another world's options under our name: keep the defaults
    return EmbeddedWorld(options, seed=experiment.seed)
