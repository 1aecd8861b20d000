"""Statistics over seeds for comparing variants: a variant's mean with its interval, the paired
difference of two variants with P(A > B), a ranking that says which differences are resolved, and
how many seeds would resolve one that is not.

Why a module of its own: one seed with an interval over prompts (:func:`harness._core.stats.rate_interval`)
hides a large source of spread in RL fine-tuning — the seed (Henderson et al. 2018) — so a
comparison a reviewer accepts reports seeds as an axis (Agarwal et al. 2021). The data of one headline
cell: per variant, per seed, the per-prompt values (the same prompts, in the same order, for every
variant of a seed). A seed's value is the mean over its prompts; a variant's value is the mean over its
seeds, every seed weighing the same. A cell whose per-seed value is not a mean over prompts (a
correlation, a single number) passes that value as a one-element array: the bootstrap is then over
seeds only.

The interval is a two-level (cluster) bootstrap, percentile method: draw the seeds with replacement,
then, within each drawn seed, its prompts with replacement (Davison & Hinkley 1997 §3.8; Efron &
Tibshirani 1993). scipy's ``bootstrap`` resamples one level only, so the nesting is written here with
numpy's Generator, deterministic from ``rng_seed``. Paired statistics draw the same seeds and the same
prompt indices for both variants: a seed's effect shared by A and B (its SFT model, its data order)
cancels in the difference. docs/statistics.md gives the simulated coverage; in short, the interval
errs wide when prompt noise dominates, and narrow when the seeds spread more than a seed's prompt noise
and there are few of them (about 87% for a nominal 95% with 3 seeds at twice that spread, 86% with 5
at four times it): more seeds is the remedy, and :func:`seeds_needed` sizes it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

RESAMPLES = 2000  # bootstrap draws per interval
CONFIDENCE = 0.95
POWER = 0.80  # the conventional power for :func:`seeds_needed`
MAX_SEEDS = 10_000  # past this many, :func:`seeds_needed` says None: no practical number of seeds resolves it
_CHUNK = 4_000_000  # values gathered per block of resamples (bounds memory: ~32 MB of float64)

PerSeed = Mapping[int, ArrayLike]  # seed → that seed's per-prompt values (or its one value)
SAME_MARK = {True: "(= every seed)", False: "(= every prompt)"}  # several seeds? → the mark of an interval with no width
SAME_NOTES = {  # mark → why the value stands alone, said once where the mark is shown
    SAME_MARK[True]: f"{SAME_MARK[True]}: every seed gave exactly this value (and every prompt did, for a cell read "
                     f"per prompt), so every resample does too and its {CONFIDENCE:.0%} interval would be this value "
                     "at both ends: it is left out.",
    SAME_MARK[False]: f"{SAME_MARK[False]}: every prompt of the one seed gave exactly this value, so every resample "
                      f"does too and its {CONFIDENCE:.0%} interval would be this value at both ends: it is left out.",
}


@dataclass(frozen=True)
class VariantSummary:
    """A variant's cell over seeds: ``mean`` of the per-seed values, its interval ``[low, high]``.

    ``low``/``high`` are None only with one seed and one value in it (nothing to resample); with one
    seed and many prompts the interval covers prompt noise only, not the seed's. ``seed_sd`` is the
    standard deviation between per-seed values (ddof 1; None with one seed).
    """

    mean: float
    low: float | None
    high: float | None
    per_seed: dict[int, float]
    seed_sd: float | None
    n_prompts: int  # the most prompts any seed has (1: the cell has one value per seed)
    confidence: float
    resamples: int

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    @property
    def same_everywhere(self) -> bool:
        """Whether the interval has no width: every seed (and prompt) gave the mean."""
        return _no_width(self.mean, self.low, self.high, self.per_seed.values())


@dataclass(frozen=True)
class PairedDifference:
    """A − B over the seeds both have: the mean of per-seed differences, with its interval, and the
    probability of improvement P(A > B) with its interval.

    ``resolved``: the interval excludes 0. ``per_seed``: each common seed's A − B. ``unpaired_seeds``:
    seeds only one of the two has — left out of every number here, so the report can say so.
    ``prob`` is P(A > B) in Agarwal et al.'s (rliable) sense: over every pair (a run of A, a run of B),
    the share where A's per-seed value is higher, ties counting half — the Mann–Whitney U statistic of
    the per-seed values over n·m. A run is a seed; ``prob`` is 1 when every seed of A beats every seed
    of B. Its interval comes from the same two-level draws as the difference's (seeds drawn jointly for
    A and B, since they are paired; rliable's stratified bootstrap draws each algorithm's runs apart).
    With one seed ``prob`` is that one comparison (0, ½ or 1) and its interval reflects prompt noise only.
    """

    mean: float
    low: float | None
    high: float | None
    resolved: bool
    prob: float
    prob_low: float | None
    prob_high: float | None
    per_seed: dict[int, float]
    seed_sd: float | None
    unpaired_seeds: tuple[int, ...]
    confidence: float
    resamples: int

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    @property
    def same_everywhere(self) -> bool:
        """Whether the difference's interval has no width: every seed (and prompt) differed by the mean."""
        return _no_width(self.mean, self.low, self.high, self.per_seed.values())


def _no_width(mean: float, low: float | None, high: float | None, per_seed: Iterable[float]) -> bool:
    """An interval [mean, mean] whose seeds all gave the mean (to float rounding: a mean of equal values may
    differ from them in the last bit); never one that merely rounds to the mean at the printed precision."""
    return low is not None and high is not None and all(
        math.isclose(value, mean, rel_tol=1e-9, abs_tol=1e-12) for value in (low, high, *per_seed))


def interval_text(stat: VariantSummary | PairedDifference, number: Callable[[float], str]) -> str:
    """A mean and its interval as every table and sentence prints them, each number through ``number``:
    ``mean [low, high]``; the mean alone when there is no interval; ``mean (= every seed)`` (one seed:
    ``(= every prompt)``) when the interval has no width — ``[x, x]`` is noise on the page, and
    :data:`SAME_NOTES` says once why the interval is left out."""
    shown = number(stat.mean)
    if stat.low is None or stat.high is None:
        return shown
    if stat.same_everywhere:
        return f"{shown} {SAME_MARK[stat.n_seeds > 1]}"
    return f"{shown} [{number(stat.low)}, {number(stat.high)}]"


@dataclass(frozen=True)
class Ranking:
    """Variants ordered best first by mean, every pair's difference, and the groups they are not resolved in.

    ``pairs[(a, b)]`` is a − b for a ranked above b. ``groups`` splits ``order`` into consecutive blocks,
    as finely as possible, such that every variant of a block is resolved from every variant of every
    other block. Inside a block some pairs may still be resolved (A above C, with B tied to both): read
    ``pairs`` for those. Each pair's interval is at ``confidence`` on its own — no correction for the
    number of pairs.
    """

    order: tuple[str, ...]
    summaries: dict[str, VariantSummary]
    pairs: dict[tuple[str, str], PairedDifference]
    groups: tuple[tuple[str, ...], ...]
    better: Literal["higher", "lower"]

    def resolved(self, a: str, b: str) -> bool:
        """Whether the difference between variants ``a`` and ``b`` (either order) is resolved."""
        pair = self.pairs.get((a, b)) or self.pairs.get((b, a))
        if pair is None:
            raise KeyError(f"no pair {a!r}, {b!r} in this ranking; variants: {', '.join(self.order)}")
        return pair.resolved


def _checked(per_seed: PerSeed, name: str) -> dict[int, np.ndarray]:
    """{seed: 1-D float array}, seeds ascending; a ValueError naming the variant, the seed and the fix."""
    if not per_seed:
        raise ValueError(f"{name}: no seeds — pass {{seed: per-prompt values}} with at least one seed")
    out = {}
    for seed in sorted(per_seed):
        values = np.asarray(per_seed[seed], dtype=float)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"{name}, seed {seed}: expected a non-empty 1-D array of per-prompt values "
                             f"(or one value), got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}, seed {seed}: {int(np.sum(~np.isfinite(values)))} value(s) are NaN or "
                             "infinite; drop or fix those prompts before comparing")
        out[int(seed)] = values
    return out


def two_level_draws(sizes: Sequence[int], resamples: int, rng: np.random.Generator, *,
                    block: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The two-level bootstrap's index draws — seeds with replacement, then prompts within each drawn seed —
    in blocks of draws: ``(start, seeds, prompts)``.

    Why one function: every two-level bootstrap in harness (a variant's mean, a paired difference, the
    embedded world's pooled Gao fit) draws its indices here, so "resample seeds, then prompts" has one
    implementation. ``sizes[i]`` is how many prompts seed i has. For draw ``start + d`` of a block,
    ``seeds[d]`` holds k = len(sizes) seed indices drawn with replacement (level 1) and ``prompts[d, j]``
    holds max(sizes) prompt indices drawn with replacement within the seed of slot j (level 2), fresh for
    every slot, so a seed drawn twice gets two prompt draws. A slot's draw is its first
    ``sizes[seeds[d, j]]`` columns; with ragged sizes the columns past them are padding (valid indices
    into that seed, to be masked or sliced off). ``block`` draws per block (default: about 4 million
    prompt indices, ~32 MB) bound the memory. Deterministic from ``rng``.
    """
    counts = np.asarray(sizes, dtype=int)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 1):
        raise ValueError(f"sizes must list each seed's number of prompts (at least 1 each), got {list(sizes)}")
    k, width, ragged = counts.size, int(counts.max()), bool(np.any(counts != counts[0]))
    block = max(1, _CHUNK // (k * width)) if block is None else max(1, int(block))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        seeds = rng.integers(0, k, size=(b, k))  # level 1: which seeds
        if ragged:  # level 2: prompts within each picked seed, as many as it has
            prompts = rng.integers(0, counts[seeds][..., None], size=(b, k, width))
        else:
            prompts = rng.integers(0, width, size=(b, k, width))
        yield start, seeds, prompts


def _resampled_seed_means(stacks: Sequence[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The two-level bootstrap's draws: (resamples, k, V) — per draw, per seed slot, each variant's mean.

    ``stacks[i]`` is seed i's (V, n_i) values, one row per variant (the same prompts in every row); the
    indices come from :func:`two_level_draws`, shared by the V rows.
    """
    k, n_variants = len(stacks), stacks[0].shape[0]
    sizes = np.array([s.shape[1] for s in stacks])
    width, ragged = int(sizes.max()), bool(np.any(sizes != sizes[0]))
    padded = np.zeros((k, width, n_variants))  # seed, prompt, variant; short seeds padded (and masked below)
    for i, stack in enumerate(stacks):
        padded[i, :stack.shape[1]] = stack.T
    out = np.empty((resamples, k, n_variants))
    block = max(1, _CHUNK // (k * width * n_variants))
    for start, seeds, prompts in two_level_draws(sizes, resamples, rng, block=block):
        b = seeds.shape[0]
        if ragged:
            n = sizes[seeds][..., None]  # (b, k, 1)
            inside = (np.arange(width) < n)[..., None]  # a seed's own draws only, not the padding's
            out[start:start + b] = np.where(inside, padded[seeds[..., None], prompts], 0.0).sum(axis=2) / n
        else:
            out[start:start + b] = padded[seeds[..., None], prompts].mean(axis=2)  # (b, k, width, V) → (b, k, V)
    return out


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap draws."""
    alpha = 1.0 - confidence
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _prob_improvement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(A > B) over every (run of A, run of B) pair, ties half, along the last axis (broadcast over the rest)."""
    x, y = a[..., :, None], b[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def _seed_sd(values: np.ndarray) -> float | None:
    return float(np.std(values, ddof=1)) if values.size > 1 else None


def _validate(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (0.95 for a 95% interval), got {confidence}")


def variant_summary(per_seed: PerSeed, *, name: str = "variant", resamples: int = RESAMPLES,
                    confidence: float = CONFIDENCE, rng_seed: int = 0) -> VariantSummary:
    """One variant's cell: the mean over seeds of per-seed means, with its two-level bootstrap interval."""
    _validate(resamples, confidence)
    seeds = _checked(per_seed, name)
    values = [v[None, :] for v in seeds.values()]
    means = np.array([v.mean() for v in seeds.values()])
    width = max(v.size for v in seeds.values())
    low = high = None
    if len(seeds) > 1 or width > 1:
        draws = _resampled_seed_means(values, resamples, np.random.default_rng(rng_seed))
        low, high = _interval(draws[:, :, 0].mean(axis=1), confidence)
    return VariantSummary(float(means.mean()), low, high, dict(zip(seeds, means.tolist())), _seed_sd(means),
                          width, confidence, resamples)


def paired_difference(a: PerSeed, b: PerSeed, *, names: tuple[str, str] = ("A", "B"), resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE, rng_seed: int = 0) -> PairedDifference:
    """A − B paired by seed and prompt, over the seeds both have (the others are listed, not used).

    Every common seed must hold as many per-prompt values in A as in B — the same prompts in the same
    order; otherwise the pairing is not known and this raises.
    """
    _validate(resamples, confidence)
    left, right = _checked(a, names[0]), _checked(b, names[1])
    common = sorted(left.keys() & right.keys())
    if not common:
        raise ValueError(f"{names[0]} (seeds {sorted(left)}) and {names[1]} (seeds {sorted(right)}) share no seed; "
                         "a paired difference needs both variants run with the same seeds")
    for seed in common:
        if left[seed].size != right[seed].size:
            raise ValueError(f"seed {seed}: {names[0]} has {left[seed].size} per-prompt values, {names[1]} has "
                             f"{right[seed].size}; pairing needs the same prompts in the same order for both")
    stacks = [np.stack([left[s], right[s]]) for s in common]
    mean_a = np.array([left[s].mean() for s in common])
    mean_b = np.array([right[s].mean() for s in common])
    diffs = np.array([(left[s] - right[s]).mean() for s in common])
    from scipy.stats import mannwhitneyu  # here, not at the top: harness.api imports this module in every process

    prob = float(mannwhitneyu(mean_a, mean_b).statistic) / len(common) ** 2
    low = high = prob_low = prob_high = None
    if len(common) > 1 or stacks[0].shape[1] > 1:
        draws = _resampled_seed_means(stacks, resamples, np.random.default_rng(rng_seed))
        low, high = _interval((draws[:, :, 0] - draws[:, :, 1]).mean(axis=1), confidence)
        prob_low, prob_high = _interval(_prob_improvement(draws[:, :, 0], draws[:, :, 1]), confidence)
    resolved = low is not None and (low > 0.0 or high < 0.0)
    unpaired = tuple(sorted(left.keys() ^ right.keys()))
    return PairedDifference(float(diffs.mean()), low, high, resolved, prob, prob_low, prob_high,
                            dict(zip(common, diffs.tolist())), _seed_sd(diffs), unpaired, confidence, resamples)


def seeds_needed(diff: PairedDifference, *, power: float = POWER, confidence: float | None = None) -> int | None:
    """About how many seeds would give a ``confidence`` interval of A − B that excludes 0, with ``power``.

    The power estimate of a paired t-test, taking the observed mean difference d and the observed
    standard deviation s of per-seed differences as the truth: the smallest n ≥ 2 with
    (t_{1−α/2, n−1} + t_{power, n−1})·s/√n ≤ |d|, searched up from the normal approximation
    n ≈ ((z_{1−α/2} + z_{power})·s/d)² (it agrees with the exact noncentral-t power to within a seed;
    tests/test_seed_stats.py checks d/s = 0.3, 0.5, 1 and 2). s already holds each seed's prompt noise (a per-seed value is a
    mean over those prompts), so the answer is for the same prompts per seed. None when d is 0 or there
    is one seed (no spread between seeds to go on), and when more than :data:`MAX_SEEDS` would be needed
    (a d that is rounding noise against s: per-seed differences that all but cancel). Treat it as a rough
    guide: with few seeds, d and s are themselves noisy, and the bootstrap interval the report shows is
    not the t interval.
    """
    from scipy.stats import norm
    from scipy.stats import t as student_t

    alpha = 1.0 - (diff.confidence if confidence is None else confidence)
    if diff.mean == 0.0 or diff.seed_sd is None:
        return None
    effect, spread = abs(diff.mean), diff.seed_sd
    normal = ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * spread / effect) ** 2
    if not normal <= MAX_SEEDS:  # also a NaN or an overflow: t quantiles of such n would not even compute
        return None
    n = max(2, math.ceil(normal))
    while (student_t.ppf(1 - alpha / 2, n - 1) + student_t.ppf(power, n - 1)) * spread / math.sqrt(n) > effect:
        n += 1
    return n


def _groups(order: Sequence[str], resolved: Mapping[tuple[str, str], bool]) -> tuple[tuple[str, ...], ...]:
    """Cut the ranking after position i where everything above is resolved from everything below."""
    groups, start = [], 0
    for cut in range(1, len(order)):
        if all(resolved[(hi, lo)] for hi in order[start:cut] for lo in order[cut:]):
            groups.append(tuple(order[start:cut]))
            start = cut
    groups.append(tuple(order[start:]))
    return tuple(groups)


def rank(variants: Mapping[str, PerSeed], *, better: Literal["higher", "lower"] = "higher",
         resamples: int = RESAMPLES, confidence: float = CONFIDENCE, rng_seed: int = 0) -> Ranking:
    """Order ``variants`` ({label: {seed: per-prompt values}}) best first and resolve every pair."""
    if not variants:
        raise ValueError("rank: no variants — pass {label: {seed: per-prompt values}}")
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    options = dict(resamples=resamples, confidence=confidence, rng_seed=rng_seed)
    summaries = {label: variant_summary(values, name=label, **options) for label, values in variants.items()}
    sign = -1.0 if better == "higher" else 1.0
    order = tuple(sorted(summaries, key=lambda label: sign * summaries[label].mean))  # stable: ties keep input order
    pairs = {(hi, lo): paired_difference(variants[hi], variants[lo], names=(hi, lo), **options)
             for i, hi in enumerate(order) for lo in order[i + 1:]}
    groups = _groups(order, {key: pair.resolved for key, pair in pairs.items()})
    return Ranking(order, summaries, pairs, groups, better)


def _signed(value: float, fmt: str) -> str:
    return format(value, "+" + fmt).replace("-", "−")


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def describe(name_a: str, name_b: str, diff: PairedDifference, *, fmt: str = ".2f") -> str:
    """The sentence a report prints for A − B, e.g.
    ``PPO − DPO: +0.02 [−0.01, +0.05], not resolved with 3 seeds (about 9 seeds would resolve it at this spread)``.

    The number of seeds it names for an unresolved pair is :func:`seeds_needed`, and never fewer than one
    more than the pair has (the seeds it has did not resolve it, whatever the approximation says).
    """
    if diff.low is None:
        return (f"{name_a} − {name_b}: {_signed(diff.mean, fmt)}, not resolved: no interval from "
                f"{_seeds(diff.n_seeds)} with one value each")
    shown = f"{name_a} − {name_b}: {interval_text(diff, lambda value: _signed(value, fmt))}"
    if diff.unpaired_seeds:
        shown += f" (paired seeds only; left out: {', '.join(map(str, diff.unpaired_seeds))})"
    if diff.resolved:
        return f"{shown}, resolved with {_seeds(diff.n_seeds)}"
    needed = seeds_needed(diff)
    if diff.mean == 0.0:
        why = "no difference observed"
    elif diff.seed_sd is None:
        why = "one seed shows no spread between seeds; run more to tell"
    elif needed is None:
        why = f"more than {MAX_SEEDS:,} seeds would be needed at this spread: no difference to speak of"
    else:
        why = f"about {_seeds(max(needed, diff.n_seeds + 1))} would resolve it at this spread"
    return f"{shown}, not resolved with {_seeds(diff.n_seeds)} ({why})"
