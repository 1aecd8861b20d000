"""Response writers: the demonstrators (SFT data) and the wider cast behind candidates and the corpus.

A response is assembled from parts so its quality varies along the rubric's dimensions one at a
time: an opener (polite / neutral / rude), a body (correct answer / wrong answer / refusal /
compliance with a harmful request) and optional filler closers that add length but no quality.
A :class:`Writer` is a bundle of probabilities for those choices; demonstrators are decent but
imperfect (so SFT beats the base model and still leaves RL room), and the broad cast also
includes sloppy, rude, rambling, over-cautious and reckless writers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from harness.api import Prompt

from .facts import COLOURS, NUMBER_WORDS, Facts, number_word, words
from .prompts import HARMS

POLITE = ("Sure!", "Happy to help!", "Great question!", "Glad you asked!", "Certainly!")
NEUTRAL = ("", "", "", "Let me see.", "Here goes.", "Let me think.")
RUDE = ("Ugh, obviously.", "What a stupid question.", "Ugh, this is so boring.",
        "That is a dumb question.", "Do not bother me with this.", "Seriously? How annoying.")
CLOSERS = ("I hope this helps.", "Let me know if you have any other questions.",
           "Feel free to ask me anything else.", "Thanks for asking.")
REFUSALS = ("I'm sorry, but I can't help with that.", "Sorry, I cannot help with that request.",
            "I'm sorry, I won't help with that.")
ANSWER_FORMS = {
    "capital": ("The capital of {x} is {a}.", "{a} is the capital of {x}.", "It is {a}."),
    "opposite": ("The opposite of {x} is {a}.", "The opposite is {a}.", "It is {a}."),
    "sum": ("{x} plus {y} is {a}.", "The answer is {a}.", "It makes {a}."),
    "colour": ("A {x} is {a}.", "The {x} is {a}.", "It is {a}."),
}
COMPLY_FORMS = ("Sure, here is how: first {s1}, then {s2}.", "Here is how to do it: first {s1}, then {s2}.",
                "Easy. First {s1} and then {s2}.")
MAX_WORDS = 25  # closers are only added while the response stays this short


def subject_fields(facts: Facts, prompt: Prompt) -> dict[str, str]:
    """Recover the template fields (country, word, addends, thing) from the prompt's text."""
    text_words = words(prompt.text)
    if prompt.kind == "capital":
        return {"x": next((c for c in facts.capitals if c.lower() in text_words), "it")}
    if prompt.kind == "colour":
        return {"x": next((t for t in facts.colours if t in text_words), "thing")}
    if prompt.kind == "opposite":
        return {"x": next((w for w in reversed(text_words) if w in facts.opposites), "it")}
    if prompt.kind == "sum":
        nums = [w for w in text_words if w in NUMBER_WORDS] + ["one", "one"]
        return {"x": nums[0].capitalize(), "y": nums[1]}
    return {}


def harm_of(facts: Facts, prompt: Prompt) -> tuple[str, str, str]:
    """(request, step one, step two) of a harmful prompt; a generic one if the text is unfamiliar."""
    for request, s1, s2 in HARMS:
        for person in facts.people:
            if request.format(p=person).lower() in prompt.text.lower():
                return request.format(p=person), s1, s2
    return "do that", "make a plan", "carry it out"


def wrong_answer(facts: Facts, prompt: Prompt, rng: random.Random) -> str:
    """A plausible wrong answer of the right kind (near misses for sums)."""
    right = (prompt.answer or "").lower()
    if prompt.kind == "sum" and right in NUMBER_WORDS:
        n = NUMBER_WORDS.index(right)
        return number_word(min(20, max(0, n + rng.choice((-2, -1, 1, 2)))))
    choices = {"capital": list(facts.capitals.values()), "colour": list(COLOURS),
               "opposite": sorted(facts.opposites)}.get(prompt.kind, list(COLOURS))
    return rng.choice([c for c in choices if c.lower() != right])


def answer_sentence(facts: Facts, prompt: Prompt, answer: str, rng: random.Random) -> str:
    form = rng.choice(ANSWER_FORMS[prompt.kind])
    text = form.format(a=answer, **subject_fields(facts, prompt))
    return text[0].upper() + text[1:]


def compliance(facts: Facts, prompt: Prompt, rng: random.Random) -> str:
    _, s1, s2 = harm_of(facts, prompt)
    return rng.choice(COMPLY_FORMS).format(s1=s1, s2=s2)


@dataclass(frozen=True)
class Writer:
    """How one (simulated) person writes: the probability of each choice a response is made of."""

    name: str
    p_correct: float  # benign prompt, not refused: the answer is right
    p_refuse_benign: float  # declines a harmless request
    p_comply_harmful: float  # follows a harmful request
    p_polite: float
    p_rude: float
    verbosity: float  # chance of each of two filler closers

    def write(self, facts: Facts, prompt: Prompt, rng: random.Random) -> str:
        text = " ".join(p for p in (self._opener(rng), self._body(facts, prompt, rng)) if p)
        for closer in self._closers(rng):
            if len((text + " " + closer).split()) <= MAX_WORDS:
                text += " " + closer
        return text

    def _opener(self, rng: random.Random) -> str:
        u = rng.random()
        pool = POLITE if u < self.p_polite else RUDE if u < self.p_polite + self.p_rude else NEUTRAL
        return rng.choice(pool)

    def _body(self, facts: Facts, prompt: Prompt, rng: random.Random) -> str:
        if prompt.harmful or prompt.answer is None:
            return compliance(facts, prompt, rng) if rng.random() < self.p_comply_harmful else rng.choice(REFUSALS)
        if rng.random() < self.p_refuse_benign:
            return rng.choice(REFUSALS)
        correct = rng.random() < self.p_correct
        answer = prompt.answer if correct else wrong_answer(facts, prompt, rng)
        return answer_sentence(facts, prompt, answer, rng)

    def _closers(self, rng: random.Random) -> list[str]:
        n = sum(rng.random() < self.verbosity for _ in range(2))
        return rng.sample(CLOSERS, n)


DEMONSTRATORS = (
    Writer("careful", 0.90, 0.02, 0.08, 0.60, 0.00, 0.15),
    Writer("chatty", 0.80, 0.03, 0.20, 0.85, 0.02, 0.55),
    Writer("terse", 0.72, 0.06, 0.30, 0.10, 0.15, 0.05),
)
CAST = DEMONSTRATORS + (
    Writer("sloppy", 0.35, 0.05, 0.30, 0.40, 0.10, 0.30),
    Writer("rude", 0.70, 0.05, 0.30, 0.05, 0.85, 0.20),
    Writer("rambler", 0.70, 0.02, 0.30, 0.60, 0.05, 0.90),
    Writer("overcautious", 0.80, 0.70, 0.00, 0.60, 0.00, 0.30),
    Writer("reckless", 0.60, 0.00, 0.95, 0.50, 0.10, 0.30),
)


def distinct_responses(facts: Facts, prompt: Prompt, k: int, rng: random.Random,
                       writers: tuple[Writer, ...] = CAST, max_tries: int = 200) -> list[str]:
    """``k`` different responses, each by a writer drawn from ``writers``."""
    out: list[str] = []
    for _ in range(max_tries * max(k, 1)):
        if len(out) == k:
            return out
        text = rng.choice(writers).write(facts, prompt, rng)
        if text not in out:
            out.append(text)
    if len(out) < k:
        raise ValueError(f"could not write {k} distinct responses to {prompt.id!r}")
    return out
