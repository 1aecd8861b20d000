"""The tables of a comparison report: a compact one to read at a glance, the details below it.

Why split: a comparison of a dozen cells in one table is 17 columns that scroll sideways, with
breakdowns wrapped into many lines. The compact table has one row per variant and a column for the
lead cell and each cell a component marked ``compact`` (:class:`harness._core.contracts.Cell`: the
built-ins mark the length-controlled win rate, Δgold and KL), each the mean over seeds with its 95%
interval (:mod:`harness._core.seed_cells`); a cell with an SFT value shows its change (value − before).
The details table has one row per run and every other numeric cell; breakdowns (cells with ``text``)
go into a narrow table of their own. The core knows no evaluator's keys: it reads what cells declare.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from harness._core.contracts import ReportRun
from harness._core.report_points import run_keys
from harness._core.seed_cells import CellStatistics, SeedStatistics
from harness._core.seed_stats import VariantSummary, interval_text, variant_summary
from harness._core.summary import cell_of

SLOT_COLUMNS = ("optimizer", "reward", "feedback")  # the component slots a comparison usually varies
Key = tuple[str, str]  # (evaluator, cell name)
Table = tuple[list[str], list[list[str]]]  # (header, rows)


def compact_keys(runs: Sequence[ReportRun], stats: SeedStatistics) -> list[tuple[Key, str]]:
    """(cell key, column title) of the compact table: the lead cell first, then every cell marked ``compact``
    (its evaluator's first: the length-controlled win rate beside the win rate), in the runs' order."""
    found: dict[Key, str] = {}
    if stats.lead is not None:
        found[(stats.lead.evaluator, stats.lead.name)] = ""
    for run in runs:
        for cell in run["results"].get("headline", []):
            key = (str(cell.get("evaluator")), str(cell.get("name")))
            if cell.get("text") is None and (cell.get("compact") or key in found):
                found[key] = found.get(key) or str(cell.get("compact") or "")
    ordered = sorted(found.items(), key=lambda item: stats.lead is None or item[0][0] != stats.lead.evaluator)
    return [(key, title or key[1]) for key, title in ordered]  # the lead, its evaluator's cells, then the rest


def compact_table(runs: Sequence[ReportRun], stats: SeedStatistics) -> Table:
    """One row per variant (ranking order): the compact cells' means over seeds with their 95% intervals, "—"
    where a variant's runs lack the cell."""
    keys = compact_keys(runs, stats)
    by_key = {(c.evaluator, c.name): c for c in stats.cells}
    order = list(stats.lead.ranking.order) if stats.lead and stats.lead.ranking else list(stats.variants)
    columns = []
    for key, title in keys:
        cell = by_key.get(key)
        changes = _changes(runs, key, cell)
        summaries = changes if changes is not None else (cell.summaries if cell else {})
        if changes is None:
            summaries = {v: _declared_interval(runs, key, v, s) for v, s in summaries.items()}
        fmt = cell.fmt if cell else ".3f"
        columns.append((title + " [95% CI]", {v: _shown(s, "+" + fmt.lstrip("+") if changes is not None else fmt)
                                             for v, s in summaries.items()}))
    return (["variant", *(title for title, _ in columns)],
            [[variant, *(values.get(variant, "—") for _, values in columns)] for variant in order])


def _changes(runs: Sequence[ReportRun], key: Key, cell: CellStatistics | None) -> dict[str, VariantSummary] | None:
    """Per variant, the cell's change from its SFT value (value − before) across seeds, when its runs give
    ``before``; None otherwise. Per prompt when the cell is read per prompt (before is one number per seed)."""
    if cell is None:
        return None
    gathered: dict[str, dict[int, Any]] = {}
    for run, (variant, seed) in zip(runs, run_keys(runs)):
        data = next((c for c in run["results"].get("headline", []) if (c.get("evaluator"), c.get("name")) == key), None)
        if data is None or not _finite(data.get("value")) or not _finite(data.get("before")):
            continue
        values = data.get("per_prompt") if cell.level == "prompts" and data.get("per_prompt") else [data["value"]]
        gathered.setdefault(variant, {})[seed] = np.asarray(values, dtype=float) - data["before"]
    if not gathered:
        return None
    return {variant: variant_summary(per_seed, name=variant) for variant, per_seed in gathered.items()}


def _declared_interval(runs: Sequence[ReportRun], key: Key, variant: str, summary: VariantSummary) -> VariantSummary:
    """A variant of one seed shows the interval its cell declared (the win rate's Wilson interval, a plugin's
    own), as the run summary does; across seeds, the bootstrap's."""
    if summary.n_seeds != 1:
        return summary
    for run, (name, _) in zip(runs, run_keys(runs)):
        data = next((c for c in run["results"].get("headline", []) if (c.get("evaluator"), c.get("name")) == key), {})
        if name == variant and _finite(data.get("low")) and _finite(data.get("high")):
            return dataclasses.replace(summary, low=data["low"], high=data["high"])
    return summary


def _shown(summary: VariantSummary, fmt: str) -> str:
    return interval_text(summary, lambda value: _num(value, fmt).replace("-", "−"))  # the ranking's minus sign


def details_table(runs: Sequence[ReportRun], skip: Sequence[Key] = ()) -> Table:
    """One row per run: its component slots, every numeric cell not in ``skip`` (the compact table's) and wall times."""
    by_run = [{(c.get("evaluator"), c.get("name")): c for c in r["results"].get("headline", [])} for r in runs]
    keys = [key for key in dict.fromkeys(k for cells in by_run for k in cells)
            if key not in skip and not any(cells.get(key, {}).get("text") is not None for cells in by_run)]
    header, columns = ["run", *SLOT_COLUMNS], []
    for key in keys:
        interval = any(cells[key].get("low") is not None for cells in by_run if key in cells)
        header.append(key[1] + (" [95% CI]" if interval else ""))
        columns.append([cell_of(cells[key]).render().replace("95% CI ", "") if key in cells else "—" for cells in by_run])
    stages = [r["results"].get("stages", {}).get("policy", {}) for r in runs]
    header += ["policy s", "total s"]
    columns += [[_num(s.get("wall_s"), ".0f") for s in stages],
                [_num(r["results"].get("compute_s", r["results"].get("wall_s")), ".0f") for r in runs]]
    rows = [[run["label"], *(str(run["results"].get("components", {}).get(slot) or "—") for slot in SLOT_COLUMNS),
             *(column[i] for column in columns)] for i, run in enumerate(runs)]
    return header, rows


def breakdowns(runs: Sequence[ReportRun]) -> Table:
    """The cells that are text, not a number (``length 23/41 · task 35/14``): one row per run and cell."""
    rows = [[run["label"], str(c.get("name")), str(c["text"]) + (f" ({c['note']})" if c.get("note") else "")]
            for run in runs for c in run["results"].get("headline", []) if c.get("text") is not None]
    return ["run", "cell", "breakdown"], rows


def markdown_table(table: Table) -> list[str]:
    header, rows = table
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]


def html_table(table: Table, css: str = "") -> str:
    import html

    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<t{'h' if i == 0 else 'd'}>{html.escape(c)}</t{'h' if i == 0 else 'd'}>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{f' class={css!r}' if css else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if _finite(value) else "—"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
