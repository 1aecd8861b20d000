"""Inter-annotator agreement statistics (pure Python + numpy, no scipy/statsmodels needed).

In the core (``harness.api``) because more than one kind of plugin measures agreement: every
feedback format over its records (``item_agreement``), and a world over its simulated annotators.

Why several statistics: raw percent agreement is what InstructGPT reports (~73% between
labelers), but it rewards chance agreement, so the chance-corrected ones sit beside it —
Cohen's kappa for two raters, Fleiss' kappa for many raters on categorical labels, and
Krippendorff's alpha for ordinal/interval data such as Likert ratings (it also tolerates
missing ratings). Every function takes *labels by item*: one list per item holding the
labels the annotators gave it; items with fewer than two labels carry no agreement
information and are skipped.

Degenerate cases (no pairable item, or no variation at all so chance agreement is 1)
make the corrected statistics undefined; they return ``nan`` so a report shows "n/a"
rather than a made-up number. (``json.dumps`` writes it as ``NaN``.)
"""
from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Hashable, Literal, Sequence

import numpy as np

NAN = float("nan")


def _pairable(labels_by_item: Sequence[Sequence]) -> list[list]:
    """Items that two or more annotators labelled (``None`` counts as a missing label)."""
    items = [[x for x in labels if x is not None] for labels in labels_by_item]
    return [labels for labels in items if len(labels) >= 2]


def pair_agreement(labels: Sequence[Hashable]) -> float:
    """Fraction of the C(m,2) annotator pairs of one item that gave the same label."""
    m = len(labels)
    same = sum(c * (c - 1) for c in Counter(labels).values())
    return same / (m * (m - 1))


def percent_agreement(labels_by_item: Sequence[Sequence[Hashable]]) -> float:
    """Mean over items of the fraction of agreeing annotator pairs (InstructGPT's measure)."""
    items = _pairable(labels_by_item)
    return float(np.mean([pair_agreement(x) for x in items])) if items else NAN


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who labelled the same items (``a[i]``, ``b[i]``): (p_o − p_e)/(1 − p_e)."""
    if len(a) != len(b) or not a:
        raise ValueError("cohen_kappa needs two equally long, non-empty label sequences")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    p_e = sum(count_a[c] * count_b[c] for c in count_a) / n**2
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else NAN


def fleiss_kappa(labels_by_item: Sequence[Sequence[Hashable]], n_categories: int | None = None) -> float:
    """Fleiss' kappa (1971) for many raters; items may have different rater counts (≥ 2).

    With a varying count m_i the per-item agreement is P_i = Σ_j n_ij(n_ij − 1) / (m_i(m_i − 1))
    and the category shares p_j pool all labels; with a constant m this is exactly Fleiss'
    formula. ``n_categories`` (optional) checks that labels are the ints ``0..n_categories-1``;
    categories nobody used do not change kappa, so any hashable labels work without it.
    """
    items = _pairable(labels_by_item)
    if n_categories is not None:
        _check_categories(items, n_categories)
    if not items:
        return NAN
    p_bar = float(np.mean([pair_agreement(x) for x in items]))
    totals = Counter(label for labels in items for label in labels)
    n_labels = sum(totals.values())
    p_e = sum((c / n_labels) ** 2 for c in totals.values())
    return (p_bar - p_e) / (1 - p_e) if p_e < 1 else NAN


def _check_categories(items: list[list], n_categories: int) -> None:
    bad = {x for labels in items for x in labels if x not in range(n_categories)}
    if bad:
        raise ValueError(f"labels must be category indices 0..{n_categories - 1}; got {sorted(bad, key=str)}")


def kendall_tau(order_a: Sequence[Hashable], order_b: Sequence[Hashable]) -> float:
    """Kendall's tau between two complete rankings of the same items (each listed best → worst)."""
    if sorted(order_a, key=str) != sorted(order_b, key=str) or len(order_a) < 2:
        raise ValueError("kendall_tau needs two orderings of the same (≥ 2) items")
    pos_b = {item: i for i, item in enumerate(order_b)}
    pairs = list(combinations(order_a, 2))  # (x, y): a puts x above y
    concordant = sum(pos_b[x] < pos_b[y] for x, y in pairs)
    return (2 * concordant - len(pairs)) / len(pairs)


# ----------------------------------------------------------------- Krippendorff's alpha
Level = Literal["nominal", "ordinal", "interval", "ratio"]


def krippendorff_alpha(values_by_item: Sequence[Sequence], level: Level = "interval") -> float:
    """Krippendorff's alpha = 1 − D_o / D_e, from the coincidence matrix (Krippendorff 2011).

    Missing ratings are simply absent from an item's list (or ``None``); items rated once are
    not pairable and drop out. ``ordinal`` uses the rank-based metric built from the marginal
    totals, so it respects the order of a Likert scale without assuming equal spacing.
    """
    items = [[float(v) for v in labels] for labels in _pairable(values_by_item)]
    if not items:
        return NAN
    values = sorted({v for labels in items for v in labels})
    coincidences = _coincidences(items, values)
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    delta = _distance_matrix(np.array(values), totals, level)
    expected = (totals[:, None] * totals[None, :] * delta).sum()
    if expected == 0:
        return NAN
    return float(1 - (n - 1) * (coincidences * delta).sum() / expected)


def _coincidences(items: list[list[float]], values: list[float]) -> np.ndarray:
    """o_ck: each item adds its ordered (c, k) value pairs from different coders, weighted 1/(m_u − 1)."""
    index = {v: i for i, v in enumerate(values)}
    matrix = np.zeros((len(values), len(values)))
    for labels in items:
        counts = np.zeros(len(values))
        for v in labels:
            counts[index[v]] += 1
        matrix += (np.outer(counts, counts) - np.diag(counts)) / (len(labels) - 1)
    return matrix


def _distance_matrix(values: np.ndarray, totals: np.ndarray, level: Level) -> np.ndarray:
    """Squared difference δ²(c, k) for the level of measurement."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(((c - k) / (c + k)) ** 2)
    if level == "ordinal":
        cumulative = np.concatenate([[0.0], np.cumsum(totals)])
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cumulative[hi + 1] - cumulative[lo]  # Σ_{g=lo..hi} n_g
        return (between - (totals[lo] + totals[hi]) / 2) ** 2
    raise ValueError(f"level must be nominal, ordinal, interval or ratio; got {level!r}")
