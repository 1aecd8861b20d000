"""A run's feedback records as dataset rows, in the three layouts other tools read.

Every layout has the same ``prompt`` column: the world's ``chat_text`` of the prompt, the text the
policy was conditioned on (what the harness's own DPO gives trl, which applies no template to plain
strings); ``prompt_text`` is the prompt as written, for a reader that applies its own template (the
``hf_data`` world's ``chat_template``). ``prompt_id``, ``annotator`` and ``record`` (the record's
0-based line in ``feedback.jsonl``, so the rows of one ranking can be grouped again) follow in every
layout; where each response came from (``"sft"``: a π_SFT sample, ``"world"``: the world's writers) is
a ``*source*`` column, None when the run's candidate source did not say.

- :func:`preference_rows` (``trl-preference``): one row per weighted (winner, loser) pair of the run's
  feedback format's ``preference_groups``, the pairs the reward model and DPO train on (a ranking's
  C(K,2) at 1/C(K,2), Likert ratings' derived pairs with ties left out), as trl's ``prompt`` /
  ``chosen`` / ``rejected``; ``chosen`` and ``rejected`` are ``" " + response``, the completion as it
  follows the prompt (the harness's text convention, :mod:`harness._core.text`; trl appends EOS). A
  pair of two identical texts has no preference in it and is left out, as DPO leaves it out.
- :func:`ranking_rows` (``ranking``): one row per ranking record: ``responses`` in the order the
  annotator saw them and ``ranking``, their indices best → worst.
- :func:`likert_rows` (``likert``): one row per rated response: ``response`` and its ``rating``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from harness._core.records import FeedbackRecord, PreferenceGroup, Prompt

ChatText = Callable[[Prompt], str]


def _row(record: FeedbackRecord, number: int, chat_text: ChatText, answer: dict[str, Any],
         sources: dict[str, Any]) -> dict[str, Any]:
    """One row: ``prompt``, the layout's own columns, then the columns every layout has."""
    return {"prompt": chat_text(record.prompt), **answer, "prompt_text": record.prompt.text,
            "prompt_id": record.prompt.id, "annotator": record.annotator, **sources, "record": number}


def _source(record: FeedbackRecord, index: int) -> str | None:
    return record.sources[index] if record.sources is not None else None


def preference_rows(records: Sequence[FeedbackRecord], groups: Sequence[PreferenceGroup],
                    chat_text: ChatText) -> tuple[list[dict[str, Any]], int]:
    """(rows, pairs left out for two identical texts): one row per pair of ``groups[i]``, the group of ``records[i]``."""
    rows, identical = [], 0
    for number, (record, group) in enumerate(zip(records, groups, strict=True)):
        for winner, loser, weight in group.pairs:
            chosen, rejected = group.responses[winner], group.responses[loser]
            if chosen == rejected:
                identical += 1
                continue
            rows.append(_row(record, number, chat_text,
                             {"chosen": " " + chosen.strip(), "rejected": " " + rejected.strip(), "weight": float(weight)},
                             {"chosen_source": _source(record, winner), "rejected_source": _source(record, loser)}))
    return rows, identical


def ranking_rows(records: Sequence[FeedbackRecord], chat_text: ChatText) -> list[dict[str, Any]]:
    """One row per record: the responses as shown, ``ranking`` best → worst, each response's source."""
    return [_row(record, number, chat_text, {"responses": list(record.responses), "ranking": [int(i) for i in record.answer]},
                 {"sources": list(record.sources) if record.sources is not None else None})
            for number, record in enumerate(records)]


def likert_rows(records: Sequence[FeedbackRecord], chat_text: ChatText) -> list[dict[str, Any]]:
    """One row per (record, response): the response, its rating and its source."""
    return [_row(record, number, chat_text, {"response": response, "rating": record.answer[index]},
                 {"source": _source(record, index)})
            for number, record in enumerate(records) for index, response in enumerate(record.responses)]
