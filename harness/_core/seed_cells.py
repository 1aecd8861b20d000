"""Every numeric headline cell of a comparison's runs, read across seeds through :mod:`harness._core.seed_stats`.

A comparison's runs are variants × seeds (``[experiment] seeds``, :mod:`harness._core.seeds`). For each
numeric cell the runs declared (:class:`harness._core.contracts.Cell`) this gathers, per variant and
seed, the cell's per-prompt values — or its one value, when the cell has none — and computes each
variant's mean over seeds with its two-level bootstrap interval, every pair's paired difference with
P(A > B), and the ranking (:func:`harness._core.seed_stats.rank`). The report (:mod:`harness._core.seed_report`)
renders what this computes; nothing here formats text.

A cell is read at the prompt level only when every run gives ``per_prompt`` values that average to its
value and the variants of each seed have as many of them (the same prompts, as runs of one experiment
have); otherwise every run of the cell gives one value per seed and the bootstrap is over seeds only —
mixing the two would pair unlike things. Which it was, and why, is kept with the cell (``level``, ``note``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from harness._core.contracts import ReportRun
from harness._core.report_points import run_key, run_keys
from harness._core.seed_stats import Ranking, VariantSummary, rank, variant_summary

Key = tuple[str, str]  # (evaluator, cell name)


@dataclass(frozen=True)
class CellStatistics:
    """One headline cell across the runs: per variant its summary over seeds; the ranking where there is one.

    ``level``: ``"prompts"`` (seeds, then each seed's prompts, are resampled) or ``"seeds"`` (each seed's one
    value). ``ranking`` is None with one variant, or when some two variants share no seed (nothing to pair;
    ``note`` says which).
    """

    evaluator: str
    name: str
    fmt: str
    better: Literal["higher", "lower"] | None
    level: Literal["prompts", "seeds"]
    note: str
    summaries: dict[str, VariantSummary]
    ranking: Ranking | None
    n_prompts: int


@dataclass(frozen=True)
class SeedStatistics:
    """The comparison's runs read across seeds: its variants and seeds, every numeric cell, and the lead cell
    (the one variants are ranked by: the first cell declared ``lead``, else the first with a direction)."""

    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    cells: tuple[CellStatistics, ...]
    lead: CellStatistics | None
    notes: tuple[str, ...]


def seed_statistics(runs: Sequence[ReportRun]) -> SeedStatistics:
    """Every numeric headline cell of ``runs`` across their seeds (see the module docstring)."""
    keys = run_keys(runs)
    variants = tuple(dict.fromkeys(variant for variant, _ in keys))
    seeds = tuple(sorted({seed for _, seed in keys}))
    gathered: dict[Key, dict[str, Any]] = {}
    for run, (variant, seed) in zip(runs, keys):
        for cell in run["results"].get("headline", []):
            if cell.get("text") is None and _finite(cell.get("value")):
                key = (str(cell.get("evaluator")), str(cell.get("name")))
                entry = gathered.setdefault(key, {"meta": cell, "runs": {}})
                entry["runs"].setdefault(variant, {})[seed] = cell
    cells = tuple(_cell(key, entry["meta"], entry["runs"]) for key, entry in gathered.items())
    lead = next((c for c, e in zip(cells, gathered.values()) if e["meta"].get("lead")), None) \
        or next((c for c in cells if c.better is not None), None) or (cells[0] if cells else None)
    notes = tuple(f"{key[0]}: variant {run_key(run)[0]!r}, seed {key[1]} is another run's too, so it stands as a "
                  "variant of its own" for run, key in zip(runs, keys) if key != run_key(run))
    return SeedStatistics(variants, seeds, cells, lead, notes)


def _cell(key: Key, meta: Mapping[str, Any], runs: dict[str, dict[int, Mapping[str, Any]]]) -> CellStatistics:
    level, note = _level(runs)
    values = {variant: {seed: (cell["per_prompt"] if level == "prompts" else [cell["value"]])
                        for seed, cell in sorted(by_seed.items())} for variant, by_seed in runs.items()}
    better = meta.get("better") if meta.get("better") in ("higher", "lower") else None
    apart = [(a, b) for i, a in enumerate(values) for b in list(values)[i + 1:] if not values[a].keys() & values[b].keys()]
    ranking = None
    if len(values) > 1 and not apart:
        ranking = rank(values, better=better or "higher")
        summaries = {variant: ranking.summaries[variant] for variant in values}
    else:
        summaries = {variant: variant_summary(per_seed, name=variant) for variant, per_seed in values.items()}
        if apart:
            note = "; ".join(filter(None, [note, "no paired differences: " + ", ".join(
                f"{a} and {b} share no seed" for a, b in apart[:3]) + " (run the variants with the same seeds)"]))
    n_prompts = max(s.n_prompts for s in summaries.values())
    return CellStatistics(key[0], key[1], str(meta.get("fmt") or ".3f"), better, level, note, summaries, ranking,
                          n_prompts)


def _level(runs: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> tuple[Literal["prompts", "seeds"], str]:
    """Whether every run of a cell gives usable per-prompt values, and if not, why (empty when none gives any)."""
    cells = [cell for by_seed in runs.values() for cell in by_seed.values()]
    given = [cell for cell in cells if cell.get("per_prompt")]
    if not given:
        return "seeds", ""
    if len(given) < len(cells):
        return "seeds", "some runs give no per-prompt values: intervals over seeds only"
    if any(not _averages_to(cell["per_prompt"], cell["value"]) for cell in cells):
        return "seeds", "per-prompt values that do not average to the cell's value: intervals over seeds only"
    for seed in {seed for by_seed in runs.values() for seed in by_seed}:
        counts = {len(by_seed[seed]["per_prompt"]) for by_seed in runs.values() if seed in by_seed}
        if len(counts) > 1:
            return "seeds", (f"seed {seed}'s variants were evaluated on different numbers of prompts "
                             f"({', '.join(map(str, sorted(counts)))}): not paired by prompt, intervals over seeds only")
    return "prompts", ""


def _averages_to(values: Any, value: float) -> bool:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    if array.ndim != 1 or not array.size or not np.all(np.isfinite(array)):
        return False
    return abs(float(array.mean()) - value) <= 1e-6 + 1e-5 * float(np.abs(array).max())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
