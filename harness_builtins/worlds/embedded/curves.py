"""The validation's held-out curves: V5's gold at matched KL, V6's fit of Gao et al.'s RL form.

A curve is what a policy run's mid-training evaluations record (``[evaluation] every``, on the first
``periodic_prompts`` held-out prompts, against π_SFT samples drawn once; ``harness/_core/periodic.py``):
π_SFT at KL 0, then one point per evaluation in step order. Every variant of one seed evaluates the same
prompts against the same π_SFT samples, so two curves of a seed can be read against each other.

V5 (Gao et al. 2022, whose claim is gold reward as a function of KL): both runs are read at the largest
KL both reached, K* = min(max KL of each), each where it first reached K*, linearly interpolated
between the two evaluations around it (at K* one of the two is its own farthest point).

V6: Gao et al.'s functional form for RL, Δgold(d) = d(α − β ln d) with d = √KL (their eq. for RL,
fitted there to gold reward against the distance from the initial policy), is fitted by least squares
to the points of all seeds pooled; it peaks at d* = exp(α/β − 1). The interval of β is a two-level
percentile bootstrap with the draws of harness's seed statistics (:func:`harness.api.two_level_draws`:
seeds with replacement, then within each drawn seed its prompts with replacement), the same prompt
indices for every point of that seed, so a prompt's gold and KL move together across the curve,
refitting every draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.api import two_level_draws

RESAMPLES = 2000  # bootstrap draws, as harness's seed statistics
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Point:
    """One held-out evaluation of a run: π_SFT is step 0 at KL 0.

    ``delta`` and ``kl_pp`` are per prompt (gold of the policy's sample minus π_SFT's, and KL), present
    when the run recorded them (the rewards evaluator's ``policy.per_prompt``); π_SFT's are zeros.
    """

    step: int
    kl: float
    proxy: float
    gold: float
    gold_se: float
    delta: np.ndarray | None = None
    kl_pp: np.ndarray | None = None


def heldout_curve(results: dict[str, Any] | None) -> list[Point]:
    """A run's curve from its ``results.json`` (the policy summary's ``periodic`` history); [] without one."""
    periodic = ((results or {}).get("policy", {}).get("train") or {}).get("periodic") or []
    if not periodic:
        return []
    first = periodic[0]
    sft_pp = first.get("policy/per_prompt/sft_reward_gold")
    zeros = np.zeros(len(sft_pp)) if sft_pp is not None else None
    points = [Point(0, 0.0, first["policy/sft_reward_proxy"], first["policy/sft_reward_gold"],
                    first.get("policy/sft_reward_gold_se", float("nan")), zeros, zeros)]
    for p in periodic:
        gold_pp, kl_pp = p.get("policy/per_prompt/reward_gold"), p.get("policy/per_prompt/kl")
        delta = None
        if gold_pp is not None and kl_pp is not None and sft_pp is not None and len(gold_pp) == len(sft_pp):
            delta = np.asarray(gold_pp, dtype=float) - np.asarray(sft_pp, dtype=float)
        points.append(Point(int(p["step"]), float(p["policy/kl"]), float(p["policy/reward_proxy"]),
                            float(p["policy/reward_gold"]), float(p.get("policy/reward_gold_se", float("nan"))),
                            delta, None if delta is None else np.asarray(kl_pp, dtype=float)))
    return points


# --------------------------------------------------------------------------- V5: gold at matched KL
def gold_at_kl(curve: Sequence[Point], kl: float) -> float | None:
    """Held-out gold where the run first reached ``kl``, linearly interpolated; None if it never did."""
    for j, after in enumerate(curve):
        if after.kl >= kl:  # the first evaluation at or past ``kl``: every one before it is below
            if j == 0:
                return after.gold
            before = curve[j - 1]
            t = (kl - before.kl) / (after.kl - before.kl)
            return before.gold + t * (after.gold - before.gold)
    return None


def matched_kl(rm_curve: Sequence[Point], gold_curve: Sequence[Point]) -> dict[str, float] | None:
    """PPO-on-RM and PPO-on-gold read at the largest KL both reached; None without two curves that moved."""
    if len(rm_curve) < 2 or len(gold_curve) < 2:
        return None
    reach = min(max(p.kl for p in rm_curve), max(p.kl for p in gold_curve))
    if not reach > 0:
        return None
    on_rm, on_gold = gold_at_kl(rm_curve, reach), gold_at_kl(gold_curve, reach)
    return {"kl": reach, "gold_rm": on_rm, "gold_gold": on_gold, "diff": on_gold - on_rm}


# --------------------------------------------------------------------------- V6: Gao et al.'s RL form
@dataclass(frozen=True)
class GaoFit:
    """Δgold(d) = d(α − β ln d), d = √KL, least squares over ``n`` points."""

    alpha: float
    beta: float
    n: int

    @property
    def peak_d(self) -> float | None:
        """d* = exp(α/β − 1), where dΔgold/dd = α − β ln d − β = 0; a maximum only when β > 0."""
        return None if not self.beta > 0 else _exp(self.alpha / self.beta - 1.0)

    @property
    def peak_kl(self) -> float | None:
        """KL* = d*² = exp(2(α/β − 1))."""
        return None if not self.beta > 0 else _exp(2.0 * (self.alpha / self.beta - 1.0))


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf  # a peak that far out is simply outside any measured range


def _least_squares(d: np.ndarray, delta: np.ndarray) -> tuple[float, float]:
    design = np.column_stack([d, -d * np.log(d)])
    (alpha, beta), *_ = np.linalg.lstsq(design, delta, rcond=None)
    return float(alpha), float(beta)


def fit_gao(kl: Sequence[float], delta: Sequence[float]) -> GaoFit | None:
    """Fit on (KL, Δgold) points; points at KL ≤ 0 carry no information (the form is 0 there) and are left out."""
    kl, delta = np.asarray(kl, dtype=float), np.asarray(delta, dtype=float)
    keep = kl > 0
    if keep.sum() < 2:
        return None
    return GaoFit(*_least_squares(np.sqrt(kl[keep]), delta[keep]), int(keep.sum()))


def curve_points(curve: Sequence[Point]) -> tuple[list[float], list[float]]:
    """The (KL, Δgold) of a curve's evaluations (π_SFT's own point, (0, 0), left out)."""
    return [p.kl for p in curve[1:]], [p.gold - curve[0].gold for p in curve[1:]]


def pooled_gao(curves: Sequence[Sequence[Point]], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
               rng_seed: int = 0) -> dict[str, Any] | None:
    """The pooled fit over every seed's curve, β's bootstrap interval, and the measured KL range.

    ``beta_low``/``beta_high`` are None when a curve lacks per-prompt values (nothing to resample).
    """
    curves = [c for c in curves if len(c) > 1]
    if not curves:
        return None
    kl, delta = [], []
    for c in curves:
        k, y = curve_points(c)
        kl += k
        delta += y
    fit = fit_gao(kl, delta)
    if fit is None:
        return None
    measured = [k for k in kl if k > 0]
    out: dict[str, Any] = {"fit": fit, "kl_min": min(measured), "kl_max": max(measured), "n_seeds": len(curves),
                           "beta_low": None, "beta_high": None}
    if all(p.delta is not None for c in curves for p in c[1:]):
        betas = bootstrap_betas(curves, resamples, rng_seed)
        alpha = 1.0 - confidence
        out["beta_low"], out["beta_high"] = (float(q) for q in np.quantile(betas, [alpha / 2, 1 - alpha / 2]))
    return out


def _normal_sums(kl: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Per column (one seed slot of one draw), the least-squares sums Σx₁², Σx₁x₂, Σx₂², Σx₁y, Σx₂y over its points,
    x₁ = d, x₂ = −d ln d, d = √KL; points at KL ≤ 0 left out as :func:`fit_gao` leaves them."""
    keep = kl > 0
    d = np.sqrt(np.where(keep, kl, 1.0))
    x1, x2, y = np.where(keep, d, 0.0), np.where(keep, -d * np.log(d), 0.0), np.where(keep, delta, 0.0)
    return np.stack([(x1 * x1).sum(0), (x1 * x2).sum(0), (x2 * x2).sum(0), (x1 * y).sum(0), (x2 * y).sum(0)])


def bootstrap_betas(curves: Sequence[Sequence[Point]], resamples: int, rng_seed: int) -> np.ndarray:
    """β of the pooled fit on each two-level draw (seeds with replacement, then each drawn seed's prompts).

    The draws are :func:`harness.api.two_level_draws`' (the one implementation of the scheme); each slot's
    prompt indices apply to every point of its seed. A pooled least-squares fit is a sum over seeds of each
    seed's normal-equation sums, so the sums of every slot that picked a seed are computed at once and
    added up per draw.
    """
    stacks = [(np.stack([p.delta for p in c[1:]]), np.stack([p.kl_pp for p in c[1:]])) for c in curves]  # (points, prompts)
    sizes = [gold_pp.shape[1] for gold_pp, _ in stacks]
    sums = np.zeros((resamples, 5))
    for start, seeds, prompts in two_level_draws(sizes, resamples, np.random.default_rng(rng_seed)):
        for s, (gold_pp, kl_pp) in enumerate(stacks):
            draws, slots = np.nonzero(seeds == s)  # every slot that picked seed s (a draw may pick it twice)
            picked = prompts[draws, slots, :sizes[s]]  # that slot's prompts: (slots, n)
            np.add.at(sums, start + draws,
                      _normal_sums(kl_pp[:, picked].mean(axis=2), gold_pp[:, picked].mean(axis=2)).T)
    s11, s12, s22, b1, b2 = sums.T
    with np.errstate(divide="ignore", invalid="ignore"):
        betas = (s11 * b2 - s12 * b1) / (s11 * s22 - s12 ** 2)
    return betas[np.isfinite(betas)]


def peak_inside(pooled: dict[str, Any]) -> bool:
    """The fitted peak's KL strictly inside the range of the evaluations' KL (pooled over seeds)."""
    peak = pooled["fit"].peak_kl
    return peak is not None and pooled["kl_min"] < peak < pooled["kl_max"]
