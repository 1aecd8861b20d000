"""The summary an online optimizer returns: final and recent metrics, timings, and the training ``curve``.

``curve`` is a list of per-step dicts, at most :data:`CURVE_POINTS` of them (evenly thinned, first
step kept): ``{"step": int, "reward/proxy": float, "reward/gold": float, "kl": float}``, where ``kl`` is
the optimizer's ``<name>/kl`` (mean per-sequence KL(π_θ‖π_SFT) of the step's samples) and a key is
left out when the step did not log it (no gold judge on real data). The summary lands in
``results.json`` under ``policy.train``; ``harness compare``'s reward–KL and gold–proxy plots read
``policy.train.curve`` there, and the ``overoptimization`` evaluator reads the policy stage's summary
(``ctx.summaries["policy"]["curve"]``). Any online optimizer that returns :func:`summarize`'s dict
(or a ``curve`` in this format) is plotted and watched like PPO.
"""
from __future__ import annotations

from typing import Any

from harness._online.run_state import RLRun

SUMMARY_WINDOW = 10  # the summary's "recent" metrics average the last this-many steps


def summarize(run: RLRun, resumed_from: int) -> dict[str, Any]:
    """JSON-ready: final and recent-mean value of every metric, wall time and generation's share of it."""
    rows = run.history
    recent = rows[-SUMMARY_WINDOW:]
    keys = [k for k in (rows[-1] if rows else {}) if k != "step"]
    total, generation = run.seconds["total"], run.seconds["generation"]
    return {
        "optimizer": run.name,
        "steps": rows[-1]["step"] if rows else 0,
        "resumed_from": resumed_from,
        "final": {k: rows[-1][k] for k in keys},
        f"mean_last_{SUMMARY_WINDOW}": {k: _mean([r[k] for r in recent if k in r]) for k in keys},
        "wall_s": total,
        "generation_s": generation,
        "reward_s": run.seconds["reward"],
        "generation_share": generation / total if total else 0.0,
        "s_per_step": total / len(rows) if rows else 0.0,
        "phase_s": {k: v for k, v in run.seconds.items() if k != "total"},  # generation, reward, policy, reference, update
        "curve": training_curve(rows, run.name),
    }


CURVE_POINTS = 400  # at most this many steps of the training curve are kept in the summary


def training_curve(rows: list[dict[str, float]], name: str) -> list[dict[str, float]]:
    """Proxy reward, gold reward and KL per step (evenly thinned): what comparison plots and
    the over-optimization evaluator read from ``results.json``."""
    stride = max(1, -(-len(rows) // CURVE_POINTS))
    keep = {"reward/proxy": "reward/proxy", "reward/gold": "reward/gold", f"{name}/kl": "kl"}
    return [{"step": r["step"], **{new: r[old] for old, new in keep.items() if old in r}} for r in rows[::stride]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
