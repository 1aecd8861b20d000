"""Seed statistics on synthetic data with known answers: exact cases, interval coverage over simulated
repeats, pairing, P(A > B), the power estimate, the ranking and the sentence a report prints."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap, mannwhitneyu, nct
from scipy.stats import t as student_t

from harness._core.seed_stats import (SAME_MARK, SAME_NOTES, _prob_improvement, describe, interval_text,
                                      paired_difference, rank, seeds_needed, two_level_draws, variant_summary)


def _variant(rng, seeds, prompts, mean, sd_seed, sd_prompt):
    """{seed: per-prompt values}: a two-level model, mean + seed effect + prompt noise."""
    return {s: mean + rng.normal(0, sd_seed) + rng.normal(0, sd_prompt, prompts) for s in range(seeds)}


def _pair(rng, seeds, prompts, effect, *, shared_seed=0.05, own_seed=0.03, difficulty=0.3, noise=0.3):
    """Two variants run on the same seeds and prompts: a seed effect and prompt difficulties both share,
    plus each one's own seed effect and per-prompt noise; A − B is ``effect`` in expectation."""
    a, b = {}, {}
    for s in range(seeds):
        base = rng.normal(0, shared_seed) + rng.normal(0, difficulty, prompts)
        a[s] = effect + base + rng.normal(0, own_seed) + rng.normal(0, noise, prompts)
        b[s] = base + rng.normal(0, own_seed) + rng.normal(0, noise, prompts)
    return a, b


# known answers

def test_constant_prompts_give_each_seed_its_value_and_the_mean_exactly():
    per_seed = {0: np.full(20, 0.25), 3: np.full(20, 0.5), 7: np.full(20, 0.75)}
    summary = variant_summary(per_seed)
    assert summary.mean == pytest.approx(0.5, abs=1e-15)
    assert summary.per_seed == {0: 0.25, 3: 0.5, 7: 0.75}
    assert summary.n_seeds == 3 and summary.n_prompts == 20
    assert summary.seed_sd == pytest.approx(0.25)
    assert 0.25 <= summary.low < 0.5 < summary.high <= 0.75


def test_identical_variants_differ_by_exactly_zero_and_are_unresolved():
    rng = np.random.default_rng(0)
    a = _variant(rng, 4, 30, 0.5, 0.1, 0.3)
    diff = paired_difference(a, {s: v.copy() for s, v in a.items()})
    assert diff.mean == 0.0 and diff.low == 0.0 and diff.high == 0.0
    assert diff.prob == 0.5 and diff.prob_low == 0.5 and diff.prob_high == 0.5
    assert not diff.resolved
    assert seeds_needed(diff) is None
    assert diff.same_everywhere
    assert describe("A", "B", diff) == "A − B: +0.00 (= every seed), not resolved with 4 seeds (no difference observed)"


def test_an_interval_has_no_width_only_when_every_seed_gave_the_mean():
    number = lambda value: f"{value:.2f}"  # noqa: E731
    same = variant_summary({0: np.full(9, 0.1), 1: np.full(9, 0.1), 2: np.full(9, 0.1)})  # mean 0.1000…02, not 0.1: float rounding
    assert same.same_everywhere and interval_text(same, number) == "0.10 (= every seed)"
    assert interval_text(variant_summary({0: np.full(9, 0.1)}), number) == "0.10 (= every prompt)"
    narrow = variant_summary({0: [0.5, 0.5001], 1: [0.5, 0.5]})  # prints as [0.50, 0.50] but is a real interval
    assert not narrow.same_everywhere and interval_text(narrow, number) == "0.50 [0.50, 0.50]"
    assert interval_text(variant_summary({0: [0.7]}), number) == "0.70"  # one value: no interval at all
    assert SAME_MARK[True] in SAME_NOTES[SAME_MARK[True]] and SAME_MARK[False] in SAME_NOTES[SAME_MARK[False]]


def test_the_same_rng_seed_gives_the_same_interval():
    a = _variant(np.random.default_rng(1), 3, 40, 0.0, 0.1, 1.0)
    assert variant_summary(a, rng_seed=5) == variant_summary(a, rng_seed=5)
    assert variant_summary(a, rng_seed=5).low != variant_summary(a, rng_seed=6).low


def test_seeds_only_cells_match_scipy_bootstrap():
    """One value per seed: the two-level bootstrap is a one-level one; scipy's percentile interval agrees."""
    values = np.random.default_rng(2).normal(0.4, 0.1, 12)
    ours = variant_summary({s: [v] for s, v in enumerate(values)}, resamples=20_000)
    ref = bootstrap((values,), np.mean, method="percentile", n_resamples=20_000,
                    random_state=np.random.default_rng(0))  # `rng=` from scipy 1.15; we allow 1.11
    assert ours.n_prompts == 1 and ours.mean == pytest.approx(values.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.004)


def test_one_seed_gives_a_prompt_interval_and_one_value_gives_none():
    prompts = np.random.default_rng(3).normal(0.0, 1.0, 400)
    one_seed = variant_summary({0: prompts}, resamples=4000)
    half = 1.96 * prompts.std(ddof=1) / np.sqrt(prompts.size)  # the normal interval over prompts
    assert one_seed.high - one_seed.low == pytest.approx(2 * half, rel=0.08)
    assert one_seed.seed_sd is None
    diff = paired_difference({0: prompts + 0.01}, {0: prompts - 0.01 + np.random.default_rng(4).normal(0, 1, 400)})
    assert diff.low is not None and not diff.resolved and seeds_needed(diff) is None
    assert describe("A", "B", diff).endswith("not resolved with 1 seed (one seed shows no spread between seeds; "
                                             "run more to tell)")
    single = variant_summary({0: [0.7]})
    assert single.mean == 0.7 and single.low is None and single.high is None
    diff = paired_difference({0: [0.7]}, {0: [0.5]})
    assert diff.low is None and not diff.resolved and diff.prob == 1.0
    assert describe("A", "B", diff) == "A − B: +0.20, not resolved: no interval from 1 seed with one value each"


def test_seeds_of_different_prompt_counts_weigh_the_same():
    per_seed = {0: np.zeros(10), 1: np.ones(30), 2: np.full(5, 0.5)}
    summary = variant_summary(per_seed, resamples=500)
    assert summary.mean == pytest.approx(0.5) and summary.n_prompts == 30
    assert 0.0 <= summary.low < 0.5 < summary.high <= 1.0
    diff = paired_difference({s: v + 0.1 for s, v in per_seed.items()}, per_seed, resamples=500)
    assert diff.mean == pytest.approx(0.1) and diff.low == pytest.approx(0.1) and diff.high == pytest.approx(0.1)
    assert diff.resolved and diff.prob == pytest.approx(6 / 9)  # seed means 0.1, 1.1, 0.6 against 0, 1, 0.5: 1 + 3 + 2 of 9


# coverage over simulated repeats

def test_the_two_level_draws_pick_seeds_then_prompts_inside_each_picked_seed():
    sizes = [3, 50, 7]
    blocks = list(two_level_draws(sizes, 1000, np.random.default_rng(0), block=300))
    assert [(start, seeds.shape) for start, seeds, _ in blocks] == [(0, (300, 3)), (300, (300, 3)), (600, (300, 3)),
                                                                     (900, (100, 3))]
    seeds = np.concatenate([b[1] for b in blocks])
    prompts = np.concatenate([b[2] for b in blocks])
    assert prompts.shape == (1000, 3, 50)
    assert np.all(prompts < np.asarray(sizes)[seeds][..., None])  # every index, padding too, inside its slot's seed
    assert np.bincount(seeds.ravel(), minlength=3) / seeds.size == pytest.approx([1 / 3] * 3, abs=0.02)
    small = prompts[seeds == 0][:, :3]  # the slots that drew seed 0: its 3 prompts, each about a third of the time
    assert np.bincount(small.ravel(), minlength=3) / small.size == pytest.approx([1 / 3] * 3, abs=0.03)
    again = list(two_level_draws(sizes, 1000, np.random.default_rng(0), block=300))
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(blocks, again))  # deterministic from the generator
    with pytest.raises(ValueError, match="sizes"):
        next(two_level_draws([4, 0], 10, np.random.default_rng(0)))


def test_the_mean_interval_covers_the_truth_at_about_the_nominal_rate():
    """5 seeds, seed spread comparable to the prompt noise of a seed's mean (see docs/statistics.md)."""
    rng = np.random.default_rng(10)
    covered = []
    for r in range(200):
        s = variant_summary(_variant(rng, 5, 50, 0.5, 0.07, 0.5), resamples=400, rng_seed=r)
        covered.append(s.low <= 0.5 <= s.high)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_the_difference_interval_covers_a_known_effect_and_leaves_a_null_pair_unresolved():
    rng = np.random.default_rng(11)
    covered, null_resolved = [], []
    for r in range(200):
        diff = paired_difference(*_pair(rng, 5, 50, 0.1), resamples=400, rng_seed=r)
        covered.append(diff.low <= 0.1 <= diff.high)
        null_resolved.append(paired_difference(*_pair(rng, 5, 50, 0.0), resamples=400, rng_seed=r).resolved)
    assert 0.88 <= np.mean(covered) <= 0.99
    assert np.mean(null_resolved) <= 0.10


def test_a_large_effect_is_resolved_and_ranked_first():
    rng = np.random.default_rng(12)
    a, b = _pair(rng, 3, 100, 0.5)
    ranking = rank({"B": b, "A": a}, resamples=1000)
    assert ranking.order == ("A", "B") and ranking.groups == (("A",), ("B",))
    diff = ranking.pairs[("A", "B")]
    assert diff.resolved and ranking.resolved("B", "A") and diff.low > 0
    assert describe("A", "B", diff).endswith(", resolved with 3 seeds")


def test_pairing_removes_the_shared_seed_effect():
    """A seed effect both variants share (say, the SFT model) widens each variant's interval, not the difference's."""
    a, b = _pair(np.random.default_rng(13), 5, 50, 0.1, shared_seed=1.0)
    width = lambda s: s.high - s.low  # noqa: E731
    unpaired = np.hypot(width(variant_summary(a)), width(variant_summary(b)))
    paired = width(paired_difference(a, b))
    assert paired < 0.1 * unpaired


# P(A > B)

def test_prob_of_improvement_is_one_when_every_seed_of_a_beats_every_seed_of_b():
    rng = np.random.default_rng(14)
    a = {s: 1.0 + rng.normal(0, 0.01, 20) for s in range(4)}
    b = {s: 0.0 + rng.normal(0, 0.01, 20) for s in range(4)}
    diff = paired_difference(a, b)
    assert diff.prob == 1.0 and diff.prob_low == 1.0 and diff.prob_high == 1.0
    reverse = paired_difference(b, a)
    assert reverse.prob == 0.0 and 0.0 <= reverse.prob_low <= reverse.prob_high <= 1.0


def test_prob_of_improvement_counts_every_pair_of_runs_with_ties_half():
    a, b = {0: [3.0], 1: [1.0], 2: [2.0]}, {0: [2.0], 1: [0.0], 2: [2.0]}
    # pairs: 3>2,3>0,3>2 | 1<2,1>0,1<2 | 2=2,2>0,2=2  →  (3 + 1 + 1 + 0.5 + 0.5) / 9
    assert paired_difference(a, b, resamples=50).prob == pytest.approx(6 / 9)


def test_the_vectorized_count_is_the_mann_whitney_u():
    rng = np.random.default_rng(15)
    x, y = rng.integers(0, 4, (50, 6)).astype(float), rng.integers(0, 4, (50, 6)).astype(float)  # many ties
    expected = [mannwhitneyu(x[i], y[i]).statistic / 36 for i in range(50)]
    np.testing.assert_allclose(_prob_improvement(x, y), expected)


def test_prob_of_improvement_sits_near_a_half_for_a_null_pair_and_its_interval_is_inside_0_1():
    diff = paired_difference(*_pair(np.random.default_rng(16), 6, 50, 0.0))
    assert 0.0 <= diff.prob_low <= diff.prob <= diff.prob_high <= 1.0
    assert diff.prob_low < 0.5 < diff.prob_high


# seeds needed

def test_seeds_needed_falls_as_the_effect_grows_and_is_none_without_one():
    rng = np.random.default_rng(17)
    needed = []
    for effect in (0.02, 0.05, 0.1, 0.3):
        a, b = _pair(np.random.default_rng(17), 4, 50, effect)
        needed.append(seeds_needed(paired_difference(a, b, resamples=200)))
    assert needed == sorted(needed, reverse=True) and needed[0] > needed[-1] >= 2
    a = _variant(rng, 4, 20, 0.0, 0.1, 0.1)
    assert seeds_needed(paired_difference(a, a, resamples=50)) is None  # no effect
    assert seeds_needed(paired_difference({0: [1.0, 2.0]}, {0: [0.0, 0.0]}, resamples=50)) is None  # one seed


def _exact_paired_t_seeds(effect_size: float, power: float = 0.8) -> int:
    """The smallest n whose two-sided 5% paired t-test has ``power`` at effect d/s (noncentral t)."""
    n = 2
    while True:
        critical, shift = student_t.ppf(0.975, n - 1), effect_size * np.sqrt(n)
        if nct.sf(critical, n - 1, shift) + nct.cdf(-critical, n - 1, shift) >= power:
            return n
        n += 1


@pytest.mark.parametrize("effect_size", [0.3, 0.5, 1.0, 2.0])
def test_seeds_needed_matches_the_power_of_a_paired_t_test(effect_size):
    """d/s of 0.5 needs 34 pairs and 1 needs 10 (the textbook answers); the t approximation in seeds_needed
    agrees with the exact noncentral-t power at these effects (and is off by one seed at a few others)."""
    spread = np.array([-1.0, 1.0]) * np.sqrt(0.5)  # two seeds with sample SD 1
    diff = paired_difference({0: [effect_size + spread[0]], 1: [effect_size + spread[1]]}, {0: [0.0], 1: [0.0]},
                             resamples=10)
    assert diff.seed_sd == pytest.approx(1.0) and diff.mean == pytest.approx(effect_size)
    assert seeds_needed(diff) == _exact_paired_t_seeds(effect_size)
    assert {0.5: 34, 1.0: 10}.get(effect_size, seeds_needed(diff)) == seeds_needed(diff)


# the sentence

def test_describe_an_unresolved_pair_with_signs_seeds_and_the_seeds_it_would_take():
    a = {0: [0.55], 1: [0.40], 2: [0.61]}
    b = {0: [0.50], 1: [0.45], 2: [0.55]}
    diff = paired_difference(a, b, resamples=2000)
    assert not diff.resolved and diff.low < 0 < diff.high
    needed = seeds_needed(diff)
    assert needed > 3
    text = describe("PPO", "DPO", diff)
    low, high = format(diff.low, "+.2f").replace("-", "−"), format(diff.high, "+.2f")
    assert text == (f"PPO − DPO: +0.02 [{low}, {high}], not resolved with 3 seeds "
                    f"(about {needed} seeds would resolve it at this spread)")
    assert describe("DPO", "PPO", paired_difference(b, a)).startswith("DPO − PPO: −0.02 [")


def test_describe_names_the_seeds_left_out_of_the_pairing():
    rng = np.random.default_rng(18)
    a, b = _pair(rng, 4, 30, 1.0)
    b.pop(3)
    b[9] = rng.normal(0, 1, 30)
    diff = paired_difference(a, b)
    assert sorted(diff.per_seed) == [0, 1, 2] and diff.unpaired_seeds == (3, 9)
    assert "(paired seeds only; left out: 3, 9), resolved with 3 seeds" in describe("A", "B", diff)


# the ranking

def test_rank_groups_the_variants_it_cannot_tell_apart():
    rng = np.random.default_rng(19)
    base = {s: rng.normal(0, 0.3, 80) for s in range(5)}
    noisy = lambda shift: {s: v + shift + rng.normal(0, 0.05, 80) for s, v in base.items()}  # noqa: E731
    variants = {"low": noisy(0.0), "high": noisy(0.5), "mid1": noisy(0.201), "mid2": noisy(0.2)}
    ranking = rank(variants, resamples=1000)
    assert ranking.order[0] == "high" and ranking.order[-1] == "low"
    assert ranking.groups == (("high",), tuple(ranking.order[1:3]), ("low",))
    assert set(ranking.groups[1]) == {"mid1", "mid2"} and not ranking.resolved("mid1", "mid2")
    assert len(ranking.pairs) == 6 and all(p.mean >= 0 for p in ranking.pairs.values())
    lower = rank(variants, better="lower", resamples=200)
    assert lower.order[0] == "low" and lower.order[-1] == "high"
    assert all(p.mean <= 0 for p in lower.pairs.values())


def test_a_chain_of_ties_stays_one_group():
    """A resolved from C, but B tied with both: one group, and the pair says A − C is resolved."""
    per_seed = lambda values: {s: [v] for s, v in enumerate(values)}  # noqa: E731
    a, b, c = per_seed([1.0, 1.1, 0.9, 1.0]), per_seed([1.6, -0.5, 1.4, -0.4]), per_seed([0.01, 0.09, -0.08, -0.02])
    ranking = rank({"A": a, "B": b, "C": c}, resamples=2000)
    assert ranking.order == ("A", "B", "C")
    assert ranking.resolved("A", "C") and not ranking.resolved("A", "B") and not ranking.resolved("B", "C")
    assert ranking.groups == (("A", "B", "C"),)


def test_rank_of_one_variant():
    ranking = rank({"only": {0: [1.0, 2.0]}}, resamples=50)
    assert ranking.order == ("only",) and ranking.groups == (("only",),) and ranking.pairs == {}


# bad input

@pytest.mark.parametrize("call, message", [
    (lambda: variant_summary({}, name="PPO"), "PPO: no seeds"),
    (lambda: variant_summary({0: [1.0], 4: []}, name="PPO"), "PPO, seed 4: expected a non-empty 1-D array"),
    (lambda: variant_summary({0: [[1.0, 2.0]]}), "seed 0: expected a non-empty 1-D array"),
    (lambda: variant_summary({0: [1.0, float("nan")]}), "seed 0: 1 value(s) are NaN or infinite"),
    (lambda: variant_summary({0: [1.0]}, confidence=95), "confidence must lie strictly between 0 and 1"),
    (lambda: variant_summary({0: [1.0]}, resamples=0), "resamples must be at least 1"),
    (lambda: paired_difference({0: [1.0]}, {1: [1.0]}, names=("PPO", "DPO")), "PPO (seeds [0]) and DPO (seeds [1]) share no seed"),
    (lambda: paired_difference({0: [1.0, 2.0]}, {0: [1.0]}), "seed 0: A has 2 per-prompt values, B has 1"),
    (lambda: rank({}), "rank: no variants"),
    (lambda: rank({"a": {0: [1.0]}}, better="up"), "better must be 'higher' or 'lower'"),
])
def test_bad_input_says_what_is_missing(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_seeds_needed_is_none_for_a_difference_that_is_rounding_noise_against_the_spread():
    """Per-seed differences that cancel but for float rounding (+0.3, −0.3: a mean of −5.6e-17) would need ~10^32
    seeds — whose t quantiles do not even compute: None, said in words."""
    diff = paired_difference({0: [0.7], 1: [0.1]}, {0: [0.4], 1: [0.4]}, resamples=50)
    assert 0.0 < abs(diff.mean) < 1e-15 and diff.seed_sd > 0.4 and seeds_needed(diff) is None
    assert "more than 10,000 seeds would be needed at this spread" in describe("A", "B", diff)
