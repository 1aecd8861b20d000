"""``harness world validate``: is the embedded world a valid instrument? Rows V1–V9 on several seeds.

A simulator earns trust the way AlpacaFarm earned it: by reproducing, before anyone relies on
it, the findings the literature agrees on. Each row below is one such finding with a pass rule
fixed in advance (``docs/world.md`` pre-registers them); the command runs
``experiments/world-validation.toml`` once per seed (the experiment seed seeds the world and
every stage; SFT and the reward model are shared by the variants of one seed), reads every
number from the runs' ``results.json`` and prints the table with intervals. The runs live in the
ordinary run store, so an interrupted validation resumes where it stopped.

| row | finding (source) | pass when |
|---|---|---|
| V1 | annotators agree like InstructGPT's labelers (72.6 ± 1.5%) | pairwise agreement in [0.70, 0.78] |
| V2 | the RM learns them, below their agreement | held-out RM accuracy in [0.65, agreement] |
| V3 | SFT beats the base model | gold win rate SFT vs base ≥ 0.65 |
| V4 | PPO beats SFT (InstructGPT; TRL TL;DR) | win rate ≥ 0.60 on every seed, CI low > 0.5, mean ≥ 0.65 |
| V4b | not by style alone (Singhal et al. 2023) | task wins > task losses, every seed |
| V5 | a perfect reward is an upper bound | PPO vs gold reward ≥ PPO vs learned RM |
| V6 | over-optimization is a hump (Gao et al. 2022) | small β: proxy rises monotonically, gold peaks at an intermediate KL and ends ≥ 2 SE below the peak |
| V7 | DPO beats SFT (Rafailov et al. 2023) | win rate CI low > 0.5 |
| V8 | A2C improves on SFT, less than PPO | win rate > 0.5 (and below PPO's, reported) |
| V9 | PPO-ptx lowers the alignment tax (InstructGPT) | tax(ptx) < tax(PPO) on both lm-eval tasks |
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Any, Callable, Sequence

from harness.api import rate_interval

SFT_VS_BASE_FILE = "sft_vs_base.json"
ANNOTATION_FILE = "annotation.json"


@dataclass(frozen=True)
class Row:
    """One validation row: per-seed values, per-seed pass, the row's verdict."""

    key: str
    finding: str
    rule: str
    cells: tuple[str, ...]  # one formatted cell per seed
    passed: tuple[bool, ...]
    aggregate: str = ""  # mean ± sd over seeds, where meaningful
    aggregate_pass: bool = True

    @property
    def ok(self) -> bool:
        return all(self.passed) and self.aggregate_pass


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
    return {"rate": fmean(scores), "ci_low": low, "ci_high": high, "n": len(scores), "verdict": "preference"}


def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once; its result kept in ``path`` (atomically) so a rerun reads it back."""
    from harness.api import atomic_write_json

    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    value = compute()
    atomic_write_json(path, value)
    return value


# --------------------------------------------------------------------------- the rows
def _fmt_rate(w: dict[str, Any] | None) -> str:
    if not w:
        return "—"
    return f"{w['rate']:.3f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}]"


def _mean_sd(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "—"
    return f"{fmean(vals):.3f} ± {stdev(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def _win(results: dict[str, Any] | None) -> dict[str, Any] | None:
    return (results or {}).get("win_rate_vs_sft")


def _task_decided(results: dict[str, Any] | None) -> tuple[int, int] | None:
    decided = (_win(results) or {}).get("decided_by")
    if decided is None:
        return None
    task = decided.get("task", {"wins": 0, "losses": 0})
    return int(task["wins"]), int(task["losses"])


def hump(curve: Sequence[dict[str, float]]) -> dict[str, Any] | None:
    """V6 on one curve of (kl, proxy, gold, gold_se) points, SFT first: is gold a hump while proxy climbs?"""
    if len(curve) < 3:
        return None
    proxy = [c["proxy"] for c in curve]
    gold = [c["gold"] for c in curve]
    peak = max(range(len(gold)), key=gold.__getitem__)
    final = curve[-1]
    drop = gold[peak] - final["gold"]
    return {
        "proxy_monotone": all(b > a for a, b in zip(proxy, proxy[1:])),
        "peak_index": peak, "peak_kl": curve[peak]["kl"], "peak_gold": gold[peak],
        "final_gold": final["gold"], "final_se": final["gold_se"], "drop_in_se": drop / final["gold_se"] if final["gold_se"] else float("nan"),
        "intermediate_peak": 0 < peak < len(curve) - 1,
    }


def hump_curve(results: dict[str, Any] | None) -> list[dict[str, float]]:
    """The V6 curve: π_SFT (KL 0) and every mid-training evaluation of the policy, in step order."""
    periodic = ((results or {}).get("policy", {}).get("train") or {}).get("periodic") or []
    if not periodic:
        return []
    first = periodic[0]
    points = [{"kl": 0.0, "proxy": first["policy/sft_reward_proxy"], "gold": first["policy/sft_reward_gold"],
               "gold_se": first.get("policy/sft_reward_gold_se", float("nan"))}]
    for p in periodic:
        points.append({"kl": p["policy/kl"], "proxy": p["policy/reward_proxy"], "gold": p["policy/reward_gold"],
                       "gold_se": p.get("policy/reward_gold_se", float("nan")), "step": p["step"]})
    return points


def _tax_deltas(results: dict[str, Any] | None) -> dict[str, tuple[float, str]]:
    """task -> (harm, metric): the tax as a cost (accuracy lost, perplexity gained), from ``tax``."""
    out = {}
    for task, tax in ((results or {}).get("tax") or {}).items():
        delta = tax.get("delta")
        if delta is None:
            continue
        out[task] = (-delta if tax.get("higher_is_better", True) else delta, str(tax.get("metric")))
    return out


def build_rows(seeds: Sequence[dict[str, Any]]) -> list[Row]:
    """V1–V9 from each seed's measurements: {"annotation", "sft_vs_base", "variants": {label: results}}."""
    v = lambda s, label: s["variants"].get(label)  # noqa: E731
    rows: list[Row] = []

    agree = [s["annotation"]["pairwise_agreement_pct"] / 100 for s in seeds]
    rows.append(Row("V1", "annotators agree like InstructGPT's labelers", "agreement in [0.70, 0.78]",
                    tuple(f"{a:.3f}" for a in agree), tuple(0.70 <= a <= 0.78 for a in agree), _mean_sd(agree)))

    acc = [((v(s, "ppo") or {}).get("rm") or {}).get("accuracy", float("nan")) for s in seeds]
    rows.append(Row("V2", "the RM learns them, below their agreement", "RM held-out accuracy in [0.65, agreement]",
                    tuple(f"{a:.3f}" for a in acc), tuple(0.65 <= a <= g for a, g in zip(acc, agree)), _mean_sd(acc)))

    base = [s.get("sft_vs_base") for s in seeds]
    rows.append(Row("V3", "SFT beats the base model", "gold win rate SFT vs base ≥ 0.65",
                    tuple(_fmt_rate(b) for b in base), tuple(bool(b) and b["rate"] >= 0.65 for b in base),
                    _mean_sd([b["rate"] for b in base if b])))

    ppo = [_win(v(s, "ppo")) for s in seeds]
    rates = [w["rate"] if w else float("nan") for w in ppo]
    mean_ok = all(w for w in ppo) and fmean(rates) >= 0.65
    rows.append(Row("V4", "PPO beats SFT (InstructGPT; TRL TL;DR)", "≥ 0.60 and CI low > 0.5 every seed; mean ≥ 0.65",
                    tuple(_fmt_rate(w) for w in ppo), tuple(bool(w) and w["rate"] >= 0.60 and w["ci_low"] > 0.5 for w in ppo),
                    _mean_sd(rates), mean_ok))

    task = [_task_decided(v(s, "ppo")) for s in seeds]
    rows.append(Row("V4b", "and not by style alone (Singhal et al. 2023)", "wins decided by task > losses decided by task",
                    tuple(f"{t[0]}/{t[1]}" if t else "—" for t in task), tuple(bool(t) and t[0] > t[1] for t in task)))

    gold = [_win(v(s, "ppo-gold")) for s in seeds]
    rows.append(Row("V5", "a perfect reward is an upper bound", "PPO vs gold ≥ PPO vs learned RM (win rate)",
                    tuple(f"{_fmt_rate(g)} vs {w['rate']:.3f}" if g and w else "—" for g, w in zip(gold, ppo)),
                    tuple(bool(g and w) and g["rate"] >= w["rate"] for g, w in zip(gold, ppo))))

    humps = [hump(hump_curve(v(s, "ppo-small-beta"))) for s in seeds]
    rows.append(Row("V6", "over-optimization is a hump (Gao et al. 2022)",
                    "small β: proxy rises monotonically; gold peaks at an intermediate KL, ends ≥ 2 SE below",
                    tuple(_fmt_hump(h) for h in humps),
                    tuple(bool(h) and h["proxy_monotone"] and h["intermediate_peak"] and h["drop_in_se"] >= 2 for h in humps)))

    dpo = [_win(v(s, "dpo")) for s in seeds]
    rows.append(Row("V7", "DPO beats SFT (Rafailov et al. 2023)", "win rate CI low > 0.5",
                    tuple(_fmt_rate(w) for w in dpo), tuple(bool(w) and w["ci_low"] > 0.5 for w in dpo),
                    _mean_sd([w["rate"] for w in dpo if w])))

    a2c = [_win(v(s, "a2c")) for s in seeds]
    rows.append(Row("V8", "A2C improves on SFT, less than PPO", "win rate > 0.5 (PPO's beside it)",
                    tuple(f"{_fmt_rate(w)}{' < PPO' if w and p and w['rate'] < p['rate'] else ''}" for w, p in zip(a2c, ppo)),
                    tuple(bool(w) and w["rate"] > 0.5 for w in a2c), _mean_sd([w["rate"] for w in a2c if w])))

    taxes = [(_tax_deltas(v(s, "ppo")), _tax_deltas(v(s, "ppo-ptx"))) for s in seeds]
    rows.append(Row("V9", "PPO-ptx lowers the alignment tax (InstructGPT)", "tax(ptx) < tax(PPO) on both lm-eval tasks",
                    tuple(_fmt_tax(plain, ptx) for plain, ptx in taxes),
                    tuple(bool(ptx) and set(plain) == set(ptx) and all(ptx[t][0] < plain[t][0] for t in plain)
                          for plain, ptx in taxes)))
    return rows


def _fmt_hump(h: dict[str, Any] | None) -> str:
    if not h:
        return "—"
    mono = "proxy ↑" if h["proxy_monotone"] else "proxy not monotone"
    return (f"{mono}; gold peak {h['peak_gold']:.3f} at KL {h['peak_kl']:.2f} → {h['final_gold']:.3f} "
            f"({h['drop_in_se']:.1f} SE)")


def _fmt_tax(plain: dict[str, tuple[float, str]], ptx: dict[str, tuple[float, str]]) -> str:
    if not plain or not ptx:
        return "—"
    return "; ".join(f"{t.split('_')[-1]} {ptx[t][0]:+.3f} vs {plain[t][0]:+.3f}" for t in sorted(plain) if t in ptx)


def render(rows: Sequence[Row], seeds: Sequence[int]) -> str:
    """The validation table as Markdown: one column per seed, the aggregate, the verdict."""
    head = ["#", "finding", "pass when", *(f"seed {s}" for s in seeds), "mean ± sd", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        verdict = "not run" if all(c == "—" for c in r.cells) else "**pass**" if r.ok else "**fail**"
        cells = [f"{c} {'✓' if p else '✗'}" for c, p in zip(r.cells, r.passed)]
        lines.append("| " + " | ".join([r.key, r.finding, r.rule, *cells, r.aggregate or "", verdict]) + " |")
    return "\n".join(lines)
