"""Intervals and small statistics for the numbers every run reports (win rates, means, curves)."""
from __future__ import annotations

import math
from statistics import fmean
from typing import Sequence

Z95 = 1.959963984540054


def wilson_interval(rate: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (ties counted half still give a rate in [0, 1])."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denom
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_interval(scores: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """95% interval of a win rate from its per-item scores in [0, 1].

    Verdicts (every score 0, ½ or 1): Wilson's interval. Preference probabilities (a judge's
    P(a ≻ b)): the normal interval of their mean, clipped to [0, 1] — Wilson's would assume each
    item is a coin flip and overstate the spread of values near ½ (AlpacaEval reports this SE).
    """
    if all(s in (0.0, 0.5, 1.0) for s in scores):
        return wilson_interval(fmean(scores) if scores else 0.0, len(scores), z)
    _, low, high = mean_and_ci(scores, z)
    return (max(0.0, low), min(1.0, high))


def mean_and_ci(values: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) with a normal-approximation interval of the mean."""
    n = len(values)
    if n == 0:
        return (float("nan"),) * 3
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return (mean, mean - half, mean + half)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points (the first points average what there is so far)."""
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation (NaN when either side is constant or there are fewer than 3 points)."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return float("nan")
    mx, my = fmean(xs), fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams over the texts (Li et al. 2016): falls as outputs collapse.

    Here rather than in the online toolkit because two measure it: every online step (``policy/distinct_2``)
    and the ``diversity`` evaluator on the held-out samples.
    """
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


SMOOTH = 10  # training curves in reports are shown as a moving average over this many steps


def smooth(values: Sequence[float | None]) -> list[float]:
    """A training curve as a report plots it: its moving average over :data:`SMOOTH` steps, or ``[]``
    when a point is missing."""
    if not values or any(v is None for v in values):
        return []
    return moving_average([float(v) for v in values], SMOOTH)
