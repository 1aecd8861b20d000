"""``harness export feedback``: a finished run's feedback as a dataset the rest of the ecosystem reads.

The ``hf_data`` world reads recorded preference data; this is the other direction. A run's
``feedback/feedback.jsonl`` (typed :class:`~harness._core.records.FeedbackRecord` s) becomes one
``datasets``-loadable file in ``--out`` (JSONL, or Parquet), in one of three layouts
(:mod:`harness._core.export_rows` says what each column holds):

- ``trl-preference``: trl's preference form, ``prompt`` / ``chosen`` / ``rejected``, one row per pair
  that the run's feedback format's ``preference_groups`` yields, so the export holds the pairs the reward
  model and DPO trained on, with their ``weight``; ``hf_data`` reads it as ``format = "pairwise"``;
- ``ranking``: ``prompt`` / ``responses`` / ``ranking`` (``hf_data``'s ``format = "ranking"``);
- ``likert``: ``prompt`` / ``response`` / ``rating`` (``hf_data``'s ``format = "rating"``).

What a run's records can give decides what it exports: pairwise choices only pairs, rankings pairs or
rankings, ratings pairs or ratings (:data:`EXPORTABLE`); anything else is one error naming both.

The format that turns records into pairs is the one that collected them, rebuilt from the feedback
stage's manifest (its ``inputs.config``; ``resolved_config.json`` for a stage written before manifests
kept it), and the prompt text is the run's world's ``chat_text``; so ``-p`` must load any third-party
plugin the run used. Beside the data goes a dataset card (``README.md``) whose YAML header names the data
file for ``datasets.load_dataset(out)`` and whose text says where the data came from and how trl and
``hf_data`` read it. The directory is written whole and atomically; one already there is replaced only
with ``force`` and only when it holds nothing but an earlier export's files.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness._core.errors import HarnessError
from harness._core.io import atomic_directory, read_json
from harness._core.records import FEEDBACK_FILE, FeedbackRecord, PreferenceGroup, read_feedback
from harness._core.results import CONFIG
from harness._core.runstore import MANIFEST

LAYOUTS = ("trl-preference", "ranking", "likert")
FILE_TYPES = ("jsonl", "parquet")
EXPORTABLE = {"choice": ("trl-preference",), "ranking": ("trl-preference", "ranking"),
              "ratings": ("trl-preference", "likert")}  # a record's answer field -> the layouts it can give
HF_DATA_FORMAT = {"trl-preference": "pairwise", "ranking": "ranking", "likert": "rating"}  # [world.hf_data.feedback] format
CARD = "README.md"
DATA_FILES = tuple(f"feedback.{kind}" for kind in FILE_TYPES)
STAGE = "feedback"  # the run directory's link to its feedback stage


@dataclass(frozen=True)
class RunFeedback:
    """A run's feedback records with what reads them as the run did: its format, its world, its groups."""

    run_dir: Path
    path: Path  # <run>/feedback/feedback.jsonl
    records: list[FeedbackRecord]
    format_name: str  # the feedback format that collected them
    groups: list[PreferenceGroup]  # one per record, by that format's preference_groups
    world: Any  # the run's world (its chat_text is what the policy was conditioned on)
    world_name: str

    @property
    def field(self) -> str:
        return self.records[0].field


@dataclass(frozen=True)
class Exported:
    """What :func:`export_feedback` wrote."""

    out: Path
    data: Path
    rows: int
    records: int
    left_out: int  # pairs of two identical responses (trl-preference)


def export_feedback(run_dir: Path, layout: str, out: Path, registry, *, file_type: str = "jsonl",
                    force: bool = False) -> Exported:
    """Write ``run_dir``'s feedback in ``layout`` to ``out/feedback.<file_type>`` with a dataset card."""
    from harness._core.export_rows import likert_rows, preference_rows, ranking_rows

    if layout not in LAYOUTS or file_type not in FILE_TYPES:
        raise HarnessError(f"export: layout {layout!r} / file type {file_type!r}; layouts: {', '.join(LAYOUTS)}, "
                           f"file types: {', '.join(FILE_TYPES)}")
    out = Path(out)
    check_out(out, force)
    feedback = load_run_feedback(Path(run_dir), registry)
    allowed = EXPORTABLE.get(feedback.field, ("trl-preference",))
    if layout not in allowed:
        raise HarnessError(f"{feedback.path}: the run's feedback is {feedback.format_name} ({feedback.field!r} "
                           f"records), which exports as {' or '.join(allowed)}, not {layout}; pass "
                           f"--format {allowed[-1]}.")
    left_out = 0
    if layout == "trl-preference":
        rows, left_out = preference_rows(feedback.records, feedback.groups, feedback.world.chat_text)
    elif layout == "ranking":
        rows = ranking_rows(feedback.records, feedback.world.chat_text)
    else:
        rows = likert_rows(feedback.records, feedback.world.chat_text)
    if not rows:
        raise HarnessError(f"{feedback.path}: its {len(feedback.records)} records give no {layout} rows "
                           f"({left_out} pairs of two identical responses left out); nothing to export.")
    name = f"feedback.{file_type}"
    with atomic_directory(out) as tmp:
        _write_rows(tmp / name, rows, file_type)
        (tmp / CARD).write_text(dataset_card(feedback, layout, name, out, len(rows), left_out), encoding="utf-8")
    return Exported(out, out / name, len(rows), len(feedback.records), left_out)


# ----------------------------------------------------------------- the run's feedback
def load_run_feedback(run_dir: Path, registry) -> RunFeedback:
    """The run's records, grouped by the format that collected them, and its world; one error naming the path
    and the fix when ``run_dir`` is not a run with a finished feedback stage."""
    path = feedback_file(run_dir)
    stage_dir = path.parent
    manifest = _finished_manifest(stage_dir)
    records = read_feedback(path)
    if not records:
        raise HarnessError(f"{path}: no feedback records; nothing to export.")
    fields = sorted({r.field for r in records})
    if len(fields) > 1:
        raise HarnessError(f"{path}: records of several kinds ({', '.join(fields)}); a run's feedback is of one "
                           f"format. Rerun the experiment to collect it again.")
    config = _read_config(run_dir)
    fb_config = ((manifest or {}).get("inputs") or {}).get("config", {}).get("feedback") or config.get("feedback")
    if not isinstance(fb_config, dict) or "name" not in fb_config:
        raise HarnessError(f"{stage_dir}: neither its manifest nor {run_dir / CONFIG} names the "
                           f"feedback format that collected it; rerun the experiment.")
    fmt = _build(registry, "feedback_format", "feedback", fb_config, run_dir)
    expected = getattr(fmt, "field", fields[0])
    if expected != fields[0]:
        raise HarnessError(f"{path}: {fields[0]!r} records, but feedback format {fb_config['name']!r} reads "
                           f"{expected!r} records; rerun the experiment to collect them again.")
    groups = fmt.preference_groups(records)
    if len(groups) != len(records):
        raise HarnessError(f"feedback format {fb_config['name']!r}: preference_groups returned {len(groups)} groups "
                           f"for {len(records)} records; it must return exactly one per record, in order.")
    world_config = config.get("world")
    seed = int((config.get("experiment") or {}).get("seed", 0))
    world = _build(registry, "world", "world", world_config, run_dir, seed=seed)
    return RunFeedback(Path(run_dir), path, records, fb_config["name"], groups, world, world_config["name"])


def feedback_file(run_dir: Path) -> Path:
    """``<run>/feedback/feedback.jsonl``, or one error saying what ``run_dir`` is instead and what to pass."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run directory; pass the folder `harness run` wrote (runs/<experiment>).")
    path = run_dir / STAGE / FEEDBACK_FILE
    if path.is_file():
        return path
    nested = sorted(d.name for d in run_dir.iterdir() if (d / STAGE / FEEDBACK_FILE).is_file())
    if nested:
        kind = "a comparison" if (run_dir / "comparison.json").is_file() else "several runs"
        raise HarnessError(f"{run_dir} holds {kind}, not one run: export one of its runs ({', '.join(nested)}), "
                           f"e.g. `harness export feedback {run_dir / nested[0]} --out …`.")
    raise HarnessError(f"{run_dir}: no feedback stage ({Path(STAGE) / FEEDBACK_FILE} is missing); pass a run "
                       f"directory (runs/<experiment>) whose feedback stage finished, or rerun the experiment.")


def _finished_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The feedback stage's manifest (None for a stage without one); an unfinished or damaged stage is an error."""
    from harness._core.integrity import damaged

    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, fix=f"rerun the experiment (the feedback stage {stage_dir} is redone)")
    if manifest.get("status") != "finished":
        raise HarnessError(f"{stage_dir}: the feedback stage is {manifest.get('status')}, not finished; rerun the "
                           f"experiment to finish it.")
    problem = damaged(stage_dir, manifest.get("files") or {})
    if problem:
        raise HarnessError(f"{problem}; rerun the experiment (the feedback stage is redone).")
    return manifest


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise HarnessError(f"{run_dir}: no {CONFIG} (the run's world and feedback format); rerun the "
                           f"experiment to write it.")
    return read_json(path, fix="rerun the experiment to write it again")


def _build(registry, family: str, table: str, choice: Any, run_dir: Path, **kwargs):
    """The component a run's config table ``[table]`` (``{"name": …, <name>: {options}}``) names, as the run built it."""
    from harness._core.config import validate_options

    if not isinstance(choice, dict) or not isinstance(choice.get("name"), str):
        raise HarnessError(f"{run_dir / CONFIG}: no [{table}] table naming the run's "
                           f"{family.replace('_', ' ')}; rerun the experiment to write it again.")
    where = f"{run_dir}: [{table}] name"
    component = registry.get(family, choice["name"], where=where)
    options = validate_options(component.options_model, choice.get(choice["name"]) or {}, str(run_dir),
                               f"{table}.{choice['name']}", registry)
    return component.factory(options, **kwargs)


# ----------------------------------------------------------------- the output directory
def check_out(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` without ``force``, and, even with it, one holding files no export wrote."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out}: a file, not a directory; choose a directory for the export.")
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if found and not force:
        raise HarnessError(f"--out {out} is not empty ({', '.join(found[:3])}{', …' if len(found) > 3 else ''}); "
                           f"pass --force to replace an earlier export there, or choose another --out.")
    foreign = [name for name in found if name not in (CARD, *DATA_FILES)]
    if foreign:
        raise HarnessError(f"--out {out} holds {foreign[0]!r}, which no export wrote; --force replaces only an "
                           f"earlier export, so choose another --out.")


def _write_rows(path: Path, rows: Sequence[dict[str, Any]], file_type: str) -> None:
    if file_type == "jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(list(rows)), str(path))


# ----------------------------------------------------------------- the dataset card
COLUMNS = {
    "prompt": "the chat text the policy was conditioned on (the world's template applied)",
    "prompt_text": "the prompt as written (for a reader that applies its own template)",
    "prompt_id": "the prompt's id in the run's world",
    "annotator": "who labelled the record",
    "record": "the record's 0-based line in the run's feedback.jsonl",
    "chosen": "the preferred response, as the completion after the prompt (leading space)",
    "rejected": "the other response, likewise",
    "weight": "the pair's weight in the reward model's loss (a ranking's C(K,2) pairs share 1)",
    "chosen_source": "where the chosen response came from ('sft': a π_SFT sample, 'world': the world's writers)",
    "rejected_source": "likewise for the rejected response",
    "responses": "the responses, in the order the annotator saw them",
    "ranking": "indices into responses, best first",
    "sources": "where each response came from",
    "response": "one rated response",
    "rating": "its rating",
    "source": "where the response came from",
}
LAYOUT_COLUMNS = {
    "trl-preference": ("prompt", "chosen", "rejected", "weight", "prompt_text", "prompt_id", "annotator",
                       "chosen_source", "rejected_source", "record"),
    "ranking": ("prompt", "responses", "ranking", "prompt_text", "prompt_id", "annotator", "sources", "record"),
    "likert": ("prompt", "response", "rating", "prompt_text", "prompt_id", "annotator", "source", "record"),
}


def hf_data_table(feedback: RunFeedback, layout: str, data: Path) -> dict[str, Any]:
    """The ``[world.hf_data]`` keys that read the export back with the run's prompts and chat text: the
    ``prompt_text`` column under the world's template when one format string gives every ``chat_text``, else
    the ``prompt`` column as it is (``chat_template = "{prompt}"``)."""
    template = feedback.world.chat_text(dataclasses.replace(feedback.records[0].prompt, text="{prompt}"))
    fits = "{prompt}" in template and all(template.replace("{prompt}", r.prompt.text) == feedback.world.chat_text(r.prompt)
                                          for r in feedback.records)
    table = {"path": str(data), "format": HF_DATA_FORMAT[layout]}
    if fits:
        return {"chat_template": template, "feedback": table | {"columns": {"prompt": "prompt_text"}}}
    return {"chat_template": "{prompt}", "feedback": table}


def dataset_card(feedback: RunFeedback, layout: str, name: str, out: Path, n_rows: int, left_out: int) -> str:
    """README.md: a YAML header naming the data file (``load_dataset(out)``), provenance, columns, how to read it."""
    import tomli_w

    from harness import __version__

    header = ["---", "configs:", "- config_name: default", "  data_files:", "  - split: train", f"    path: {name}",
              "---", ""]
    note = f" {left_out} pairs of two identical responses were left out (no preference in them)." if left_out else ""
    hf_data = tomli_w.dumps({"world": {"hf_data": hf_data_table(feedback, layout, out / name)}})
    body = [
        f"# Feedback of run `{feedback.run_dir.name}`: {layout}", "",
        f"Exported by `harness export feedback` (harness {__version__}) from `{feedback.path}`: "
        f"{len(feedback.records)} records of the run's `{feedback.format_name}` feedback in world "
        f"`{feedback.world_name}`, as {n_rows} rows.{note}", "",
        "| column | what it holds |", "| --- | --- |",
        *(f"| `{column}` | {COLUMNS[column]} |" for column in LAYOUT_COLUMNS[layout]), "",
        "## Reading it", "",
        f"`datasets.load_dataset(\"json\", data_files=\"{name}\")`"
        if name.endswith(".jsonl") else f"`datasets.load_dataset(\"parquet\", data_files=\"{name}\")`",
        "(or `load_dataset(\"<this directory>\")`, which this card's header points at the data file).", "",
    ]
    if layout == "trl-preference":
        body += ["trl's `DPOTrainer` (and `RewardTrainer`) take it as `train_dataset`: `prompt` is plain text that "
                 "trl conditions on as it is, `chosen`/`rejected` the completions (trl appends EOS). The extra "
                 "columns are dropped by trl's default `remove_unused_columns=True`; trl has no per-pair weight "
                 "(`weight`), so a ranking's pairs count as C(K,2) comparisons there unless you weight them.", ""]
    body += ["The harness's `hf_data` world reads it back (recorded feedback for a new run):", "", "```toml",
             hf_data.strip(), "```", ""]
    if layout == "trl-preference":
        body += ["`hf_data` reads each pair as one pairwise record of weight 1; to keep a ranking's weights, "
                 "export `--format ranking` instead.", ""]
    return "\n".join(header + body)
