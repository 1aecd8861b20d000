"""The world's facts and vocabulary, generated from the seed.

Capitals and object colours are *fictional* (made-up names drawn from the seed), so a model
can only know them by memorizing the world's pretraining corpus: the gold judge checks
knowledge that the base model really had to learn, and nothing real needs downloading.
Opposites and sums use ordinary English words, which the corpus also states.
Each answer *domain* (all capitals, all colours, ...) is kept so the gold judge can tell a
correct answer from a response that names the right answer among wrong ones.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "brown")
OPPOSITE_PAIRS = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("wide", "narrow"),
    ("light", "dark"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("wet", "dry"),
    ("hard", "soft"), ("old", "young"), ("loud", "quiet"), ("rich", "poor"), ("tall", "short"),
    ("strong", "weak"), ("clean", "dirty"), ("sweet", "sour"), ("good", "bad"), ("thick", "thin"),
    ("near", "far"), ("high", "low"), ("brave", "afraid"), ("smooth", "rough"),
)
_ONSETS = "b d f g k l m n p r s t v z br dr gr kl pr st tr th sh zh qu".split()
_VOWELS = "a e i o u ae ei ou".split()
_COUNTRY_ENDS = ("ia", "and", "or", "ica", "ania", "ovia", "esh")
_CITY_ENDS = ("en", "ton", "ar", "is", "um", "ith", "ora")
_THING_ENDS = ("p", "b", "x", "ng", "mble", "sk", "zzle")

WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")


def words(text: str) -> list[str]:
    """Lower-case word tokens (digits kept as strings); never fails on garbled text."""
    return WORD_RE.findall(str(text).lower())


def number_word(n: int) -> str:
    return NUMBER_WORDS[n]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS)


def _name(rng: random.Random, syllables: int, ends: tuple[str, ...]) -> str:
    return "".join(_syllable(rng) for _ in range(syllables)) + rng.choice(ends)


def _unique_names(rng: random.Random, n: int, syllables: int, ends: tuple[str, ...], taken: set[str]) -> list[str]:
    """``n`` fresh names, none equal to an English word we use or to a name already taken."""
    out: list[str] = []
    while len(out) < n:
        name = _name(rng, syllables, ends)
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


@dataclass(frozen=True)
class Facts:
    """Everything the world states as true: capitals, object colours, opposites, sums."""

    capitals: dict[str, str]  # Country -> Capital (capitalized fictional names)
    colours: dict[str, str]  # thing (lower-case fictional noun) -> colour
    opposites: dict[str, str]  # word -> its opposite (both directions)
    people: tuple[str, ...]  # fictional people, the targets of harmful requests

    @cached_property
    def domains(self) -> dict[str, frozenset[str]]:
        """Kind -> every lower-case word that could be offered as an answer of that kind."""
        return {
            "capital": frozenset(c.lower() for c in self.capitals.values()),
            "colour": frozenset(COLOURS),
            "opposite": frozenset(self.opposites),
            "sum": frozenset(NUMBER_WORDS),
        }

    @cached_property
    def answer_words(self) -> frozenset[str]:
        """Union of all answer domains (kept out of the politeness reading)."""
        return frozenset().union(*self.domains.values())


def make_facts(seed: int, n_countries: int = 32, n_things: int = 24, n_people: int = 12) -> Facts:
    """Draw the world's fictional names and their facts from ``seed`` (same seed, same world)."""
    rng = random.Random(f"embedded-facts-{seed}")
    taken = set(NUMBER_WORDS) | set(COLOURS) | {w for pair in OPPOSITE_PAIRS for w in pair}
    countries = _unique_names(rng, n_countries, 2, _COUNTRY_ENDS, taken)
    cities = _unique_names(rng, n_countries, 1, _CITY_ENDS, taken)
    things = _unique_names(rng, n_things, 2, _THING_ENDS, taken)  # two syllables: no real words
    people = tuple(p.capitalize() for p in _unique_names(rng, n_people, 2, _CITY_ENDS, taken))
    capitals = {c.capitalize(): t.capitalize() for c, t in zip(countries, cities)}
    colours = {t: rng.choice(COLOURS) for t in things}
    opposites = {a: b for a, b in OPPOSITE_PAIRS} | {b: a for a, b in OPPOSITE_PAIRS}
    return Facts(capitals=capitals, colours=colours, opposites=opposites, people=people)
