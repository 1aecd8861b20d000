"""Issue 25's rules for rows V1–V9, on hand-made results (no training): each rule's pass and fail
cases, the "every seed" against "mean over seeds" distinctions, V5's matched-KL read and V6's pooled
fit of Gao et al.'s RL form on a synthetic curve with known α and β."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from harness_builtins.worlds.embedded.curves import (GaoFit, Point, bootstrap_betas, fit_gao, gold_at_kl, heldout_curve,
                                                     matched_kl, peak_inside, pooled_gao)
from harness_builtins.worlds.embedded.validation import build_rows, render, seeds_note

SEEDS = 5
N = 60  # held-out prompts per evaluation in these hand-made runs
KLS = (0.3, 1.0, 2.5, 5.0, 8.0, 12.0, 18.0, 25.0)


def centred(rng, n, sd):
    noise = rng.normal(0.0, sd, n)
    return noise - noise.mean()


def periodic(points, *, seed=0, sft_gold=1.0, sft_proxy=0.0, prompt_sd=0.5, n=N, per_prompt=True, exact=True):
    """(step, kl, proxy, gold) → a policy summary's periodic history, with per-prompt values whose means are the
    given ones (``exact``) or drawn around them (sampling noise, as a real evaluation has)."""
    rng = np.random.default_rng(seed)
    noise = centred if exact else (lambda r, size, sd: r.normal(0.0, sd, size))
    sft = sft_gold + noise(rng, n, prompt_sd)
    rows = []
    for step, kl, proxy, gold in points:
        g = sft + (gold - sft_gold) + noise(rng, n, prompt_sd / 2)
        k = kl + noise(rng, n, 0.3 * kl)
        row = {"step": step, "policy/kl": float(k.mean()), "policy/reward_proxy": proxy, "policy/reward_gold": float(g.mean()),
               "policy/reward_gold_se": float(g.std(ddof=1) / math.sqrt(n)), "policy/sft_reward_proxy": sft_proxy,
               "policy/sft_reward_gold": float(sft.mean()), "policy/sft_reward_gold_se": float(sft.std(ddof=1) / math.sqrt(n))}
        if per_prompt:
            row |= {"policy/per_prompt/reward_gold": g.tolist(), "policy/per_prompt/sft_reward_gold": sft.tolist(),
                    "policy/per_prompt/kl": k.tolist()}
        rows.append(row)
    return rows


def gao(d, alpha, beta):
    return d * (alpha - beta * np.log(d))


def gao_points(alpha=1.0, beta=0.5, kls=KLS, sft_gold=1.0):
    """A small-β run on Gao's curve: gold = SFT + d(α − β ln d), proxy rising with KL."""
    return [(30 * (i + 1), kl, 0.1 * (i + 1), sft_gold + float(gao(math.sqrt(kl), alpha, beta))) for i, kl in enumerate(kls)]


def policy(points, **kw):
    return {"policy": {"train": {"periodic": periodic(points, **kw)}}}


def win(rate, low=None, high=None, task=(0, 0), decisive=None):
    low = rate - 0.04 if low is None else low
    high = rate + 0.04 if high is None else high
    return {"rate": rate, "ci_low": low, "ci_high": high, "n": 200,
            "decided_by": {"task": {"wins": task[0], "losses": task[1]}},
            "decisive": {"rate": rate + 0.08 if decisive is None else decisive, "ci_low": 0.0, "ci_high": 1.0}}


def tax(cloze, ppl):
    return {"embedded_cloze": {"metric": "brier_score", "higher_is_better": False, "delta": cloze},
            "embedded_heldout": {"metric": "word_perplexity", "higher_is_better": False, "delta": ppl}}


RM_RUN = [(30, 0.5, 0.3, 1.2), (60, 1.0, 0.5, 1.3), (90, 2.0, 0.7, 1.35), (120, 3.0, 0.9, 1.3)]
GOLD_RUN = [(30, 0.4, 0.0, 1.3), (60, 0.9, 0.0, 1.5), (90, 1.5, 0.0, 1.6), (120, 2.0, 0.0, 1.65)]


def seed(s=0, *, agreement=73.0, rm_acc=0.70, base=(0.70, 0.64), ppo=0.62, ppo_low=None, decisive=None, task=(30, 10),
         rm_run=RM_RUN, gold_run=GOLD_RUN, small_beta=None, dpo=(0.56, 0.52), a2c=0.55, ptx=(-0.01, -0.2),
         per_prompt=True):
    """One seed's measurements on which every row passes; keywords change one thing."""
    return {
        "annotation": {"pairwise_agreement_pct": agreement},
        "sft_vs_base": {"rate": base[0], "ci_low": base[1], "ci_high": base[0] + 0.06, "n": 200},
        "variants": {
            "ppo": {"rm": {"accuracy": rm_acc}, "win_rate_vs_sft": win(ppo, ppo_low, task=task, decisive=decisive),
                    "tax": tax(0.001, 0.1), **policy(rm_run, seed=s)},
            "ppo-gold": {"win_rate_vs_sft": win(0.6), **policy(gold_run, seed=s)},
            "ppo-small-beta": policy(small_beta or gao_points(), seed=100 + s, per_prompt=per_prompt),
            "dpo": {"win_rate_vs_sft": win(dpo[0], dpo[1])},
            "a2c": {"win_rate_vs_sft": win(a2c)},
            "ppo-ptx": {"win_rate_vs_sft": win(0.6), "tax": tax(*ptx)},
        },
    }


def rows_of(seeds):
    return {r.key: r for r in build_rows(seeds)}


def five(**changes_by_seed):
    """Five passing seeds; ``changes_by_seed={i: {...}}`` spelled as s0=..., s4=... keyword dicts."""
    return [seed(i, **changes_by_seed.get(f"s{i}", {})) for i in range(SEEDS)]


# --------------------------------------------------------------------------- all rows
def test_every_row_passes_on_five_seeds_that_reproduce_the_literature():
    rows = rows_of(five())
    assert list(rows) == ["V1", "V2", "V3", "V4", "V4b", "V5", "V6", "V7", "V8", "V9"]
    assert all(r.ok for r in rows.values()), {k: (r.cells, r.aggregate) for k, r in rows.items() if not r.ok}
    table = render(list(rows.values()), list(range(SEEDS)))
    assert table.count("**pass**") == 10 and "seed 4" in table and "over seeds" in table


def test_the_table_says_whether_its_seeds_are_the_preregistered_ones():
    assert "as pre-registered" in seeds_note([0, 1, 2, 3, 4])
    assert "Not the pre-registered verdict" in seeds_note([0, 1, 2])


# --------------------------------------------------------------------------- V1, V2
def test_v1_needs_every_seed_in_the_band():
    assert not rows_of(five(s3={"agreement": 69.0}))["V1"].ok
    assert not rows_of(five(s0={"agreement": 79.0}))["V1"].ok


def test_v2_every_seed_above_060_below_its_own_agreement_and_the_mean_above_065():
    # one seed at 0.64 (the old per-seed 0.65 bar would fail it); the mean 0.688 passes
    assert rows_of(five(s2={"rm_acc": 0.64}))["V2"].ok
    # every seed ≥ 0.60, but the mean 0.62 < 0.65
    low = rows_of([seed(i, rm_acc=0.62) for i in range(SEEDS)])["V2"]
    assert all(low.passed) and not low.aggregate_pass and not low.ok
    # the mean passes, one seed under 0.60
    one = rows_of(five(s4={"rm_acc": 0.59}))["V2"]
    assert one.aggregate_pass and one.passed == (True, True, True, True, False) and not one.ok
    # a seed above its own annotators' agreement
    assert not rows_of(five(s1={"rm_acc": 0.74, "agreement": 73.0}))["V2"].ok


# --------------------------------------------------------------------------- V3, V4, V4b
def test_v3_ci_low_above_half_every_seed_and_mean_at_least_065():
    assert not rows_of(five(s0={"base": (0.70, 0.49)}))["V3"].ok  # one interval reaches 0.5
    low_mean = rows_of([seed(i, base=(0.60, 0.55)) for i in range(SEEDS)])["V3"]
    assert all(low_mean.passed) and not low_mean.ok  # every CI above 0.5, mean 0.60 < 0.65


def test_v4_mean_not_every_seed_and_the_decisive_verdict():
    # seed 0 at 0.56 (CI low 0.53): the old "≥ 0.60 every seed" failed it; the mean 0.608 passes
    assert rows_of(five(s0={"ppo": 0.56, "ppo_low": 0.53}))["V4"].ok
    assert not rows_of(five(s0={"ppo": 0.56, "ppo_low": 0.49}))["V4"].ok  # a CI reaching 0.5
    assert not rows_of([seed(i, ppo=0.58) for i in range(SEEDS)])["V4"].ok  # mean 0.58 < 0.60
    decisive = rows_of([seed(i, decisive=0.64) for i in range(SEEDS)])["V4"]
    assert all(decisive.passed) and not decisive.ok and "decisive mean 0.640" in decisive.aggregate
    missing = five()
    del missing[2]["variants"]["ppo"]["win_rate_vs_sft"]["decisive"]
    assert not rows_of(missing)["V4"].ok  # a rule that cannot be computed does not pass


def test_v4b_task_wins_exceed_losses_every_seed():
    assert rows_of(five(s1={"task": (10, 12)}))["V4b"].passed == (True, False, True, True, True)
    assert not rows_of(five(s1={"task": (10, 10)}))["V4b"].ok


# --------------------------------------------------------------------------- V5
def test_gold_is_read_where_the_run_first_reached_the_kl():
    curve = [Point(0, 0.0, 0, 0.0, 0.1), Point(30, 1.0, 0, 1.0, 0.1), Point(60, 3.0, 0, 2.0, 0.1)]
    assert gold_at_kl(curve, 2.0) == pytest.approx(1.5)
    assert gold_at_kl(curve, 3.0) == pytest.approx(2.0) and gold_at_kl(curve, 3.5) is None
    wandering = [Point(0, 0.0, 0, 0.0, 0.1), Point(30, 2.0, 0, 1.0, 0.1), Point(60, 1.0, 0, 5.0, 0.1), Point(90, 3.0, 0, 2.0, 0.1)]
    assert gold_at_kl(wandering, 1.5) == pytest.approx(0.75)  # the first crossing, not the later visit


def test_matched_kl_reads_both_runs_at_the_largest_kl_both_reached():
    rm = heldout_curve(policy(RM_RUN, per_prompt=False))
    gold = heldout_curve(policy(GOLD_RUN, per_prompt=False))
    read = matched_kl(rm, gold)
    assert read["kl"] == pytest.approx(2.0)  # PPO-on-gold went to KL 2, PPO-on-RM to 3
    assert read["gold_gold"] == pytest.approx(1.65)  # its own last point
    assert read["gold_rm"] == pytest.approx(1.35)  # interpolated between KL 1 and 3 → its KL-2 evaluation
    assert read["diff"] == pytest.approx(0.30)
    assert matched_kl(rm, rm[:1]) is None


def test_v5_four_of_five_seeds_and_a_positive_mean_difference():
    worse = [(30, 0.4, 0.0, 1.1), (60, 0.9, 0.0, 1.15), (90, 1.5, 0.0, 1.2), (120, 2.0, 0.0, 1.25)]  # below RM's 1.35
    one = rows_of(five(s3={"gold_run": worse}))["V5"]
    assert one.passed == (True, True, True, False, True) and one.ok  # 4 of 5, mean +0.22
    low, high = map(float, one.aggregate.split("mean difference ")[1].split("[")[1].split("]")[0].split(", "))
    assert low < 0.22 < high and "over seeds only" in one.aggregate  # the mean's interval beside the verdict
    two = rows_of(five(s3={"gold_run": worse}, s4={"gold_run": worse}))["V5"]
    assert not two.ok  # 3 of 5
    far_worse = [(30, 0.4, 0.0, 0.0), (60, 0.9, 0.0, -0.5), (90, 1.5, 0.0, -1.0), (120, 2.0, 0.0, -1.5)]
    lopsided = rows_of(five(s0={"gold_run": far_worse}))["V5"]
    assert sum(lopsided.passed) == 4 and not lopsided.aggregate_pass and not lopsided.ok  # mean −0.33
    never = five()
    del never[1]["variants"]["ppo-gold"]["policy"]  # ppo-gold not evaluated during training: not decidable
    assert rows_of(never)["V5"].passed[1] is False


# --------------------------------------------------------------------------- V6
def synthetic_curves(alpha, beta, seeds=SEEDS, seed_sd=0.03, prompt_sd=1.0, n=200):
    """Five seeds' small-β curves on Gao's form: a seed effect on α, sampling noise per prompt in gold and KL."""
    rng = np.random.default_rng(7)
    curves = []
    for s in range(seeds):
        a = alpha + rng.normal(0.0, seed_sd)
        points = gao_points(a, beta)
        curves.append(heldout_curve(policy(points, seed=s, prompt_sd=prompt_sd, n=n, exact=False)))
    return curves


def test_the_pooled_fit_recovers_a_known_curve_its_interval_covers_it_and_finds_the_peak():
    pooled = pooled_gao(synthetic_curves(1.0, 0.5))
    fit = pooled["fit"]
    assert fit.alpha == pytest.approx(1.0, abs=0.08) and fit.beta == pytest.approx(0.5, abs=0.06)
    assert pooled["beta_low"] < 0.5 < pooled["beta_high"] and pooled["beta_low"] > 0
    assert fit.peak_d == pytest.approx(math.exp(fit.alpha / fit.beta - 1))
    assert fit.peak_kl == pytest.approx(math.e ** 2, rel=0.25)  # the truth: d* = e, KL* = 7.39
    assert peak_inside(pooled) and pooled["kl_min"] < 1 and pooled["kl_max"] > 20


def test_fit_is_exact_on_noise_free_points():
    kl = np.array(KLS)
    fit = fit_gao(kl, gao(np.sqrt(kl), 0.8, 0.3))
    assert (fit.alpha, fit.beta) == (pytest.approx(0.8), pytest.approx(0.3))
    assert GaoFit(0.5, -0.1, 8).peak_d is None  # β ≤ 0: no maximum
    assert GaoFit(400.0, 1.0, 8).peak_kl == math.inf  # far past any measured range, without an overflow
    assert fit_gao([0.0, 1.0], [0.0, 0.3]) is None  # one informative point


def test_each_bootstrap_draw_is_the_pooled_least_squares_fit():
    # every prompt alike: every draw holds the same points, so every draw's β is the pooled fit's
    kl = np.array(KLS)
    delta = gao(np.sqrt(kl), 0.7, 0.2) + np.array([0.05, -0.03, 0.02, 0.0, -0.04, 0.03, -0.01, 0.02])
    curve = [Point(0, 0.0, 0.0, 1.0, 0.1, np.zeros(20), np.zeros(20))]
    curve += [Point(30 * i, k, 0.0, 1.0 + y, 0.1, np.full(20, y), np.full(20, k)) for i, (k, y) in enumerate(zip(kl, delta))]
    betas = bootstrap_betas([curve, curve], 50, 0)
    assert len(betas) == 50 and betas == pytest.approx(np.full(50, fit_gao(kl, delta).beta))
    wider = [Point(p.step, p.kl, p.proxy, p.gold, p.gold_se, np.resize(p.delta, 35), np.resize(p.kl_pp, 35)) for p in curve]
    ragged = bootstrap_betas([curve, wider], 50, 0)  # seeds of 20 and 35 prompts: every index inside its own seed
    assert ragged == pytest.approx(np.full(50, fit_gao(kl, delta).beta))


def test_v6_passes_on_gaos_shape_and_fails_without_it():
    assert rows_of(five())["V6"].ok
    rising = [(30 * (i + 1), kl, 0.1 * (i + 1), 1.0 + 0.3 * math.sqrt(kl)) for i, kl in enumerate(KLS)]  # β = 0
    flat = rows_of([seed(i, small_beta=rising) for i in range(SEEDS)])["V6"]
    assert all(flat.passed) and not flat.ok  # proxy rises, but gold never turns: β's interval holds 0
    late = [(30 * (i + 1), kl, 0.1 * (i + 1), 1.0 + float(gao(math.sqrt(kl), 3.0, 0.5))) for i, kl in enumerate(KLS)]
    beyond = rows_of([seed(i, small_beta=late) for i in range(SEEDS)])["V6"]
    assert not beyond.ok and "outside" in beyond.aggregate  # β > 0, peak at KL e^10, far past the measured 25


def test_v6_proxy_must_rise_on_every_seed_and_the_interval_needs_per_prompt_values():
    wobbly = [(s, kl, proxy if i % 2 == 0 else -proxy, g) for i, (s, kl, proxy, g) in enumerate(gao_points())]
    row = rows_of(five(s2={"small_beta": wobbly}))["V6"]
    assert row.aggregate_pass and row.passed[2] is False and not row.ok
    bare = rows_of([seed(i, per_prompt=False) for i in range(SEEDS)])["V6"]
    assert not bare.ok and "lack per-prompt values" in bare.aggregate
    assert "own fit" in row.cells[0] and "SE below" in row.cells[0]  # each seed's fit and drop, beside


# --------------------------------------------------------------------------- V7, V8, V9
def test_v7_ci_low_strictly_above_half_every_seed():
    assert not rows_of(five(s4={"dpo": (0.55, 0.50)}))["V7"].ok
    assert rows_of(five(s4={"dpo": (0.55, 0.501)}))["V7"].ok


def test_v8_every_seed_above_half_and_the_mean_below_ppos():
    assert not rows_of(five(s0={"a2c": 0.49}))["V8"].ok
    above = rows_of([seed(i, a2c=0.63) for i in range(SEEDS)])["V8"]  # PPO's mean is 0.62
    assert all(above.passed) and not above.aggregate_pass and not above.ok


def test_v9_ptx_lowers_both_taxes_every_seed():
    assert not rows_of(five(s2={"ptx": (0.002, -0.2)}))["V9"].ok  # cloze: ptx costs more than PPO's +0.001
    one_task = five()
    del one_task[0]["variants"]["ppo-ptx"]["tax"]["embedded_cloze"]
    assert not rows_of(one_task)["V9"].ok


# --------------------------------------------------------------------------- intervals beside the rules
def scored(scores):
    """A win-rate result from per-prompt preferences, as the win-rate evaluator writes it (scores, decisive)."""
    from harness.api import rate_interval

    scores = np.round(np.asarray(scores, dtype=float), 6)
    verdicts = np.where(scores == 0.5, 0.5, np.where(scores > 0.5, 1.0, 0.0))
    low, high = rate_interval(scores.tolist())
    return {"rate": float(scores.mean()), "ci_low": low, "ci_high": high, "n": len(scores),
            "scores": scores.tolist(), "decided_by": {"task": {"wins": 30, "losses": 10}},
            "decisive": {"rate": float(verdicts.mean()), "ci_low": 0.0, "ci_high": 1.0}}


def preferences(rng, rate, n=N * 4):
    """Per-prompt expected preferences with mean ``rate`` in expectation (a Beta around it)."""
    return rng.beta(20 * rate, 20 * (1 - rate), n)


def with_scores(seeds, *, ppo=0.64, a2c=0.56, dpo=0.58, base=0.70, seed_sd=0.01, rng_seed=3):
    """``seeds`` with every win rate replaced by per-prompt preferences around the given truths; each seed shifts
    every variant by a shared effect (its SFT model), as the runs of one seed share one."""
    rng = np.random.default_rng(rng_seed)
    for i, s in enumerate(seeds):
        shift = rng.normal(0.0, seed_sd)
        s["seed"] = i
        s["sft_vs_base"] = scored(preferences(rng, base + shift))
        for label, rate in (("ppo", ppo), ("a2c", a2c), ("dpo", dpo)):
            s["variants"][label]["win_rate_vs_sft"] = scored(preferences(rng, rate + shift))
    return seeds


def without_scores(seeds):
    for s in seeds:
        for w in [s["sft_vs_base"], *(v.get("win_rate_vs_sft") or {} for v in s["variants"].values())]:
            w.pop("scores", None)
    return seeds


INTERVAL = r"\[(-?\d\.\d+), (-?\d\.\d+)\]"


def test_each_mean_over_seeds_shows_its_interval_in_the_rendered_rows():
    rows = rows_of(with_scores(five()))
    for key in ("V3", "V4", "V7", "V8"):
        assert re.match(rf"mean \d\.\d{{3}} {INTERVAL}", rows[key].aggregate), rows[key].aggregate
    assert re.search(rf"decisive mean \d\.\d{{3}} {INTERVAL}", rows["V4"].aggregate)
    assert re.search(rf"A2C − PPO [+-]\d\.\d{{3}} \[[+-]\d\.\d{{3}}, [+-]\d\.\d{{3}}\], P\(A2C > PPO\) \d\.\d\d "
                     rf"{INTERVAL}", rows["V8"].aggregate)
    assert re.match(rf"mean 0\.700 {INTERVAL} over seeds only", rows["V2"].aggregate)  # the RM keeps no per-pair hits
    table = render(list(rows.values()), list(range(SEEDS)))
    assert rows["V8"].aggregate in table and "two-level bootstrap" in table and "not judged" in table


def test_a_rows_verdict_is_the_rules_whatever_the_intervals_say():
    cases = {"passing": {}, "A2C above PPO": {"a2c": 0.66}, "PPO's mean below 0.60": {"ppo": 0.57},
             "DPO at a coin flip": {"dpo": 0.5}}
    for name, truths in cases.items():
        shown = rows_of(with_scores(five(), **truths))
        bare = rows_of(without_scores(with_scores(five(), **truths)))
        for key, row in shown.items():
            plain = bare[key]
            assert (row.passed, row.aggregate_pass, row.ok) == (plain.passed, plain.aggregate_pass, plain.ok), (name, key)
            assert row.cells == plain.cells
            means = r"(?:mean|PPO|agreement) (\d\.\d{3})"  # the numbers the rule reads, as before the intervals
            assert re.findall(means, row.aggregate) == re.findall(means, plain.aggregate), (name, key)
    assert not rows_of(with_scores(five(), a2c=0.66))["V8"].ok


def numbers(pattern, text):
    return [float(x.replace("−", "-")) for x in re.search(pattern, text).groups()]


def test_the_intervals_of_a_known_effect_cover_the_truth():
    rows = rows_of(with_scores(five(), ppo=0.64, a2c=0.56))
    mean, low, high = numbers(rf"mean (\d\.\d+) {INTERVAL}", rows["V4"].aggregate)
    assert low < 0.64 < high and low < mean < high
    diff, low, high = numbers(r"A2C − PPO ([+-]\d\.\d+) \[([+-]\d\.\d+), ([+-]\d\.\d+)\]", rows["V8"].aggregate)
    assert low < -0.08 < high and high < 0  # the effect, resolved
    assert diff == pytest.approx(-0.08, abs=0.03)
    prob, *_ = numbers(rf"P\(A2C > PPO\) (\d\.\d+) {INTERVAL}", rows["V8"].aggregate)
    assert prob == 0.0  # every seed of A2C below every seed of PPO
    null = rows_of(with_scores(five(), ppo=0.60, a2c=0.60))["V8"]
    _, low, high = numbers(r"A2C − PPO ([+-]\d\.\d+) \[([+-]\d\.\d+), ([+-]\d\.\d+)\]", null.aggregate)
    assert low < 0 < high  # no effect: not resolved


def test_a_seed_without_per_prompt_scores_gets_no_interval_and_the_rule_still_decides():
    seeds = with_scores(five())
    seeds[2]["variants"]["ppo"]["win_rate_vs_sft"].pop("scores")
    rows = rows_of(seeds)
    assert "mean 0." in rows["V4"].aggregate and "(no interval: seed 2 has no per-prompt scores)" in rows["V4"].aggregate
    assert "A2C − PPO: no interval: seed 2 has no per-prompt scores for PPO" in rows["V8"].aggregate
    assert rows["V4"].ok and rows["V8"].ok and re.search(INTERVAL, rows["V7"].aggregate)
    seeds[0]["variants"]["dpo"]["win_rate_vs_sft"]["scores"][0] += 0.5  # no longer averaging to the rate
    assert "no interval: seed 0" in rows_of(seeds)["V7"].aggregate
