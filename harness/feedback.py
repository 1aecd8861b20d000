"""The public base of feedback formats: who labels which item, the record schema, and the
records → PreferenceGroup / agreement plumbing. The built-in pairwise, ranking and Likert formats
are written on it, and so can a third-party format (``from harness.feedback import
FeedbackFormatBase``): it implements ``annotate``, ``pairs`` and ``item_agreement`` and inherits
the documented ``collect(world, prompts, rng, source=None)`` contract.

Each item is one prompt with ``k`` candidate responses from ``world.candidate_responses``.
Most items get one annotator; a fraction (``overlap``) gets ``raters_per_overlap_item``
different annotators, as InstructGPT did to measure inter-labeler agreement. A record is one
(item, annotator) answer, JSON-ready (:func:`make_record`; ``sources`` only when the responses
came from a candidate source):

    {"prompt_id", "prompt": <Prompt as dict>, "responses": [...], "annotator": name,
     <format field>: choice | ranking | ratings, "sources": ["sft" | "world", ...]}

``preference_groups`` returns exactly one group per record, in the records' order (the reward
model stage splits records and groups together by index).

A subclass says only how an annotator answers (``annotate``), which weighted
(winner, loser) pairs one answer implies (``pairs``), and how agreement is measured over
items that several annotators labelled (``item_agreement``). A world of real data hands over
its recorded records in this same schema (``RecordedFeedback``), so nothing downstream changes.
"""
from __future__ import annotations

import dataclasses
import operator
import random
from collections import defaultdict
from itertools import combinations
from typing import Any, Callable, ClassVar, Literal, Sequence

from pydantic import Field

from harness.contracts import Annotator, Options, PreferenceGroup, Prompt, RecordedFeedback, World

Record = dict[str, Any]
Candidates = Literal["world", "sft", "mixed"]
# (prompt, k, rng) -> (k responses, where each came from: "sft" or "world"); see plugins.feedback.candidates
CandidateSource = Callable[[Prompt, int, random.Random], tuple[list[str], list[str]]]
Pair = tuple[int, int, float]


class FeedbackOptions(Options):
    """Options every feedback format has: how much of the data is labelled several times."""

    overlap: float = Field(0.1, ge=0.0, le=1.0, description="Fraction of items labelled by several annotators (to measure agreement).")
    raters_per_overlap_item: int = Field(3, ge=2, description="Distinct annotators per overlap item (capped by the pool size).")
    candidates: Candidates = Field("world", description="Responses annotators compare: 'world' (the world's writers), "
                                                        "'sft' (distinct samples of π_SFT, as InstructGPT's labelers "
                                                        "ranked model outputs) or 'mixed' (half each).")


class FeedbackFormatBase:
    """Collection, grouping and agreement plumbing; subclasses define the annotation itself."""

    Options: ClassVar[type[FeedbackOptions]] = FeedbackOptions
    field: ClassVar[str]  # the record key holding the annotation
    k: int = 2  # responses per item

    def __init__(self, options: FeedbackOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    # ------------------------------------------------------------- subclass hooks
    def annotate(self, annotator: Annotator, prompt: Prompt, responses: list[str], rng: random.Random) -> Any:
        raise NotImplementedError

    def pairs(self, record: Record) -> tuple[Pair, ...]:
        raise NotImplementedError

    def item_agreement(self, items: list[list[Record]]) -> dict[str, float]:
        raise NotImplementedError

    # ------------------------------------------------------------- the contract
    def collect(self, world: World, prompts: Sequence[Prompt], rng: random.Random,
                source: CandidateSource | None = None) -> list[Record]:
        """One record per (prompt, annotator asked); deterministic given ``rng``.

        ``source`` supplies each item's responses and where they came from (see
        :mod:`plugins.feedback.candidates`); without it they are ``world.candidate_responses``.
        A world with recorded human feedback (:class:`RecordedFeedback`) hands over its records of
        ``prompts`` instead: real labels, nobody simulated.
        """
        if isinstance(world, RecordedFeedback):
            wanted = {p.id for p in prompts}
            return [r for r in world.recorded_feedback(self.field) if r["prompt_id"] in wanted]
        pool = list(world.annotators())
        if not pool:
            raise ValueError(f"world {world.name!r} has no annotators to collect feedback from")
        overlap = set(rng.sample(range(len(prompts)), round(self.options.overlap * len(prompts))))
        records = []
        for i, prompt in enumerate(prompts):
            if source is None:
                responses, sources = list(world.candidate_responses(prompt, self.k, rng)), None
            else:
                responses, sources = source(prompt, self.k, rng)
            n_raters = min(self.options.raters_per_overlap_item, len(pool)) if i in overlap else 1
            for annotator in rng.sample(pool, n_raters):
                answer = self.annotate(annotator, prompt, responses, rng)
                records.append(make_record(prompt, responses, annotator.name, self.field, answer, sources))
        return records

    def preference_groups(self, records: Sequence[Record]) -> list[PreferenceGroup]:
        """One group per record (a group may have no pairs, e.g. a Likert item rated all-equal)."""
        return [
            PreferenceGroup(prompt_from_dict(r["prompt"]), tuple(r["responses"]), self.pairs(r))
            for r in records
        ]

    def agreement(self, records: Sequence[Record]) -> dict[str, float]:
        """Agreement over items with ≥ 2 annotators; ``{"n_items": 0}`` when there are none."""
        items = [group for group in group_by_item(records) if len(group) >= 2]
        if not items:
            return {"n_items": 0}
        return {"n_items": len(items), **self.item_agreement(items)}


def make_record(prompt: Prompt, responses: list[str], annotator: str, field: str, answer: Any,
                sources: list[str] | None = None) -> Record:
    record = {
        "prompt_id": prompt.id,
        "prompt": dataclasses.asdict(prompt),
        "responses": list(responses),
        "annotator": annotator,
        field: answer,
    }
    if sources is not None:  # which response came from π_SFT and which from the world's writers
        record["sources"] = list(sources)
    return record


def prompt_from_dict(data: dict[str, Any]) -> Prompt:
    return Prompt(**data)


def group_by_item(records: Sequence[Record]) -> list[list[Record]]:
    """Records of the same item (same prompt and the same candidate responses), in first-seen order."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[(r["prompt_id"], tuple(r["responses"]))].append(r)
    return list(groups.values())


def pairs_from_order(order: Sequence[int]) -> tuple[Pair, ...]:
    """All C(K,2) (winner, loser) pairs of a best→worst order, each weighted 1/C(K,2).

    InstructGPT §3.5: treating the K-choose-2 comparisons of one ranking as a single unit
    keeps a prompt with K responses from counting C(K,2) times (which overfits).
    """
    pairs = list(combinations(order, 2))
    return tuple((w, l, 1.0 / len(pairs)) for w, l in pairs)


def pair_labels_by_unit(items: list[list[Record]], order_of) -> list[list[int]]:
    """For every item and every response pair (i < j): each annotator's label (1 if i above j).

    ``order_of(record, i, j)`` returns +1 / −1 (or 0 for a tie). These labels make the
    "fraction of annotator pairs that order a response pair the same way" comparable across
    formats (InstructGPT's ~73%).
    """
    units = []
    for item in items:
        k = len(item[0]["responses"])
        units += [[order_of(r, i, j) for r in item] for i, j in combinations(range(k), 2)]
    return units


def check_range(name: str, value: int, low: int, high: int, annotator: str) -> int:
    """Annotators are plugins too: reject an answer outside the format's schema loudly."""
    try:
        number = operator.index(value)  # ints and numpy ints, not floats
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"annotator {annotator!r} gave {name}={value!r}; expected an int in {low}..{high}")
    return number
