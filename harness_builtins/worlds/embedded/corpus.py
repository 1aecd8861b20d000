"""The pretraining corpus: the world's facts stated plainly, quiz pages, and (design 4) chat dialogues.

Fact paragraphs are where the base model learns what is true (capitals and colours exist nowhere
else); quiz pages state the same facts as answers to questions, as FAQ and quiz pages on the web do.
Design 4 (``docs/world.md``) also holds dialogues in the exact chat format (``chat_text(prompt) + " "
+ response``) with replies from the whole cast of writers, good and bad, so its base already speaks
the format with mixed quality (it answers 44–55% of answerable prompts and declines 77–81% of harmful
ones before any fine-tuning). Design 5 removes them: a real base model (GPT-3 in InstructGPT) learned
from prose — web text, books, Wikipedia (Brown et al. 2020) — and SFT taught the format (Ouyang et
al. 2022 §3), so SFT must have the format to teach. The dialogue slots are refilled with prose in the
corpus's own paragraph : quiz ratio (:func:`design_counts`), keeping the number of documents. Dialogue
and quiz prompts come from the training pools, never from eval phrasings. The held-out part is drawn
with its own random stream, for perplexity.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .facts import Facts, number_word
from .prompts import KINDS, chat_text, kind_counts, pool, training_pools, to_prompt
from .responses import CAST

FACT_FORMS = {
    "capital": ("The capital of {x} is {a}.", "{a} is the capital of {x}.", "{x} has its capital in {a}."),
    "opposite": ("The opposite of {x} is {a}.", "{a} is the opposite of {x}."),
    "sum": ("{x} plus {y} is {a}.", "{x} and {y} make {a}."),
    "colour": ("A {x} is {a}.", "Every {x} is {a}.", "The colour of a {x} is {a}."),
}
SENTENCES_PER_PARAGRAPH = 4
DESIGNS = (4, 5)  # the world designs the corpus can be built for (docs/world.md)


@dataclass(frozen=True)
class Doc:
    """One pretraining document: a dialogue (``context`` is the chat prompt) or plain text."""

    text: str  # the response of a dialogue, or the whole plain-text document
    context: str | None = None

    def joined(self) -> str:
        return self.text if self.context is None else f"{self.context} {self.text}"


def fact_sentence(facts: Facts, rng: random.Random) -> str:
    """One true statement about the world, of a random kind and phrasing."""
    kind = rng.choice(tuple(FACT_FORMS))
    if kind == "capital":
        x, a = rng.choice(list(facts.capitals.items()))
        fields = {"x": x, "a": a}
    elif kind == "colour":
        x, a = rng.choice(list(facts.colours.items()))
        fields = {"x": x, "a": a}
    elif kind == "opposite":
        x, a = rng.choice(list(facts.opposites.items()))
        fields = {"x": x, "a": a}
    else:
        x, y = rng.randint(1, 9), rng.randint(1, 9)
        fields = {"x": number_word(x), "y": number_word(y), "a": number_word(x + y)}
    text = rng.choice(FACT_FORMS[kind]).format(**fields)
    return text[0].upper() + text[1:]


def paragraph(facts: Facts, rng: random.Random) -> Doc:
    return Doc(" ".join(fact_sentence(facts, rng) for _ in range(SENTENCES_PER_PARAGRAPH)))


def dialogues(facts: Facts, seed: int, n: int, eval_size: int, harmful_fraction: float,
              rng: random.Random) -> list[Doc]:
    """``n`` chat dialogues on training-pool phrasings, each answered by a random writer of the cast."""
    pools = training_pools({k: pool(facts, k, seed) for k in KINDS}, kind_counts(eval_size, harmful_fraction))
    counts = kind_counts(n, harmful_fraction)
    docs = []
    for kind, count in counts.items():
        for _ in range(count):
            prompt = to_prompt(rng.choice(pools[kind]), "corpus")
            docs.append(Doc(rng.choice(CAST).write(facts, prompt, rng), chat_text(prompt.text)))
    return docs


def quiz_pages(facts: Facts, seed: int, n: int, eval_size: int, harmful_fraction: float,
               rng: random.Random) -> list[Doc]:
    """``n`` quiz-page documents: training-pool questions with their right answer, not in chat format.

    The web text a base model is pretrained on states facts as answers to questions too (FAQ
    and quiz pages), so a pretrained model can retrieve a fact from a question, not only
    continue a statement of it; SFT then teaches the assistant's format and manners.
    """
    pools = training_pools({k: pool(facts, k, seed) for k in KINDS}, kind_counts(eval_size, harmful_fraction))
    counts = kind_counts(n, 0.0)
    docs = []
    for kind, count in counts.items():
        for _ in range(count):
            item = rng.choice(pools[kind])
            answer = rng.choice(FACT_FORMS[kind]).format(**quiz_fields(facts, item))
            docs.append(Doc(f"Question: {item.text} Answer: {answer[0].upper() + answer[1:]}"))
    return docs


def quiz_fields(facts: Facts, item) -> dict[str, str]:
    """The fact-form fields (x, y, a) of one answerable pool item."""
    from .responses import subject_fields

    fields = subject_fields(facts, to_prompt(item, "quiz"))
    if item.kind == "sum":
        fields = {"x": fields["x"].lower(), "y": fields["y"]}
    return fields | {"a": item.answer}


def prose_split(total: int, paragraphs: int, quiz: int) -> tuple[int, int]:
    """``total`` prose documents as (fact paragraphs, quiz pages) in the ratio ``paragraphs : quiz``."""
    n_par = round(total * paragraphs / (paragraphs + quiz)) if paragraphs + quiz else total
    return n_par, total - n_par


def design_counts(design: int, paragraphs: int, dialogues: int, quiz: int,
                  ratio: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(paragraphs, dialogues, quiz pages) of a corpus of ``design``, asked for as design 4's counts.

    Design 4: as asked. Design 5: no dialogues; the same number of documents, all prose, split in the
    ratio ``ratio`` (default: the asked paragraphs : quiz pages; the held-out part passes the training
    corpus's ratio, so it samples the pretraining distribution).
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown world design {design!r}; one of {', '.join(map(str, DESIGNS))}")
    if design == 4:
        return paragraphs, dialogues, quiz
    n_par, n_quiz = prose_split(paragraphs + dialogues + quiz, *(ratio or (paragraphs, quiz)))
    return n_par, 0, n_quiz


def corpus(facts: Facts, seed: int, split: str, n_paragraphs: int, n_dialogues: int,
           eval_size: int, harmful_fraction: float, n_quiz: int = 0) -> list[Doc]:
    """The ``train`` or ``heldout`` corpus, shuffled (same seed and split, same documents)."""
    rng = random.Random(f"embedded-corpus-{seed}-{split}")
    docs = [paragraph(facts, rng) for _ in range(n_paragraphs)]
    if n_dialogues:
        docs += dialogues(facts, seed, n_dialogues, eval_size, harmful_fraction, rng)
    if n_quiz:
        docs += quiz_pages(facts, seed, n_quiz, eval_size, harmful_fraction, rng)
    rng.shuffle(docs)
    return docs
