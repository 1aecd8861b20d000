"""Rows (keyed by role) → the harness's own records: Prompts, Demonstrations and feedback records.

Feedback records are the same :class:`~harness.api.FeedbackRecord` s the feedback formats
make when they collect from simulated annotators, so ``preference_groups``, ``agreement``, the
reward-model stage and DPO read recorded human labels unchanged:

- pairwise → ``responses = [chosen, rejected]``, ``choice = 0`` (format ``pairwise``);
- ranking  → ``responses``, ``ranking`` = indices best → worst (format ``ranking``);
- rating   → one record per (prompt, annotator): the responses they rated and their ``ratings``
  (format ``likert``, which trains on the pairs those ratings imply).

Rows that cannot be used as they are (an empty cell; HH transcripts whose prompts differ) are
skipped and counted; data that contradicts its format (a ranking that is no permutation, a
rating that is no number) is an error naming the row.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from harness.api import ConfigError, Demonstration, FeedbackRecord, Prompt

from .options import ChatSourceTable, FeedbackTable
from .transcripts import TranscriptError, is_dialogue, shared_prompt, split_transcript

Row = dict[str, Any]
RECORDED = "recorded"  # annotator name when the data does not say who labelled a row

# data format -> (record key, name of the feedback-format plugin that reads it)
FORMAT_FIELD = {"pairwise": ("choice", "pairwise"), "ranking": ("ranking", "ranking"), "rating": ("ratings", "likert")}


@dataclass
class Skipped:
    """Rows left out while reading one table, by reason (reported, never silent)."""

    reasons: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.reasons[reason] += 1

    def __bool__(self) -> bool:
        return bool(self.reasons)


def make_prompt(text: str) -> Prompt:
    """A Prompt whose id is a hash of its text, so the same prompt in two tables is one prompt."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    return Prompt(id=f"hf-{digest}", kind="dialogue" if is_dialogue(text) else "single_turn", text=text)


def _missing(row: Row) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in row.values())


def _parsed(rows: list[Row], parse: Callable[[Row], Any], skipped: Skipped) -> Iterator[tuple[int, Row, Any]]:
    """``(index, row, parse(row))`` for every usable row; a row with an empty cell, or whose HH transcript
    does not parse, is counted in ``skipped`` instead (every table's rows are read this one way)."""
    for index, row in enumerate(rows):
        if _missing(row):
            skipped.add("empty cell")
            continue
        try:
            parsed = parse(row)
        except TranscriptError:
            skipped.add("not an HH transcript")
            continue
        yield index, row, parsed


def _prompt_text(row: Row, hh: bool) -> str:
    """A row's prompt: its ``prompt`` column, or the HH transcript there without its final reply."""
    return split_transcript(str(row["prompt"]), require_reply=False)[0] if hh else str(row["prompt"]).strip()


def _exchange(row: Row, hh: bool) -> tuple[str, str]:
    """(prompt text, response) of a row: split from the HH transcript in ``response``, or its two columns."""
    return split_transcript(str(row["response"])) if hh else (str(row["prompt"]).strip(), str(row["response"]).strip())


# --------------------------------------------------------------------------- prompts and demonstrations
def prompts_from_rows(rows: list[Row], table: ChatSourceTable, skipped: Skipped) -> list[Prompt]:
    """Distinct prompts in first-seen order (an HH transcript loses its final reply)."""
    out: dict[str, Prompt] = {}
    for _, _, text in _parsed(rows, lambda row: _prompt_text(row, table.hh_format), skipped):
        prompt = make_prompt(text)
        out.setdefault(prompt.id, prompt)
    return list(out.values())


def demonstrations_from_rows(rows: list[Row], table: ChatSourceTable, skipped: Skipped) -> list[Demonstration]:
    exchanges = _parsed(rows, lambda row: _exchange(row, table.hh_format), skipped)
    return [Demonstration(make_prompt(text), response, "human") for _, _, (text, response) in exchanges]


# --------------------------------------------------------------------------- feedback
def feedback_records(rows: list[Row], table: FeedbackTable, where: str, skipped: Skipped) -> list[FeedbackRecord]:
    """Rows → records of the table's format (see the module docstring)."""
    key, _ = FORMAT_FIELD[table.format]
    items = []
    for index, row, item in _parsed(rows, lambda row: _ITEM[table.format](row, table.hh_format), skipped):
        if item is None:
            skipped.add("transcripts with different prompts")
            continue
        prompt, responses, answer = item
        items.append((index, prompt, responses, _check(table.format, answer, responses, where, index),
                      str(row.get("annotator", RECORDED))))
    if table.format == "rating":
        return _rating_records(items)
    return [FeedbackRecord(p, responses, who, key, answer) for _, p, responses, answer, who in items]


def _pairwise(row: Row, hh: bool):
    if hh:
        shared = shared_prompt([str(row["chosen"]), str(row["rejected"])])
        return None if shared is None else (make_prompt(shared[0]), shared[1], 0)
    return make_prompt(str(row["prompt"]).strip()), [str(row["chosen"]).strip(), str(row["rejected"]).strip()], 0


def _ranking(row: Row, hh: bool):
    responses = [str(r) for r in row["responses"]]
    if hh:
        shared = shared_prompt(responses)
        return None if shared is None else (make_prompt(shared[0]), shared[1], row["ranking"])
    return make_prompt(str(row["prompt"]).strip()), [r.strip() for r in responses], row["ranking"]


def _rating(row: Row, hh: bool):
    text, response = _exchange(row, hh)
    return make_prompt(text), [response], row["rating"]


_ITEM = {"pairwise": _pairwise, "ranking": _ranking, "rating": _rating}


def _check(kind: str, answer: Any, responses: list[str], where: str, index: int) -> Any:
    if kind == "ranking":
        order = [int(i) for i in answer] if isinstance(answer, (list, tuple)) else None
        if order is None or sorted(order) != list(range(len(responses))):
            raise ConfigError(f"[{where}] row {index}: ranking {answer!r} is not a permutation of "
                              f"0..{len(responses) - 1} (indices into the row's responses, best first).")
        return order
    if kind == "rating":
        if isinstance(answer, bool) or not isinstance(answer, (int, float)):
            raise ConfigError(f"[{where}] row {index}: rating {answer!r} is not a number.")
        return int(answer) if float(answer).is_integer() else float(answer)
    return answer


def _rating_records(items) -> list[FeedbackRecord]:
    """One record per (prompt, annotator): every response they rated, in row order."""
    grouped: dict[tuple[str, str], list] = {}
    for _, prompt, responses, rating, who in items:
        entry = grouped.setdefault((prompt.id, who), [prompt, [], []])
        entry[1].append(responses[0])
        entry[2].append(rating)
    return [FeedbackRecord(p, responses, who, "ratings", ratings) for (_, who), (p, responses, ratings) in grouped.items()]


def preferred_response(record: FeedbackRecord) -> str:
    """The response a record ranks first (chosen / top of the ranking / highest rated, first on ties)."""
    if record.field == "choice":
        return record.responses[record.answer]
    if record.field == "ranking":
        return record.responses[record.answer[0]]
    return record.responses[record.answer.index(max(record.answer))]
