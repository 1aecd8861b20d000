"""The across-seeds sections of a comparison report, its console lines and its ``statistics.json``.

What :func:`harness._core.seed_cells.seed_statistics` computes, rendered plainly and honestly: a ranking
by the lead cell (the win rate vs SFT for the built-ins) first — each variant's mean over seeds with its
95% interval and each seed's own value, the groups the ranking cannot split, and a sentence for every
adjacent pair that says in words whether the difference is resolved and, if not, about how many seeds
would resolve it (:func:`harness._core.seed_stats.describe`) — then every numeric cell per variant and
per pair (difference and P(A > B), each with its interval). No winner is bolded: the sentences say
what the data resolves. Fewer than five seeds get a warning that the interval may be too narrow
(docs/statistics.md, "How well the interval covers"); one seed gets intervals over its prompts only and
no claim about seeds.

The sections are blocks (a heading, a paragraph, a table, a list) that the markdown, HTML and console
renderers share, so the three say the same thing.
"""
from __future__ import annotations

import html as html_lib
from typing import Any, Sequence

from harness._core.contracts import ReportRun
from harness._core.report_tables import compact_table
from harness._core.seed_cells import CellStatistics, SeedStatistics, seed_statistics
from harness._core.seed_stats import (CONFIDENCE, MAX_SEEDS, RESAMPLES, SAME_NOTES, PairedDifference, VariantSummary,
                                      describe, interval_text, seeds_needed)

__all__ = ["console_text", "detail_sections", "html", "lead_sections", "markdown", "same_notes", "seed_statistics",
           "to_json"]

FEW_SEEDS = 5  # below this the interval may be too narrow (docs/statistics.md's coverage table)
LEVELS = {  # (seeds > 1, cell level) → what the interval resamples
    (True, "prompts"): "a two-level percentile bootstrap — the seeds resampled, then the prompts within each seed",
    (True, "seeds"): "a percentile bootstrap over the seeds (the cell has one value per run)",
    (False, "prompts"): "a percentile bootstrap over the prompts",
    (False, "seeds"): "",
}
Block = tuple  # ("h", text) | ("p", text) | ("table", header, rows) | ("list", items)


def sections(stats: SeedStatistics) -> list[Block]:
    """The blocks of the across-seeds sections; none for a single run (one variant, one seed)."""
    if stats.lead is None or (len(stats.variants) == 1 and len(stats.seeds) == 1):
        return []
    if len(stats.variants) == 1:
        return _one_variant(stats)
    blocks = _ranking(stats, stats.lead) if stats.lead.ranking else []
    blocks += [("h", "Every cell across seeds" if len(stats.seeds) > 1 else "Every cell, one seed"),
               ("table", ["cell", "variant", "mean [95% CI]", *_seed_titles(stats), *_sd_title(stats), "resampled"],
                [[cell.name, variant, _interval(summary, cell.fmt), *_per_seed(stats, summary, cell.fmt),
                  *_sd(stats, summary, cell.fmt), _resampled(stats, cell)]
                 for cell in stats.cells for variant, summary in _ordered(cell)])]
    several = len(stats.seeds) > 1
    pairs = [[cell.name, f"{a} − {b}", _difference(pair, cell.fmt), *([_prob(stats, pair)] * several),
              "yes" if pair.resolved else "no" if pair.low is not None else "—", *([_needed(pair)] * several)]
             for cell in stats.cells if cell.ranking for (a, b), pair in cell.ranking.pairs.items()]
    if pairs:
        header = ["cell", "pair", "A − B [95% CI]", "P(A > B) [95% CI]", "resolved", "seeds needed"] if several else \
            ["cell", "pair", "A − B [95% CI over the prompts]", "resolved for this seed"]
        blocks.append(("table", header, pairs))
    notes = [f"{cell.name}: {cell.note}" for cell in stats.cells if cell.note] + list(stats.notes)
    return blocks + ([("list", notes)] if notes else [])


def lead_sections(stats: SeedStatistics) -> list[Block]:
    """What a report leads with: the ranking and its sentences (for one variant over seeds, every cell across them)."""
    blocks = sections(stats)
    return blocks[:_details_start(blocks)]


def detail_sections(stats: SeedStatistics) -> list[Block]:
    """The rest, for the report's details: every cell per variant and every pair."""
    blocks = sections(stats)
    return blocks[_details_start(blocks):]


def _details_start(blocks: Sequence[Block]) -> int:
    return next((i for i, b in enumerate(blocks) if b[0] == "h" and b[1].startswith("Every")), len(blocks))


def _ranking(stats: SeedStatistics, lead: CellStatistics) -> list[Block]:
    ranking, fmt, k = lead.ranking, lead.fmt, len(stats.seeds)
    direction = f" ({lead.better} is better)" if lead.better else ""
    blocks: list[Block] = [("h", f"Ranking by {lead.name}{direction}"), ("p", _data_line(stats, lead))]
    letters = {variant: chr(ord("A") + i % 26) for i, group in enumerate(ranking.groups) for variant in group}
    rows = [[str(i), variant, _interval(ranking.summaries[variant], fmt),
             *_per_seed(stats, ranking.summaries[variant], fmt), *([letters[variant]] if k > 1 else [])]
            for i, variant in enumerate(ranking.order, 1)]
    blocks.append(("table", ["rank", "variant", f"{lead.name} [95% CI]", *_seed_titles(stats), *(["group"] * (k > 1))],
                   rows))
    if k > 1 and len(ranking.groups) > 1:
        blocks.append(("p", "Groups: " + " ≻ ".join("{" + ", ".join(g) + "}" for g in ranking.groups)
                       + ": every variant of a group is resolved at 95% from every variant of the other groups; "
                         "within a group not every pair is."))
    elif k > 1:
        blocks.append(("p", "Groups: one, {" + ", ".join(ranking.order) + "}: the ranking does not split into groups "
                       "resolved from each other at 95% (a pair may still be resolved: see the pairs)."))
    sentences = [_sentence(stats, a, b, ranking.pairs[(a, b)], fmt) for a, b in zip(ranking.order, ranking.order[1:])]
    blocks.append(("list", sentences))
    caution = _caution(stats)
    return blocks + ([("p", caution)] if caution else [])


def _one_variant(stats: SeedStatistics) -> list[Block]:
    variant = stats.variants[0]
    rows = [[cell.name, _interval(cell.summaries[variant], cell.fmt), *_per_seed(stats, cell.summaries[variant], cell.fmt),
             *_sd(stats, cell.summaries[variant], cell.fmt), _resampled(stats, cell)]
            for cell in stats.cells if variant in cell.summaries]
    blocks: list[Block] = [("h", f"Across {len(stats.seeds)} seeds"), ("p", _data_line(stats, stats.lead)),
                           ("table", ["cell", "mean [95% CI]", *_seed_titles(stats), "sd between seeds", "resampled"],
                            rows)]
    notes = [f"{cell.name}: {cell.note}" for cell in stats.cells if cell.note]
    caution = _caution(stats)
    return blocks + ([("list", notes)] if notes else []) + ([("p", caution)] if caution else [])


def _data_line(stats: SeedStatistics, cell: CellStatistics) -> str:
    k = len(stats.seeds)
    prompts = f" × {cell.n_prompts} prompts" if cell.level == "prompts" else ""
    method = LEVELS[(k > 1, cell.level)]
    method = f"{CONFIDENCE:.0%} intervals from {method}, {RESAMPLES:,} resamples (docs/statistics.md)." if method else \
        "No intervals: each run gives one value, and one seed has nothing to resample."
    if k == 1:
        return (f"One seed ({stats.seeds[0]}){prompts}: an interval here is over the evaluation prompts only — how "
                "sure we are of this run, not of the method, since another seed may land elsewhere; run several "
                f"seeds ([experiment] seeds = [0, 1, 2], or harness run --seeds 0,1,2) for a claim about the method. {method}")
    return f"{k} seeds ({', '.join(map(str, stats.seeds))}){prompts}; {method}"


def _resampled(stats: SeedStatistics, cell: CellStatistics) -> str:
    several = len(stats.seeds) > 1
    return {(True, "prompts"): "seeds, prompts", (True, "seeds"): "seeds", (False, "prompts"): "prompts"}.get(
        (several, cell.level), "—")


def _caution(stats: SeedStatistics) -> str:
    k = len(stats.seeds)
    if not 1 < k < FEW_SEEDS:
        return ""
    return (f"With {k} seeds an interval may be too narrow: when the runs spread more from seed to seed than a seed's "
            "prompt noise, a nominal 95% interval covers about 80–87% with 3 seeds (docs/statistics.md, \"How well "
            "the interval covers\"). Read each seed's value beside it; more seeds is the remedy.")


def _sentence(stats: SeedStatistics, a: str, b: str, pair: PairedDifference, fmt: str) -> str:
    """The words for ``a − b``: :func:`describe` with P(A > B) over seeds; over one seed's prompts, no seed claim."""
    plain = fmt.lstrip("+")
    if len(stats.seeds) > 1:
        return describe(a, b, pair, fmt=plain) + f"; P({a} > {b}) = {_prob(stats, pair)}"
    shown = f"{a} − {b}: {_difference(pair, fmt)}"
    if pair.low is None:
        return f"{shown}: one value per run, no interval"
    if pair.resolved:
        return f"{shown} over the prompts: resolved for this one seed only; another seed may differ"
    return f"{shown} over the prompts: not resolved, even for this one seed"


# --------------------------------------------------------------------------- values
def _seed_titles(stats: SeedStatistics) -> list[str]:
    return [f"seed {seed}" for seed in stats.seeds] if len(stats.seeds) > 1 else []


def _sd_title(stats: SeedStatistics) -> list[str]:
    return ["sd between seeds"] if len(stats.seeds) > 1 else []


def _sd(stats: SeedStatistics, summary: VariantSummary, fmt: str) -> list[str]:
    return [_num(summary.seed_sd, fmt.lstrip("+"))] if len(stats.seeds) > 1 else []


def _per_seed(stats: SeedStatistics, summary: VariantSummary, fmt: str) -> list[str]:
    return [_num(summary.per_seed.get(seed), fmt) for seed in stats.seeds] if len(stats.seeds) > 1 else []


def _ordered(cell: CellStatistics) -> list[tuple[str, VariantSummary]]:
    order = cell.ranking.order if cell.ranking else tuple(cell.summaries)
    return [(variant, cell.summaries[variant]) for variant in order]


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "—"


def _signed(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, "+" + fmt.lstrip("+")).replace("-", "−")


def _interval(summary: VariantSummary, fmt: str) -> str:
    return interval_text(summary, lambda value: _num(value, fmt))


def _difference(pair: PairedDifference, fmt: str) -> str:
    return interval_text(pair, lambda value: _signed(value, fmt))


def same_notes(text: str) -> list[str]:
    """Why a value marked ``(= every seed)`` or ``(= every prompt)`` stands without its interval: one note per
    mark that ``text`` (a whole page: its tables and sentences) shows, so each is said once."""
    return [note for mark, note in SAME_NOTES.items() if mark in text]


def _prob(stats: SeedStatistics, pair: PairedDifference) -> str:
    """P(A > B) compares runs, so it needs seeds: "—" with one."""
    if len(stats.seeds) == 1:
        return "—"
    shown = f"{pair.prob:.2f}"
    return shown if pair.prob_low is None else f"{shown} [{pair.prob_low:.2f}, {pair.prob_high:.2f}]"


def _needed(pair: PairedDifference) -> str:
    if pair.resolved or pair.mean == 0.0 or pair.seed_sd is None:
        return "—"
    needed = seeds_needed(pair)
    return f"> {MAX_SEEDS:,}" if needed is None else str(max(needed, pair.n_seeds + 1))


# --------------------------------------------------------------------------- renderers
def markdown(stats: SeedStatistics, blocks: Sequence[Block] | None = None, depth: int = 2) -> list[str]:
    """The sections (or ``blocks`` of them) as markdown lines (a blank line after each block), headings at ``depth``."""
    lines: list[str] = []
    for block in sections(stats) if blocks is None else blocks:
        if block[0] == "h":
            lines += [f"{'#' * depth} {block[1]}", ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        else:
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows), ""]
    return lines


def html(stats: SeedStatistics, blocks: Sequence[Block] | None = None, depth: int = 2) -> str:
    """The sections (or ``blocks`` of them) as HTML (headings at ``depth``, paragraphs, tables, lists)."""
    out = []
    for block in sections(stats) if blocks is None else blocks:
        if block[0] == "h":
            out.append(f"<h{depth}>{html_lib.escape(block[1])}</h{depth}>")
        elif block[0] == "p":
            out.append(f"<p>{html_lib.escape(block[1])}</p>")
        elif block[0] == "list":
            out.append("<ul>" + "".join(f"<li>{html_lib.escape(item)}</li>" for item in block[1]) + "</ul>")
        else:
            head = "".join(f"<th>{html_lib.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html_lib.escape(c)}</td>" for c in row) + "</tr>" for row in block[2])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    return "".join(out)


def console_text(stats: SeedStatistics, runs: Sequence[ReportRun] = ()) -> str:
    """What ``harness run`` and ``harness compare`` print: the ranking (or, for one variant over seeds, every
    cell across them) and, given the ``runs``, the report's compact table, as aligned text that fits a terminal;
    empty for a single run. The report has every cell, run and pair."""
    blocks = lead_sections(stats)
    if blocks and runs and len(stats.variants) > 1:
        blocks += [("h", "At a glance"), ("table", *compact_table(runs, stats))]
    lines = []
    for block in blocks:
        if block[0] == "h":
            lines += ["", block[1], "-" * len(block[1])]
        elif block[0] == "p":
            lines.append(block[1])
        elif block[0] == "list":
            lines += [f"  {item}" for item in block[1]]
        else:
            lines += _aligned(block[1], block[2])
    notes = same_notes("\n".join(lines))
    return "\n".join(lines + ([""] + notes if notes else [])).lstrip("\n")


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(f"{str(c):<{w}}" for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def to_json(stats: SeedStatistics) -> dict[str, Any]:
    """``statistics.json``: every number of the sections, with each pair's sentence."""
    def summary(s: VariantSummary) -> dict[str, Any]:
        return {"mean": s.mean, "low": s.low, "high": s.high, "per_seed": {str(k): v for k, v in s.per_seed.items()},
                "seed_sd": s.seed_sd, "n_seeds": s.n_seeds, "n_prompts": s.n_prompts}

    def pair(a: str, b: str, p: PairedDifference, cell: CellStatistics) -> dict[str, Any]:
        return {"a": a, "b": b, "difference": p.mean, "low": p.low, "high": p.high, "resolved": p.resolved,
                "prob": p.prob if len(stats.seeds) > 1 else None, "prob_low": p.prob_low if len(stats.seeds) > 1 else None,
                "prob_high": p.prob_high if len(stats.seeds) > 1 else None,
                "per_seed": {str(k): v for k, v in p.per_seed.items()}, "seed_sd": p.seed_sd,
                "unpaired_seeds": list(p.unpaired_seeds), "seeds_needed": None if p.resolved else seeds_needed(p),
                "sentence": _sentence(stats, a, b, p, cell.fmt)}

    return {
        "seeds": list(stats.seeds), "variants": list(stats.variants), "confidence": CONFIDENCE, "resamples": RESAMPLES,
        "method": LEVELS[(True, "prompts")], "notes": list(stats.notes),
        "lead": {"evaluator": stats.lead.evaluator, "name": stats.lead.name} if stats.lead else None,
        "cells": [{"evaluator": c.evaluator, "name": c.name, "better": c.better, "fmt": c.fmt, "level": c.level,
                   "note": c.note, "n_prompts": c.n_prompts,
                   "variants": {v: summary(s) for v, s in c.summaries.items()},
                   "order": list(c.ranking.order) if c.ranking else None,
                   "groups": [list(g) for g in c.ranking.groups] if c.ranking else None,
                   "pairs": [pair(a, b, p, c) for (a, b), p in c.ranking.pairs.items()] if c.ranking else []}
                  for c in stats.cells],
    }
