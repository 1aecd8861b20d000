"""The validation rows' means over seeds, with the intervals of harness's seed statistics beside them.

Why: a row that states a mean over seeds (V2's RM accuracy, V3/V4/V7/V8's win rates) is a claim about
seeds, and ``harness compare`` already reads such claims through one estimator — the two-level bootstrap
of :func:`harness.api.variant_summary` and the paired difference with P(A > B) of
:func:`harness.api.paired_difference` (docs/statistics.md). The validation shows those numbers beside a
row's verdict instead of computing its own. They are shown, never judged: the pass rules are issue 25's,
pre-registered, and decide exactly as before.

A win rate is resampled at both levels when every seed kept its per-prompt scores (``scores``, which
its rate averages); when one did not (results written before they were kept), the row says
"no interval" and why, rather than inventing a level. A quantity that is one number per seed by nature
(the RM's held-out accuracy: the stage keeps no per-pair hits) is resampled over seeds only, as the
seed statistics do for any such cell, and the row says so.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.api import paired_difference, variant_summary

TOLERANCE = 1e-6  # per-prompt scores are kept to 6 decimals: their mean may differ from the rate by that much


def scores_of(measure: dict[str, Any] | None) -> np.ndarray | None:
    """A win rate's per-prompt scores when present and averaging to its rate; None otherwise."""
    values = (measure or {}).get("scores")
    if values is None:
        return None
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or not array.size or not np.all(np.isfinite(array)):
        return None
    return array if abs(float(array.mean()) - float(measure["rate"])) <= TOLERANCE else None


def decisive_scores_of(win: dict[str, Any] | None) -> np.ndarray | None:
    """The decisive verdict per prompt (a preference above ½ a win, below a loss, ½ a tie: the win-rate
    evaluator's ``decisive_rate``) from the scores, when they average to the recorded decisive rate."""
    scores, decisive = scores_of(win), (win or {}).get("decisive")
    if scores is None or not decisive or "rate" not in decisive:
        return None
    verdicts = np.where(scores == 0.5, 0.5, np.where(scores > 0.5, 1.0, 0.0))
    return verdicts if abs(float(verdicts.mean()) - float(decisive["rate"])) <= TOLERANCE else None


def _missing(values: Sequence[np.ndarray | None], seeds: Sequence[int], whose: str = "") -> str | None:
    """Why there is no interval (the seeds without per-prompt values), or None when every seed has them."""
    lacking = [str(s) for s, v in zip(seeds, values) if v is None]
    if not lacking:
        return None
    if len(lacking) == len(seeds):
        return f"no interval: no seed kept per-prompt scores{whose}"
    which = f"seed {lacking[0]}" if len(lacking) == 1 else f"seeds {', '.join(lacking)}"
    return f"no interval: {which} {'has' if len(lacking) == 1 else 'have'} no per-prompt scores{whose}"


def _interval(low: float | None, high: float | None, fmt: str) -> str:
    return "" if low is None else f" [{format(low, fmt)}, {format(high, fmt)}]"


def mean_interval(values: Sequence[np.ndarray | None], seeds: Sequence[int], fmt: str = ".3f") -> str:
    """`` [low, high]``: the 95% two-level interval of the mean over seeds, or `` (no interval: …)``."""
    missing = _missing(values, seeds)
    if missing:
        return f" ({missing})"
    summary = variant_summary(dict(zip(seeds, values)))
    return _interval(summary.low, summary.high, fmt)


def seeds_only_interval(values: Sequence[float | None], seeds: Sequence[int], fmt: str = ".3f") -> str:
    """`` [low, high] over seeds only``: the interval of a mean of one number per seed (resampling seeds)."""
    if any(v is None for v in values) or len(values) < 2:
        return " (no interval)"
    summary = variant_summary({s: [v] for s, v in zip(seeds, values)})
    return _interval(summary.low, summary.high, fmt) + " over seeds only"


def paired(a: Sequence[np.ndarray | None], b: Sequence[np.ndarray | None], seeds: Sequence[int],
           names: tuple[str, str], fmt: str = ".3f") -> str:
    """``A − B +0.010 [low, high], P(A > B) 0.60 [low, high]`` paired by seed and prompt, or why not."""
    shown = f"{names[0]} − {names[1]}"
    missing = _missing(a, seeds, f" for {names[0]}") or _missing(b, seeds, f" for {names[1]}")
    if missing:
        return f"{shown}: {missing}"
    uneven = [s for s, x, y in zip(seeds, a, b) if x.size != y.size]
    if uneven:
        return f"{shown}: no interval: seed {uneven[0]}'s runs were scored on different numbers of prompts"
    diff = paired_difference(dict(zip(seeds, a)), dict(zip(seeds, b)), names=names)
    return (f"{shown} {format(diff.mean, '+' + fmt)}{_interval(diff.low, diff.high, '+' + fmt)}, "
            f"P({names[0]} > {names[1]}) {diff.prob:.2f}{_interval(diff.prob_low, diff.prob_high, '.2f')}")
