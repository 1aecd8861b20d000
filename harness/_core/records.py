"""The data records every stage and plugin shares: prompts, demonstrations, feedback, preference pairs,
evaluation samples, and the headline cells and report plots evaluators declare.

Frozen dataclasses, re-exported by :mod:`harness._core.contracts` (import them from there). A feedback
record is what the ``feedback`` stage writes, one JSON object per line of
``runs/<experiment>/feedback/feedback.jsonl``, and what every consumer reads back through
``ctx.feedback_records()``:

    {"prompt_id", "prompt": <Prompt as dict>, "responses": [...], "annotator": name,
     <field>: <answer>, "sources": ["sft" | "world", ...]}   # "sources" only when a candidate source gave them
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, NotRequired, Sequence, TypedDict

from harness._core.errors import CorruptFileError
from harness._core.io import atomic_write_text, read_jsonl

Split = Literal["sft", "rm", "rl", "eval"]
FEEDBACK_FILE = "feedback.jsonl"  # in the feedback stage's directory (``ctx.artifacts["feedback"]``)
RECORD_KEYS = ("prompt_id", "prompt", "responses", "annotator", "sources")  # every record's keys but its answer's


@dataclass(frozen=True)
class Prompt:
    """One instruction. ``answer`` is the checkable answer (None where the right move is to decline)."""

    id: str
    kind: str
    text: str
    answer: str | None = None
    harmful: bool = False


@dataclass(frozen=True)
class Demonstration:
    """A prompt and a demonstrator's response (SFT data)."""

    prompt: Prompt
    response: str
    demonstrator: str = ""


@dataclass(frozen=True)
class PreferenceGroup:
    """Responses to one prompt with weighted (winner, loser) index pairs.

    Every feedback format reduces its records to these, so one Bradley–Terry loss
    ``sum(weight * -log σ(r[w] - r[l]))`` trains a reward model from pairs, K-wise rankings
    (all C(K,2) pairs, weight 1/C(K,2), InstructGPT §3.5) or Likert ratings (derived pairs).
    DPO reads the same groups as (chosen, rejected) pairs.
    """

    prompt: Prompt
    responses: tuple[str, ...]
    pairs: tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class FeedbackRecord:
    """One annotator's answer about one item (a prompt and its candidate responses).

    ``field`` names the kind of answer, the feedback format's record key (``choice``: the index of
    the preferred response; ``ranking``: indices best → worst; ``ratings``: one per response);
    ``answer`` holds it, lists as tuples. ``sources`` says where each response came from
    (``"sft"``: a π_SFT sample, ``"world"``: the world's writers) when a candidate source gave them.
    """

    prompt: Prompt
    responses: tuple[str, ...]
    annotator: str
    field: str
    answer: Any
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.field in RECORD_KEYS:
            raise ValueError(f"a feedback record's answer cannot be named {self.field!r} (one of {', '.join(RECORD_KEYS)})")
        object.__setattr__(self, "responses", tuple(self.responses))
        object.__setattr__(self, "answer", tuple(self.answer) if isinstance(self.answer, list) else self.answer)
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(self.sources))

    def to_json(self) -> dict[str, Any]:
        """The record as one line of ``feedback.jsonl`` holds it (see the module docstring)."""
        answer = list(self.answer) if isinstance(self.answer, tuple) else self.answer
        data = {"prompt_id": self.prompt.id, "prompt": dataclasses.asdict(self.prompt), "responses": list(self.responses),
                "annotator": self.annotator, self.field: answer}
        return data if self.sources is None else data | {"sources": list(self.sources)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedbackRecord:
        """The record :meth:`to_json` wrote; ``ValueError`` naming what is wrong otherwise."""
        answers = [key for key in data if key not in RECORD_KEYS]
        missing = [key for key in RECORD_KEYS[:4] if key not in data]
        if missing or len(answers) != 1:
            raise ValueError(f"expected the keys {', '.join(RECORD_KEYS[:4])} and one answer; "
                             f"{'missing ' + ', '.join(missing) if missing else 'answers: ' + (', '.join(answers) or 'none')}")
        prompt = Prompt(**data["prompt"])
        if prompt.id != data["prompt_id"]:
            raise ValueError(f"prompt_id {data['prompt_id']!r} is not the prompt's id {prompt.id!r}")
        return cls(prompt, data["responses"], data["annotator"], answers[0], data[answers[0]], data.get("sources"))


@dataclass(frozen=True)
class EvalSamples:
    """One sample per held-out prompt from the policy and from π_SFT, drawn once and shared by evaluators.

    ``kl`` is the per-prompt sum over the policy's response tokens of log π_θ − log π_SFT.
    """

    prompts: tuple[Prompt, ...]
    policy: tuple[str, ...]
    sft: tuple[str, ...]
    kl: tuple[float, ...]


@dataclass(frozen=True)
class Cell:
    """One headline number an evaluator declares: a row of the run summary, a column of ``harness compare``.

    ``value`` (and ``before``, the SFT model's value where one is compared, shown ``before → value``) are
    formatted with ``fmt``; ``low``/``high`` is its interval (shown ``[95% CI low, high]``); ``better`` says
    which direction is an improvement; ``note`` qualifies it in the summary (``gold judge, n=200``); ``text``
    replaces the number for a cell that is not one (a breakdown). The core knows no evaluator's keys: it
    shows the cells evaluators declare, in order.

    Across seeds (``[experiment] seeds``, docs/statistics.md) a comparison reads every numeric cell through a
    two-level bootstrap: over seeds, then over prompts within a seed. ``per_prompt`` gives the second level:
    the per-prompt values whose mean is ``value`` (the same prompts, in the same order, in every run of a
    seed); without it the bootstrap is over seeds only. ``lead`` marks the run's main number: a comparison
    ranks its variants by the first lead cell (the built-in win rate vs SFT is one).

    ``compact`` puts the cell in the short table at the top of a comparison report, under that column
    title (``"KL"``); a cell with ``before`` shows there as its change ``value − before`` (``"Δgold"``). The
    lead cell is always there; every other cell goes in the report's details below it.
    """

    name: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    better: Literal["higher", "lower"] | None = None
    before: float | None = None
    fmt: str = ".3f"
    note: str = ""
    text: str | None = None
    per_prompt: tuple[float, ...] | None = None
    lead: bool = False
    compact: str = ""

    def __post_init__(self) -> None:
        if self.per_prompt is None:
            return
        values = tuple(float(v) for v in self.per_prompt)
        object.__setattr__(self, "per_prompt", values)
        if not values or not isinstance(self.value, (int, float)) or self.text is not None:
            raise ValueError(f"cell {self.name!r}: per_prompt needs a numeric value (their mean) and at least one value")
        mean, scale = sum(values) / len(values), max(abs(v) for v in values)
        if abs(mean - self.value) > 1e-6 + 1e-5 * scale:  # rounding to 6 decimals keeps well inside this
            raise ValueError(f"cell {self.name!r}: per_prompt averages {mean!r}, not its value {self.value!r}; "
                             "give the per-prompt values whose mean the cell shows")

    def render(self) -> str:
        """The cell as read: ``0.460 [95% CI 0.392, 0.529]``, ``0.015 → 0.414``, or its ``text``."""
        if self.text is not None:
            return self.text
        shown = _number(self.value, self.fmt)
        if self.before is not None:
            shown = f"{_number(self.before, self.fmt)} → {shown}"
        if self.low is not None or self.high is not None:
            shown += f" [95% CI {_number(self.low, self.fmt)}, {_number(self.high, self.fmt)}]"
        return shown


class ReportRun(TypedDict):
    """One run of a ``harness compare`` report, as :func:`harness._core.report.load_runs` reads it."""

    label: str  # the variant's label (or the run directory's name)
    dir: Path  # the run directory
    results: dict[str, Any]  # its results.json
    curve: list[dict[str, Any]]  # its training curve: {"step", "reward/proxy", "reward/gold", "kl"} per step
    variant: NotRequired[str]  # the variant it is a run of: runs of one variant differ only in their seed
    seed: NotRequired[int]  # its [experiment] seed


@dataclass(frozen=True)
class Plot:
    """One figure a component contributes to a ``harness compare`` report (see :class:`~harness._core.contracts.PlottingComponent`).

    ``draw(plt)`` gets ``matplotlib.pyplot`` (Agg backend) and returns the figure; the report saves it as
    ``file`` (a ``.png`` name, unique in the report), closes it, and shows it with ``note`` (a paragraph
    under the image, may be empty).
    """

    file: str
    draw: Callable[[Any], Any]
    note: str = ""


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and value == value else "—"


def write_feedback(path: Path, records: Sequence[FeedbackRecord]) -> None:
    """``records`` as JSONL, written atomically."""
    atomic_write_text(path, "".join(json.dumps(r.to_json()) + "\n" for r in records))


def read_feedback(path: Path, fix: str = "move it aside and rerun: the feedback stage collects it again") -> list[FeedbackRecord]:
    """The records of a ``feedback.jsonl``, in order; a line that is not a record is a :class:`CorruptFileError`."""
    return records_from_rows(read_jsonl(path, fix), path, fix)


def records_from_rows(rows: Sequence[dict[str, Any]], path: Path, fix: str) -> list[FeedbackRecord]:
    """JSON objects read from ``path`` as records; one that is not a record is a :class:`CorruptFileError`."""
    records = []
    for number, row in enumerate(rows, 1):
        try:
            records.append(FeedbackRecord.from_json(row))
        except (TypeError, ValueError) as err:
            raise CorruptFileError(f"{path}: record {number}", f"not a feedback record ({err})", fix) from None
    return records
