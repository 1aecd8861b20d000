"""Feedback: the public base of feedback formats and the ``feedback`` stage that runs one.

**The stage.** Every run collects its feedback once, in stage ``feedback`` (after SFT, before the
reward model): :func:`feedback_stage` calls the format's ``collect(ctx)`` and writes the
:class:`~harness._core.contracts.FeedbackRecord` s to ``runs/<experiment>/feedback/feedback.jsonl``
(atomically; an interrupted attempt's file is kept, a finished stage is reused like any other).
The reward-model stage, DPO and any plugin read them with ``ctx.feedback_records()``.

**The base class.** The built-in pairwise, ranking and Likert formats are written on
:class:`FeedbackFormatBase`, and so can a third-party format (``from harness._core.feedback import
FeedbackFormatBase``): it implements ``annotate``, ``pairs`` and ``item_agreement`` and inherits
``collect``, ``preference_groups`` and ``agreement``. Each item is one ``rm`` prompt with ``k``
candidate responses (from ``world.candidate_responses``, or π_SFT samples as its ``candidates``
option asks, see :mod:`harness._core.candidates`). Most items get one annotator; a fraction
(``overlap``) gets ``raters_per_overlap_item`` different annotators, as InstructGPT did to
measure inter-labeler agreement. A record is one (item, annotator) answer whose ``field`` is
the format's ``field``. ``preference_groups`` returns exactly one group per record, in the
records' order (the reward-model stage splits records and groups together by index).

A subclass says only how an annotator answers (``annotate``), which weighted
(winner, loser) pairs one answer implies (``pairs``), and how agreement is measured over
items that several annotators labelled (``item_agreement``). A world of real data hands over
its recorded records (``RecordedFeedback``), so nothing downstream changes.
"""
from __future__ import annotations

import operator
import random
from collections import defaultdict
from itertools import combinations
from typing import Any, ClassVar, Sequence

from pydantic import Field

from harness._core import distributed
from harness._core.candidates import Candidates, CandidateSource, candidate_source, policy_share, sample_distinct
from harness._core.contracts import (
    FEEDBACK_FILE,
    Annotator,
    FeedbackRecord,
    Options,
    PreferenceGroup,
    Prompt,
    RecordedFeedback,
    StageContext,
    World,
)
from harness._core.errors import HarnessError
from harness._core.io import read_rebuildable_jsonl
from harness._core.models import load_causal_lm
from harness._core.records import records_from_rows, write_feedback

Pair = tuple[int, int, float]


class FeedbackOptions(Options):
    """Options every feedback format has: how much of the data is labelled several times, and which responses."""

    overlap: float = Field(0.1, ge=0.0, le=1.0, description="Fraction of items labelled by several annotators (to measure agreement).")
    raters_per_overlap_item: int = Field(3, ge=2, description="Distinct annotators per overlap item (capped by the pool size).")
    candidates: Candidates = Field("world", description="Responses annotators compare: 'world' (the world's writers), "
                                                        "'sft' (distinct samples of π_SFT, as InstructGPT's labelers "
                                                        "ranked model outputs) or 'mixed' (half each).")
    max_new_tokens: int = Field(32, ge=1, description="Longest π_SFT sample drawn as a candidate (candidates = 'sft' or 'mixed').")


class FeedbackFormatBase:
    """Collection, grouping and agreement plumbing; subclasses define the annotation itself."""

    Options: ClassVar[type[FeedbackOptions]] = FeedbackOptions
    field: ClassVar[str]  # the records' answer key (FeedbackRecord.field)
    k: int = 2  # responses per item

    def __init__(self, options: FeedbackOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    # ------------------------------------------------------------- subclass hooks
    def annotate(self, annotator: Annotator, prompt: Prompt, responses: list[str], rng: random.Random) -> Any:
        raise NotImplementedError

    def pairs(self, record: FeedbackRecord) -> tuple[Pair, ...]:
        raise NotImplementedError

    def item_agreement(self, items: list[list[FeedbackRecord]]) -> dict[str, float]:
        raise NotImplementedError

    # ------------------------------------------------------------- the contract
    def collect(self, ctx: StageContext) -> list[FeedbackRecord]:
        """Records on the world's ``rm`` prompts, from ``random.Random(ctx.seed)`` and, when the ``candidates``
        option asks for them, π_SFT samples as candidates (see :meth:`collect_from`)."""
        prompts = ctx.world.prompts("rm")
        return self.collect_from(ctx.world, prompts, random.Random(ctx.seed), self.candidate_source(ctx, prompts))

    def collect_from(self, world: World, prompts: Sequence[Prompt], rng: random.Random,
                     source: CandidateSource | None = None) -> list[FeedbackRecord]:
        """One record per (prompt, annotator asked); deterministic given ``rng``.

        ``source`` supplies each item's responses and where they came from (see
        :mod:`harness._core.candidates`); without it they are ``world.candidate_responses``.
        A world with recorded human feedback (:class:`RecordedFeedback`) hands over its records of
        ``prompts`` instead: real labels, nobody simulated.
        """
        if isinstance(world, RecordedFeedback):
            wanted = {p.id for p in prompts}
            return [r for r in world.recorded_feedback(self.field) if r.prompt.id in wanted]
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
                records.append(FeedbackRecord(prompt, responses, annotator.name, self.field, answer, sources))
        return records

    def candidate_source(self, ctx: StageContext, prompts: Sequence[Prompt]) -> CandidateSource | None:
        """None (the world's writers) or π_SFT samples as the ``candidates`` option asks (drawn here, once)."""
        mode = self.options.candidates
        if mode == "world":
            return None
        if isinstance(ctx.world, RecordedFeedback):
            raise HarnessError(f"[feedback.{ctx.experiment.slots['feedback'].name}] candidates = {mode!r}: world "
                               f"{ctx.world.name!r} hands over recorded feedback, whose responses are fixed; remove the "
                               f"option (or set it to 'world').")
        policy, tokenizer = load_causal_lm(ctx.artifacts["sft"])
        samples = sample_distinct(policy, tokenizer, ctx.world, prompts, policy_share(mode, self.k), seed=ctx.seed,
                                  max_new_tokens=self.options.max_new_tokens)
        return candidate_source(ctx.world, mode, samples)

    def preference_groups(self, records: Sequence[FeedbackRecord]) -> list[PreferenceGroup]:
        """One group per record (a group may have no pairs, e.g. a Likert item rated all-equal)."""
        return [PreferenceGroup(r.prompt, r.responses, self.pairs(r)) for r in records]

    def agreement(self, records: Sequence[FeedbackRecord]) -> dict[str, float]:
        """Agreement over items with ≥ 2 annotators; ``{"n_items": 0}`` when there are none."""
        items = [group for group in group_by_item(records) if len(group) >= 2]
        if not items:
            return {"n_items": 0}
        return {"n_items": len(items), **self.item_agreement(items)}


# ----------------------------------------------------------------- the stage
def feedback_stage(ctx: StageContext) -> dict[str, Any]:
    """Stage ``feedback``: the run's format collects the records once; the summary counts them and their agreement.

    The records are written atomically to ``<stage_dir>/feedback.jsonl``; a file an interrupted attempt
    left is read back instead of collecting again (an unreadable one is moved aside and collected anew).
    Launched as several processes, every process collects the same records (from the seed) and rank 0 writes.
    """
    path, fmt = ctx.stage_dir / FEEDBACK_FILE, ctx.components.feedback
    records = _earlier_attempt(path)
    if records is None:
        records = list(fmt.collect(ctx))
        if distributed.is_main_process():
            write_feedback(path, records)
    return {"n_records": len(records), "n_prompts": len({r.prompt.id for r in records}),
            "agreement": fmt.agreement(records)}


def _earlier_attempt(path) -> list[FeedbackRecord] | None:
    """The records an interrupted attempt wrote; None when there are none (or they were unreadable: moved aside)."""
    rows = read_rebuildable_jsonl(path, "collecting the feedback again")
    return None if rows is None else records_from_rows(rows, path, "move it aside and rerun")


def group_by_item(records: Sequence[FeedbackRecord]) -> list[list[FeedbackRecord]]:
    """Records of the same item (same prompt and the same candidate responses), in first-seen order."""
    groups: dict[tuple, list[FeedbackRecord]] = defaultdict(list)
    for r in records:
        groups[(r.prompt.id, r.responses)].append(r)
    return list(groups.values())


def pairs_from_order(order: Sequence[int]) -> tuple[Pair, ...]:
    """All C(K,2) (winner, loser) pairs of a best→worst order, each weighted 1/C(K,2).

    InstructGPT §3.5: treating the K-choose-2 comparisons of one ranking as a single unit
    keeps a prompt with K responses from counting C(K,2) times (which overfits).
    """
    pairs = list(combinations(order, 2))
    return tuple((w, l, 1.0 / len(pairs)) for w, l in pairs)


def pair_labels_by_unit(items: list[list[FeedbackRecord]], order_of) -> list[list[int]]:
    """For every item and every response pair (i < j): each annotator's label (1 if i above j).

    ``order_of(record, i, j)`` returns +1 / −1 (or 0 for a tie). These labels make the
    "fraction of annotator pairs that order a response pair the same way" comparable across
    formats (InstructGPT's ~73%).
    """
    units = []
    for item in items:
        k = len(item[0].responses)
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
