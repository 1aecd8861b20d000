"""A report plot's points with their intervals: one per variant, its seeds drawn together.

Why: every plot of a comparison that shows a mean should show how sure it is, and a comparison over
several seeds has one run per variant and seed — a plot that drew a bar per run would show the seeds
as if they were variants. :func:`variant_points` groups the runs (by variant, or by what a plot groups
them by: best-of-n's n), and gives each group the mean over its seeds with the interval of
:func:`harness._core.seed_stats.variant_summary` — the two-level bootstrap over seeds and prompts when
a run gives per-prompt values, over seeds when it gives one value, over the prompts with one seed —
so the plots agree with the report's tables. Plugins reach it as ``harness.api.variant_points``.
Which variant and seed a run is (:func:`run_keys`) is decided here for the tables too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from harness._core.records import ReportRun
from harness._core.seed_stats import variant_summary


@dataclass(frozen=True)
class VariantPoint:
    """One group of runs (a variant) as a plot draws it: ``mean`` over its seeds, its 95% interval
    ``[low, high]`` (None when there is nothing to resample: one seed, one value), each seed's value, its runs."""

    variant: str
    mean: float
    low: float | None
    high: float | None
    per_seed: dict[int, float]
    runs: tuple[ReportRun, ...]

    def err(self) -> list[list[float]] | None:
        """The interval as matplotlib's ``xerr``/``yerr`` of this one point (distances below and above); None without one."""
        if self.low is None or self.high is None:
            return None
        return [[max(self.mean - self.low, 0.0)], [max(self.high - self.mean, 0.0)]]


def run_keys(runs: Sequence[ReportRun]) -> list[tuple[str, int]]:
    """(variant, seed) of each run: its ``variant``/``seed`` (:func:`harness._core.report.load_runs` sets them),
    else what its results say; a run whose (variant, seed) another run has too stands as a variant of its own,
    under its label."""
    keys = [run_key(run) for run in runs]
    return [key if keys.count(key) == 1 else (str(run["label"]), key[1]) for key, run in zip(keys, runs)]


def run_key(run: ReportRun) -> tuple[str, int]:
    """The (variant, seed) ``run`` says it is, whether or not another run says so too."""
    results = run["results"]
    variant = run.get("variant") or results.get("variant") or results.get("experiment") or run["label"]
    seed = run.get("seed", results.get("seed", 0))
    return str(variant), seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def variant_points(runs: Sequence[ReportRun], values: Callable[[ReportRun], Any],
                   group: Callable[[ReportRun], Any] | None = None) -> list[VariantPoint]:
    """Per group of ``runs`` (first-seen order; default: the run's variant), the mean over seeds of
    ``values(run)`` — a run's per-prompt values, or its one value; None (or no finite value) leaves the run
    out — with its 95% interval. Runs of one group and one seed give one value: the first's (the SFT
    model's numbers, which the variants of a seed share, group them under one name)."""
    keys = run_keys(runs)
    gathered: dict[Any, dict[int, np.ndarray]] = {}
    members: dict[Any, list[ReportRun]] = {}
    for run, (variant, seed) in zip(runs, keys):
        array = _values(values(run))
        name = variant if group is None else group(run)
        if array is None or name is None or seed in gathered.get(name, {}):
            continue
        gathered.setdefault(name, {})[seed] = array
        members.setdefault(name, []).append(run)
    points = []
    for name, per_seed in gathered.items():
        summary = variant_summary(per_seed, name=str(name))
        points.append(VariantPoint(str(name), summary.mean, summary.low, summary.high, summary.per_seed,
                                   tuple(members[name])))
    return points


def _values(value: Any) -> np.ndarray | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        array = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or not array.size or not np.all(np.isfinite(array)):
        return None
    return array


def finite(value: Any) -> bool:
    """A number a plot can draw (not None, a bool, NaN or infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
