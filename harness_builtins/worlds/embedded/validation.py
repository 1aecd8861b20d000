"""``harness world validate``: is the embedded world a valid instrument? Rows V1–V9, judged over seeds.

A simulator earns trust the way AlpacaFarm earned it: by reproducing, before anyone relies on it,
the findings the literature agrees on. Each row is one such finding with a pass rule fixed in advance:
these are issue 25's rules, pre-registered in ``docs/world.md`` ("Rules of issue 25") before any run of
them. Rows are judged on seeds 0–4; "mean" is over seeds, "every seed" means all of them; a win rate
uses the panel's expected preference (design 4's verdict), the decisive verdict beside it where a row
reads it. ``validate_run.py`` trains the variants of ``experiments/world-validation.toml`` per seed;
this module only turns their ``results.json`` into rows, so every rule is tested on hand-made results.
Beside a mean over seeds stands its 95% interval from harness's seed statistics (``row_stats.py``, the
estimator of ``harness compare``): shown, not judged — a row passes exactly as its rule says.

| row | finding | pass when |
|---|---|---|
| V1 | annotators agree like InstructGPT's labelers | agreement in [0.70, 0.78] every seed |
| V2 | the RM learns them, below their agreement | mean held-out accuracy in [0.65, mean agreement]; every seed in [0.60, its own agreement] |
| V3 | SFT beats the base model | CI low > 0.5 every seed; mean ≥ 0.65 |
| V4 | PPO beats SFT | CI low > 0.5 every seed; mean ≥ 0.60; and under the decisive verdict mean ≥ 0.65 |
| V4b | not by style alone | task wins > task losses every seed |
| V5 | a perfect reward is an upper bound, at matched KL | at the largest KL both runs reached, held-out gold of PPO-on-gold ≥ PPO-on-RM's on ≥ 4 of 5 seeds, mean difference > 0 (``curves.matched_kl``) |
| V6 | over-optimization has Gao's shape | pooled fit Δgold(d) = d(α − β ln d): β's 95% interval above 0, peak d* inside the measured KL range; proxy Spearman ρ(KL) ≥ 0.9 every seed (``curves.pooled_gao``) |
| V7 | DPO beats SFT | CI low > 0.5 every seed |
| V8 | A2C improves on SFT, less than PPO | win rate > 0.5 every seed; mean below PPO's mean |
| V9 | PPO-ptx lowers the alignment tax | tax(ptx) < tax(PPO) on both lm-eval tasks every seed |
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Sequence

from harness.api import rate_interval

from .curves import Point, curve_points, fit_gao, heldout_curve, matched_kl, peak_inside, pooled_gao
from .row_stats import decisive_scores_of, mean_interval, paired, scores_of, seeds_only_interval

SFT_VS_BASE_FILE = "sft_vs_base.json"
ANNOTATION_FILE = "annotation.json"
PREREGISTERED_SEEDS = (0, 1, 2, 3, 4)
V5_SHARE = 4 / 5  # "≥ 4 of 5 seeds"
SPEARMAN_MIN = 0.9
INTERVALS_NOTE = ("[low, high] beside a mean over seeds: its 95% interval, two-level bootstrap (seeds, then prompts "
                  "within each), the estimator of `harness compare` (docs/statistics.md); A2C − PPO "
                  "is paired by seed and prompt, with P(A2C > PPO). Shown beside each rule, not judged.")


@dataclass(frozen=True)
class Row:
    """One validation row: per-seed cells and pass marks, the over-seeds cell, the row's verdict.

    ``needed``: how many seeds must pass (None: every seed). ``aggregate_pass``: the over-seeds rule.
    """

    key: str
    finding: str
    rule: str
    cells: tuple[str, ...]  # one formatted cell per seed
    passed: tuple[bool, ...]
    aggregate: str = ""
    aggregate_pass: bool = True
    needed: int | None = None

    @property
    def ok(self) -> bool:
        enough = sum(self.passed) >= self.needed if self.needed is not None else all(self.passed)
        return enough and self.aggregate_pass


# --------------------------------------------------------------------------- per-seed measurements
def sft_vs_base(world, sft_dir: Path, base_dir: Path, prompts: int, seed: int, max_new_tokens: int = 32) -> dict[str, Any]:
    """Gold win rate of π_SFT against the base model: one sample each per held-out prompt, scored by the
    gold panel's expected preference (the win-rate judge's default verdict)."""
    from harness.api import load_causal_lm

    from .stats import sample_responses

    items = world.prompts("eval")[:prompts]
    texts = {}
    for who, path in (("sft", sft_dir), ("base", base_dir)):
        model, tok = load_causal_lm(path)
        texts[who] = sample_responses(world, model, tok, items, max_new_tokens=max_new_tokens, seed=seed)
    gold = world.gold()
    scores = [gold.preference(p, a, b) for p, a, b in zip(items, texts["sft"], texts["base"])]
    low, high = rate_interval(scores)
    return {"rate": fmean(scores), "ci_low": low, "ci_high": high, "n": len(scores), "verdict": "preference",
            "scores": [round(s, 6) for s in scores]}  # per prompt: the two-level interval of V3's mean


def cached(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, kept in ``path`` with ``key`` (atomically); read back only while the key is the same, so
    a measurement of another world design or another model in the same run store is never reused."""
    from harness.api import atomic_write_json

    key = json.loads(json.dumps(key, default=str))
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == key:
            return stored["value"]
    value = compute()
    atomic_write_json(path, {"key": key, "value": value})
    return value


# --------------------------------------------------------------------------- reading results
def _win(results: dict[str, Any] | None) -> dict[str, Any] | None:
    return (results or {}).get("win_rate_vs_sft")


def _task_decided(results: dict[str, Any] | None) -> tuple[int, int] | None:
    decided = (_win(results) or {}).get("decided_by")
    if decided is None:
        return None
    task = decided.get("task", {"wins": 0, "losses": 0})
    return int(task["wins"]), int(task["losses"])


def _tax_deltas(results: dict[str, Any] | None) -> dict[str, tuple[float, str]]:
    """task -> (harm, metric): the tax as a cost (accuracy lost, perplexity gained), from ``tax``."""
    out = {}
    for task, tax in ((results or {}).get("tax") or {}).items():
        delta = tax.get("delta")
        if delta is None:
            continue
        out[task] = (-delta if tax.get("higher_is_better", True) else delta, str(tax.get("metric")))
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean over seeds, or None when any seed lacks the value (a mean of some seeds is not the row's)."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return None
    return fmean(values)


def _fmt_rate(w: dict[str, Any] | None) -> str:
    return "—" if not w else f"{w['rate']:.3f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}]"


def _fmt(value: float | None, fmt: str = ".3f") -> str:
    return "—" if value is None else format(value, fmt)


def hump(curve: Sequence[Point]) -> dict[str, Any] | None:
    """Gold's peak on one curve and its drop to the end in the end point's SE (reported beside V6)."""
    if len(curve) < 3:
        return None
    peak = max(range(len(curve)), key=lambda i: curve[i].gold)
    final = curve[-1]
    drop = curve[peak].gold - final.gold
    return {"peak_index": peak, "peak_kl": curve[peak].kl, "peak_gold": curve[peak].gold, "final_gold": final.gold,
            "drop_in_se": drop / final.gold_se if final.gold_se else float("nan")}


def proxy_spearman(curve: Sequence[Point]) -> float | None:
    """Spearman's ρ of the held-out proxy against KL over a curve's points (π_SFT's included)."""
    from scipy.stats import spearmanr

    if len(curve) < 3:
        return None
    rho = float(spearmanr([p.kl for p in curve], [p.proxy for p in curve]).statistic)
    return None if math.isnan(rho) else rho


# --------------------------------------------------------------------------- the rows
def build_rows(seeds: Sequence[dict[str, Any]]) -> list[Row]:
    """V1–V9 from each seed's measurements: {"annotation", "sft_vs_base", "variants": {label: results}}."""
    return [rule(seeds) for rule in (v1, v2, v3, v4, v4b, v5, v6, v7, v8, v9)]


def _variant(seed: dict[str, Any], label: str) -> dict[str, Any] | None:
    return seed["variants"].get(label)


def _numbers(seeds) -> list[int]:
    """Each seed's number (its measurements' ``seed``; its position when they do not say)."""
    return [s.get("seed", i) for i, s in enumerate(seeds)]


def _agreements(seeds) -> list[float | None]:
    pct = [(s.get("annotation") or {}).get("pairwise_agreement_pct") for s in seeds]
    return [None if p is None else p / 100 for p in pct]


def v1(seeds) -> Row:
    agree = _agreements(seeds)
    return Row("V1", "annotators agree like InstructGPT's labelers", "agreement in [0.70, 0.78] every seed",
               tuple(_fmt(a) for a in agree), tuple(a is not None and 0.70 <= a <= 0.78 for a in agree),
               f"mean {_fmt(_mean(agree))}")


def v2(seeds) -> Row:
    agree = _agreements(seeds)
    acc = [((_variant(s, "ppo") or {}).get("rm") or {}).get("accuracy") for s in seeds]
    mean_acc, mean_agree = _mean(acc), _mean(agree)
    mean_ok = mean_acc is not None and mean_agree is not None and 0.65 <= mean_acc <= mean_agree
    return Row("V2", "the RM learns them, below their agreement",
               "mean held-out accuracy in [0.65, mean agreement]; every seed in [0.60, its own agreement]",
               tuple(f"{_fmt(a)} (agreement {_fmt(g)})" for a, g in zip(acc, agree)),
               tuple(a is not None and g is not None and 0.60 <= a <= g for a, g in zip(acc, agree)),
               f"mean {_fmt(mean_acc)}{seeds_only_interval(acc, _numbers(seeds))} vs agreement {_fmt(mean_agree)}",
               mean_ok)


def _win_row(key: str, finding: str, rule: str, wins: Sequence[dict[str, Any] | None], mean_min: float | None,
             numbers: Sequence[int]) -> Row:
    """A row of win rates: CI low > 0.5 every seed, and (``mean_min``) the mean over seeds at least that;
    the mean's two-level interval beside it."""
    mean = _mean([w["rate"] if w else None for w in wins])
    mean_ok = mean_min is None or (mean is not None and mean >= mean_min)
    return Row(key, finding, rule, tuple(_fmt_rate(w) for w in wins), tuple(bool(w) and w["ci_low"] > 0.5 for w in wins),
               f"mean {_fmt(mean)}{_win_interval(mean, [scores_of(w) for w in wins], numbers)}", mean_ok)


def _win_interval(mean: float | None, scores: Sequence[Any], numbers: Sequence[int]) -> str:
    """The interval beside a mean win rate; nothing where there is no mean to put it beside."""
    return "" if mean is None else mean_interval(scores, numbers)


def v3(seeds) -> Row:
    return _win_row("V3", "SFT beats the base model", "CI low > 0.5 every seed; mean ≥ 0.65",
                    [s.get("sft_vs_base") for s in seeds], 0.65, _numbers(seeds))


def v4(seeds) -> Row:
    wins = [_win(_variant(s, "ppo")) for s in seeds]
    row = _win_row("V4", "PPO beats SFT", "CI low > 0.5 every seed; mean ≥ 0.60; decisive verdict's mean ≥ 0.65",
                   wins, 0.60, _numbers(seeds))
    decisive = _mean([(w or {}).get("decisive", {}).get("rate") for w in wins])
    beside = _win_interval(decisive, [decisive_scores_of(w) for w in wins], _numbers(seeds))
    decisive_ok = decisive is not None and decisive >= 0.65
    cells = tuple(f"{c}; decisive {_fmt((w or {}).get('decisive', {}).get('rate'))}" for c, w in zip(row.cells, wins))
    return Row(row.key, row.finding, row.rule, cells, row.passed,
               f"{row.aggregate}; decisive mean {_fmt(decisive)}{beside}",
               row.aggregate_pass and decisive_ok)


def v4b(seeds) -> Row:
    task = [_task_decided(_variant(s, "ppo")) for s in seeds]
    return Row("V4b", "not by style alone", "task wins > task losses every seed",
               tuple(f"{t[0]}/{t[1]}" if t else "—" for t in task), tuple(bool(t) and t[0] > t[1] for t in task))


def v5(seeds) -> Row:
    reads = [matched_kl(heldout_curve(_variant(s, "ppo")), heldout_curve(_variant(s, "ppo-gold"))) for s in seeds]
    needed = math.ceil(V5_SHARE * len(seeds) - 1e-9)
    mean = _mean([r["diff"] if r else None for r in reads])
    cells = tuple(f"KL {r['kl']:.2f}: gold {r['gold_gold']:.3f} vs RM {r['gold_rm']:.3f} ({r['diff']:+.3f})" if r else "—"
                  for r in reads)
    return Row("V5", "a perfect reward is an upper bound, at matched KL",
               "at the largest KL both runs reached, held-out gold of PPO-on-gold (interpolated) ≥ PPO-on-RM's on "
               "≥ 4 of 5 seeds; mean difference > 0", cells, tuple(bool(r) and r["diff"] >= 0 for r in reads),
               f"{sum(bool(r) and r['diff'] >= 0 for r in reads)} of {len(seeds)} seeds (need {needed}); "
               f"mean difference {_fmt(mean, '+.3f')}"
               f"{seeds_only_interval([r['diff'] if r else None for r in reads], _numbers(seeds), '+.3f')}",
               mean is not None and mean > 0, needed)


def v6(seeds) -> Row:
    curves = [heldout_curve(_variant(s, "ppo-small-beta")) for s in seeds]
    pooled = pooled_gao(curves) if all(curves) else None
    rhos = [proxy_spearman(c) for c in curves]
    cells = tuple(_fmt_seed_shape(c, rho) for c, rho in zip(curves, rhos))
    return Row("V6", "over-optimization has Gao's shape",
               "small β: pooled fit of Δgold = d(α − β ln d), d = √KL: β's 95% bootstrap interval above 0, peak "
               "d* = exp(α/β − 1) inside the measured KL range; proxy Spearman ρ(KL) ≥ 0.9 every seed",
               cells, tuple(rho is not None and rho >= SPEARMAN_MIN for rho in rhos), _fmt_pooled(pooled),
               pooled is not None and pooled["beta_low"] is not None and pooled["beta_low"] > 0 and peak_inside(pooled))


def _fmt_seed_shape(curve: Sequence[Point], rho: float | None) -> str:
    """ρ, then the seed's own fit and its peak-to-end drop (reported beside the rule, not judged)."""
    if len(curve) < 2:
        return "—"
    fit = fit_gao(*curve_points(curve))
    own = "no fit" if fit is None else (f"own fit α {fit.alpha:.3f}, β {fit.beta:.3f}, "
                                        + (f"peak KL {fit.peak_kl:.2f}" if fit.peak_kl is not None else "no peak"))
    h = hump(curve)
    drop = "" if h is None else f"; gold peak {h['peak_gold']:.3f} at KL {h['peak_kl']:.2f} → end {h['drop_in_se']:.1f} SE below"
    return f"ρ {_fmt(rho, '.2f')}; {own}{drop}"


def _fmt_pooled(pooled: dict[str, Any] | None) -> str:
    if pooled is None:
        return "no pooled fit (a seed has no curve)"
    fit = pooled["fit"]
    interval = ("no interval: runs lack per-prompt values (results written before the rewards evaluator kept them)"
                if pooled["beta_low"] is None else f"[{pooled['beta_low']:.3f}, {pooled['beta_high']:.3f}]")
    peak = "no peak (β ≤ 0)" if fit.peak_kl is None else f"peak KL {fit.peak_kl:.2f}"
    return (f"pooled α {fit.alpha:.3f}, β {fit.beta:.3f} {interval}; {peak} in measured "
            f"[{pooled['kl_min']:.2f}, {pooled['kl_max']:.2f}]: {'inside' if peak_inside(pooled) else 'outside'}")


def v7(seeds) -> Row:
    return _win_row("V7", "DPO beats SFT", "CI low > 0.5 every seed", [_win(_variant(s, "dpo")) for s in seeds], None,
                    _numbers(seeds))


def v8(seeds) -> Row:
    a2c = [_win(_variant(s, "a2c")) for s in seeds]
    ppo = [_win(_variant(s, "ppo")) for s in seeds]
    mean_a2c, mean_ppo = _mean([w["rate"] if w else None for w in a2c]), _mean([w["rate"] if w else None for w in ppo])
    numbers, a2c_scores, ppo_scores = _numbers(seeds), [scores_of(w) for w in a2c], [scores_of(w) for w in ppo]
    beside = "" if mean_a2c is None or mean_ppo is None else "; " + paired(a2c_scores, ppo_scores, numbers, ("A2C", "PPO"))
    return Row("V8", "A2C improves on SFT, less than PPO", "win rate > 0.5 every seed; mean below PPO's mean",
               tuple(_fmt_rate(w) for w in a2c), tuple(bool(w) and w["rate"] > 0.5 for w in a2c),
               f"mean {_fmt(mean_a2c)}{_win_interval(mean_a2c, a2c_scores, numbers)} vs PPO {_fmt(mean_ppo)}{beside}",
               mean_a2c is not None and mean_ppo is not None and mean_a2c < mean_ppo)


def v9(seeds) -> Row:
    taxes = [(_tax_deltas(_variant(s, "ppo")), _tax_deltas(_variant(s, "ppo-ptx"))) for s in seeds]
    return Row("V9", "PPO-ptx lowers the alignment tax", "tax(ptx) < tax(PPO) on both lm-eval tasks every seed",
               tuple(_fmt_tax(plain, ptx) for plain, ptx in taxes),
               tuple(bool(ptx) and len(plain) >= 2 and set(plain) == set(ptx) and all(ptx[t][0] < plain[t][0] for t in plain)
                     for plain, ptx in taxes))


def _fmt_tax(plain: dict[str, tuple[float, str]], ptx: dict[str, tuple[float, str]]) -> str:
    if not plain or not ptx:
        return "—"
    return "; ".join(f"{t.split('_')[-1]} {ptx[t][0]:+.3f} vs {plain[t][0]:+.3f}" for t in sorted(plain) if t in ptx)


def render(rows: Sequence[Row], seeds: Sequence[int]) -> str:
    """The validation table as Markdown: one column per seed, the over-seeds cell, the verdict."""
    head = ["#", "finding", "pass when", *(f"seed {s}" for s in seeds), "over seeds", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        verdict = "not run" if all(c == "—" for c in r.cells) else "**pass**" if r.ok else "**fail**"
        cells = [f"{c} {'✓' if p else '✗'}" for c, p in zip(r.cells, r.passed)]
        lines.append("| " + " | ".join([r.key, r.finding, r.rule, *cells, r.aggregate or "", verdict]) + " |")
    return "\n".join(lines) + "\n\n" + INTERVALS_NOTE


def seeds_note(seeds: Sequence[int]) -> str:
    """The sentence that says whether a table is the pre-registered verdict (seeds 0–4) or not."""
    if tuple(sorted(seeds)) == PREREGISTERED_SEEDS:
        return "Judged on seeds 0–4, as pre-registered (issue 25)."
    return ("Not the pre-registered verdict: issue 25's rules are judged on seeds 0–4, this table on "
            f"{', '.join(map(str, seeds))}.")
