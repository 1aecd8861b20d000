"""The pictures of a comparison read across seeds: what a paper shows beside its ranking.

Why the core draws them (not an evaluator): they picture the statistics of the lead cell
(:func:`harness._core.seed_cells.seed_statistics`), whichever evaluator declared it — the built-in win rate
or a third-party cell marked ``lead`` — so a plugin gets them by declaring its cell, with nothing to draw.

- ``seeds.png``: one row per variant, best first; each seed's value a dot, the mean over seeds a
  diamond with its 95% two-level bootstrap interval as a bar (Agarwal et al. 2021, Fig. 1's point
  estimate with its interval, runs beside it). With one seed the bar is the interval over the prompts.
- ``differences.png``: the forest plot of every pair's paired difference A − B with its interval, a line
  at 0; the resolved pairs (interval clear of 0) are drawn filled and in colour, the others hollow and grey.
- ``improvement.png``: the probability of improvement P(row > column) with its interval in each cell
  (rliable's matrix). Not drawn with one seed: P(A > B) compares runs, and one seed has one run of each
  variant (0, ½ or 1); the forest plot's note says so.
"""
from __future__ import annotations

from typing import Any

from harness._core.records import Plot
from harness._core.seed_cells import CellStatistics, SeedStatistics

SEEDS, DIFFERENCES, IMPROVEMENT = "seeds.png", "differences.png", "improvement.png"
NO_MATRIX = ("No probability-of-improvement matrix: with one seed, P(A > B) compares one run of each variant "
             "(0, ½ or 1); run several seeds ([experiment] seeds = [0, 1, 2]) to draw it.")


def seed_plots(stats: SeedStatistics) -> list[Plot]:
    """The plots of the lead cell across seeds; none for a single run (one variant, one seed) or without a lead cell."""
    lead = stats.lead
    if lead is None or (len(stats.variants) == 1 and len(stats.seeds) == 1):
        return []
    several = len(stats.seeds) > 1
    over = f"{len(stats.seeds)} seeds" if several else f"one seed's {lead.n_prompts} prompts"
    plots = [Plot(SEEDS, lambda plt: _draw_seeds(plt, stats, lead),
                  note=f"{lead.name}: each seed's value (dots) and the mean with its 95% interval over {over} (bar).")]
    if lead.ranking is None or not lead.ranking.pairs:
        return plots
    note = f"{lead.name}: paired differences A − B with their 95% intervals over {over}; filled: resolved (clear of 0)."
    plots.append(Plot(DIFFERENCES, lambda plt: _draw_differences(plt, stats, lead), note=note if several
                      else f"{note} {NO_MATRIX}"))
    if several:
        plots.append(Plot(IMPROVEMENT, lambda plt: _draw_improvement(plt, lead),
                          note=f"{lead.name}: P(row > column) over the runs (seeds), with its 95% interval."))
    return plots


def _order(cell: CellStatistics) -> list[str]:
    return list(cell.ranking.order) if cell.ranking else list(cell.summaries)


def _draw_seeds(plt, stats: SeedStatistics, cell: CellStatistics):
    order = _order(cell)
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.5 * len(order)))
    for row, variant in enumerate(order):
        y = len(order) - 1 - row  # best at the top
        summary = cell.summaries[variant]
        seeds = sorted(summary.per_seed)
        offsets = [0.18 * (i - (len(seeds) - 1) / 2) / max(len(seeds) - 1, 1) for i in range(len(seeds))]
        ax.scatter([summary.per_seed[s] for s in seeds], [y + o for o in offsets], s=18, color="0.45", zorder=2,
                   label="one seed" if row == 0 and len(stats.seeds) > 1 else None)
        err = _err(summary.mean, summary.low, summary.high)
        ax.errorbar([summary.mean], [y], xerr=err, fmt="D", color=f"C{row % 10}", capsize=4, lw=2, zorder=3,
                    label="mean, 95% CI" if row == 0 else None)
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel(f"{cell.name}" + (f" ({cell.better} is better)" if cell.better else ""))
    ax.set_title(f"{cell.name} per variant" + (f", {len(stats.seeds)} seeds" if len(stats.seeds) > 1 else ", one seed"))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _draw_differences(plt, stats: SeedStatistics, cell: CellStatistics):
    pairs = list(cell.ranking.pairs.items())
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.45 * len(pairs)))
    for row, ((a, b), pair) in enumerate(pairs):
        y = len(pairs) - 1 - row
        color = "C3" if pair.resolved else "0.5"
        ax.errorbar([pair.mean], [y], xerr=_err(pair.mean, pair.low, pair.high), fmt="o", color=color, capsize=4,
                    markerfacecolor=color if pair.resolved else "white", lw=2)
    ax.axvline(0.0, color="k", lw=1)
    ax.set_yticks(range(len(pairs)), [f"{a} − {b}" for (a, b), _ in reversed(pairs)])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    over = f"{len(stats.seeds)} seeds" if len(stats.seeds) > 1 else "one seed's prompts"
    ax.set_xlabel(f"difference in {cell.name} (95% CI over {over})")
    ax.set_title("paired differences (filled: resolved)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _draw_improvement(plt, cell: CellStatistics):
    order = _order(cell)
    n = len(order)
    matrix = [[float("nan")] * n for _ in range(n)]
    labels = [[""] * n for _ in range(n)]
    for (a, b), pair in cell.ranking.pairs.items():
        i, j = order.index(a), order.index(b)
        low, high = pair.prob_low, pair.prob_high
        matrix[i][j], matrix[j][i] = pair.prob, 1.0 - pair.prob
        labels[i][j] = _prob_text(pair.prob, low, high)
        labels[j][i] = _prob_text(1.0 - pair.prob, None if high is None else 1.0 - high, None if low is None else 1.0 - low)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * n, 1.2 + 1.1 * n))
    image = ax.imshow(matrix, cmap="RdBu", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            dark = matrix[i][j] == matrix[i][j] and abs(matrix[i][j] - 0.5) > 0.3  # white on the deep colours
            ax.text(j, i, labels[i][j] or "—", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(n), order, rotation=30, ha="right")
    ax.set_yticks(range(n), order)
    ax.set_xlabel("B (column)")
    ax.set_ylabel("A (row)")
    ax.set_title(f"P(A > B) in {cell.name}, 95% CI")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _prob_text(prob: float, low: float | None, high: float | None) -> str:
    return f"{prob:.2f}" if low is None else f"{prob:.2f}\n[{low:.2f}, {high:.2f}]"


def _err(mean: float, low: Any, high: Any) -> list[list[float]] | None:
    """``xerr`` of an interval around ``mean``; None (no bar) when there is none."""
    if low is None or high is None:
        return None
    return [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]
