"""The short table ``harness run`` prints at the end: what it measured, with intervals."""
from __future__ import annotations

from typing import Any, Mapping


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "—"


def format_decided(decided_by: Mapping[str, Mapping[str, float]]) -> str:
    """``length 39/1 · task 48/15``: per gold term, the wins and losses it decided (the win-rate evaluator's
    ``decided_by``), terms in name order."""
    return " · ".join(f"{term} {c['wins']:.0f}/{c['losses']:.0f}" for term, c in sorted(decided_by.items()))


def format_summary(results: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers of one run's ``results.json``."""
    sft, rm, policy = results.get("sft", {}), results.get("rm", {}), results.get("policy", {})
    win = results.get("win_rate_vs_sft", {})
    rows = [
        ("SFT gold score (base → SFT)", f"{_num(sft.get('base_gold_score'))} → {_num(sft.get('gold_score'))}"),
        ("RM held-out accuracy (annotators / gold)", f"{_num(rm.get('accuracy'))} / {_num(rm.get('gold_accuracy'))}"),
        ("Proxy reward (SFT → policy)", f"{_num(policy.get('sft_reward_proxy'))} → {_num(policy.get('reward_proxy'))}"),
        ("Gold reward (SFT → policy)", f"{_num(policy.get('sft_reward_gold'))} → {_num(policy.get('reward_gold'))}"),
        ("KL(policy ‖ SFT), nats/response", _num(policy.get("kl"))),
        (f"Win rate vs SFT ({win.get('judge', '?')} judge, n={win.get('n', '?')})",
         f"{_num(win.get('rate'))}  [95% CI {_num(win.get('ci_low'))}, {_num(win.get('ci_high'))}]"),
    ]
    if win.get("decided_by"):
        rows.append(("Wins / losses decided by (gold terms)", f"{format_decided(win['decided_by'])}  ({win.get('ties', '?')} ties)"))
    for task, tax in sorted(results.get("tax", {}).items()):
        rows.append((f"Alignment tax {task} ({tax.get('metric')}, policy − SFT)", _num(tax.get("delta"), "+.4f")))
    stages = results.get("stages", {})
    times = ", ".join(f"{k} {_num(v.get('wall_s'), '.0f')}s{' (reused)' if v.get('reused') else ''}" for k, v in stages.items())
    rows += [("Wall time", f"{_num(results.get('wall_s'), '.0f')} s ({times})"),
             ("Peak RSS", f"{_num(results.get('peak_rss_mib'), '.0f')} MiB")]
    width = max(len(k) for k, _ in rows)
    title = f"harness results: {results.get('experiment')} ({results.get('components', {}).get('optimizer', '?')})"
    return "\n".join([title, "-" * len(title), *(f"{k:<{width}}  {v}" for k, v in rows)])
