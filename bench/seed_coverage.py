"""How often the two-level bootstrap interval of a variant's mean covers the truth, by seeds and spread.

    python bench/seed_coverage.py                          # 1000 repeats × 1000 resamples per cell (minutes)
    python bench/seed_coverage.py --repeats 200 --resamples 400

Simulates the model :mod:`harness._core.seed_stats` assumes — value = truth + seed effect ~ N(0, σ_seed)
+ prompt noise ~ N(0, 1), ``--prompts`` prompts per seed — and prints a Markdown table of the share of
repeats whose 95% interval (:func:`variant_summary`) holds the truth, one row per seed count, one column
per ratio σ_seed / (1/√prompts), the seed spread against the prompt noise of one seed's mean. A paired
difference is the same estimator on per-prompt differences, so the table holds for it too (coverage of
0 for a null pair = the share reported unresolved). docs/statistics.md shows this table.
"""
from __future__ import annotations

import argparse

import numpy as np

from harness._core.seed_stats import variant_summary

SEEDS = (1, 3, 5, 10)
RATIOS = (0.0, 0.5, 1.0, 2.0, 4.0)


def coverage(seeds: int, ratio: float, prompts: int, repeats: int, resamples: int, rng: np.random.Generator) -> float:
    """The share of ``repeats`` simulated variants whose interval covers the true mean, 0."""
    sd_seed = ratio / np.sqrt(prompts)
    hits = 0
    for repeat in range(repeats):
        data = {s: rng.normal(0, sd_seed) + rng.normal(0, 1, prompts) for s in range(seeds)}
        summary = variant_summary(data, resamples=resamples, rng_seed=repeat)
        hits += summary.low <= 0.0 <= summary.high
    return hits / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--prompts", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| seeds | " + " | ".join(f"σ_seed/SE_prompt = {r:g}" for r in RATIOS) + " |")
    print("|---|" + "---|" * len(RATIOS))
    for seeds in SEEDS:
        row = [coverage(seeds, r, args.prompts, args.repeats, args.resamples, rng) for r in RATIOS]
        print(f"| {seeds} | " + " | ".join(f"{c:.3f}" for c in row) + " |", flush=True)


if __name__ == "__main__":
    main()
