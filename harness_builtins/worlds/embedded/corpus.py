"""The pretraining corpus: the world's facts stated plainly, and dialogues in the chat format.

Fact paragraphs are where the base model learns what is true (capitals and colours exist nowhere
else). Dialogues use the exact chat format (``chat_text(prompt) + " " + response``) with replies
from the whole cast of writers, good and bad, so the base model already speaks in the format but
with mixed quality: SFT has something to fix and the gold judge something to measure. Dialogue
prompts come from the training pools, never from eval phrasings. The held-out part is drawn
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


def corpus(facts: Facts, seed: int, split: str, n_paragraphs: int, n_dialogues: int,
           eval_size: int, harmful_fraction: float, n_quiz: int = 0) -> list[Doc]:
    """The ``train`` or ``heldout`` corpus, shuffled (same seed and split, same documents)."""
    rng = random.Random(f"embedded-corpus-{seed}-{split}")
    docs = [paragraph(facts, rng) for _ in range(n_paragraphs)]
    docs += dialogues(facts, seed, n_dialogues, eval_size, harmful_fraction, rng)
    if n_quiz:
        docs += quiz_pages(facts, seed, n_quiz, eval_size, harmful_fraction, rng)
    rng.shuffle(docs)
    return docs
