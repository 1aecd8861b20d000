"""Measuring the instrument: what ``harness world stats`` reports about an embedded world.

A simulated world is only useful if its numbers are known: how much its annotators agree (the
InstructGPT paper reports 72.6%), whether they track the gold judge better than each other,
how strongly they favour length, and how good the base model is before any training. All of it
is computed here from the world itself, so the numbers in module docstrings can be re-measured.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.api import Prompt, fleiss_kappa, krippendorff_alpha, percent_agreement

from .facts import words
from .rubric import read

if TYPE_CHECKING:  # pragma: no cover
    from .world import EmbeddedWorld

Pair = tuple[Prompt, str, str]


def candidate_pairs(world: "EmbeddedWorld", n: int, seed: int = 0) -> list[Pair]:
    """``n`` (prompt, a, b) pairs of distinct candidate responses to ``rm`` prompts."""
    rng = random.Random(f"embedded-stats-pairs-{seed}")
    prompts = world.prompts("rm")
    return [(p, *world.candidate_responses(p, 2, rng)) for p in (prompts[i % len(prompts)] for i in range(n))]


def annotator_choices(world: "EmbeddedWorld", pairs: list[Pair], seed: int = 0) -> list[list[int]]:
    """Every annotator's pairwise choice (0 = a, 1 = b) on every pair: labels by item."""
    rng = random.Random(f"embedded-stats-choose-{seed}")
    pool = world.annotators()
    return [[ann.choose(p, a, b, rng) for ann in pool] for p, a, b in pairs]


def gold_agreement(world: "EmbeddedWorld", pairs: list[Pair], labels_by_item: list[list[int]]) -> float:
    """Share of annotator choices that match the gold judge (pairs the gold judge ties are skipped)."""
    gold = world.gold()
    hits = total = 0
    for (p, a, b), labels in zip(pairs, labels_by_item):
        verdict = gold.compare(p, a, b)
        if verdict != 0.5:
            hits += sum(label == (0 if verdict == 1.0 else 1) for label in labels)
            total += len(labels)
    return hits / total if total else float("nan")


def length_bias(world: "EmbeddedWorld", pairs: list[Pair], labels_by_item: list[list[int]]) -> dict[str, float]:
    """Correlation of "preferred a" with len(a) − len(b) in words, for annotators and for the gold judge."""
    gold = world.gold()
    diffs, prefs, gold_diffs, gold_prefs = [], [], [], []
    for (p, a, b), labels in zip(pairs, labels_by_item):
        d = len(words(a)) - len(words(b))
        diffs += [d] * len(labels)
        prefs += [1 - label for label in labels]
        verdict = gold.compare(p, a, b)
        if verdict != 0.5:
            gold_diffs.append(d)
            gold_prefs.append(verdict)
    return {"annotators_r": _corr(diffs, prefs), "gold_r": _corr(gold_diffs, gold_prefs)}


def _same_content(world: "EmbeddedWorld", p: Prompt, a: str, b: str) -> bool:
    """Same task reading and tone, different length: a pair that only length can decide."""
    ra, rb = read(world.facts, p, a), read(world.facts, p, b)
    same_task = (ra.correct, ra.refused, ra.complied) == (rb.correct, rb.refused, rb.complied)
    return same_task and abs(ra.rudeness - rb.rudeness) < 0.05 and ra.n_words != rb.n_words


def longer_preferred(world: "EmbeddedWorld", pairs: list[Pair], labels_by_item: list[list[int]]) -> dict[str, float]:
    """On same-content pairs, % of annotator choices (and of gold verdicts, ties half) for the longer one."""
    gold = world.gold()
    ann, gold_votes = [], []
    for (p, a, b), labels in zip(pairs, labels_by_item):
        if _same_content(world, p, a, b):
            a_longer = len(words(a)) > len(words(b))
            ann += [(label == 0) == a_longer for label in labels]
            verdict = gold.compare(p, a, b)
            gold_votes.append(verdict if a_longer else 1 - verdict)
    pct = lambda xs: 100 * float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {"same_content_pairs": len(gold_votes), "annotators_pct": pct(ann), "gold_pct": pct(gold_votes)}


def _corr(x: list[float], y: list[float]) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1]) if len(x) > 2 else float("nan")


def likert_ratings(world: "EmbeddedWorld", n: int, seed: int = 0) -> list[list[int]]:
    """Every annotator's 1..7 rating of one candidate response per ``rm`` prompt: values by item."""
    rng = random.Random(f"embedded-stats-likert-{seed}")
    prompts = world.prompts("rm")
    items = []
    for i in range(n):
        p = prompts[i % len(prompts)]
        (response,) = world.candidate_responses(p, 1, rng)
        items.append([ann.rate(p, response, rng) for ann in world.annotators()])
    return items


def annotation_stats(world: "EmbeddedWorld", n_pairs: int = 2000, n_ratings: int = 500, seed: int = 0) -> dict[str, Any]:
    """Agreement between annotators (pairwise and Likert), with the gold judge, and their length bias."""
    pairs = candidate_pairs(world, n_pairs, seed)
    choices = annotator_choices(world, pairs, seed)
    ratings = likert_ratings(world, n_ratings, seed)
    return {
        "pairs": n_pairs,
        "annotators": len(world.annotators()),
        "pairwise_agreement_pct": 100 * percent_agreement(choices),
        "fleiss_kappa": fleiss_kappa(choices, 2),
        "annotator_vs_gold_pct": 100 * gold_agreement(world, pairs, choices),
        "likert_krippendorff_alpha_ordinal": krippendorff_alpha(ratings, level="ordinal"),
        "length_bias": length_bias(world, pairs, choices),
        "longer_preferred": longer_preferred(world, pairs, choices),
    }


def sample_responses(world: "EmbeddedWorld", model, tok, prompts: list[Prompt], max_new_tokens: int = 32,
                     batch: int = 64, seed: int = 0) -> list[str]:
    """One sampled response per prompt (temperature 1), through the harness's one generation path."""
    from harness.api import generate_responses
    from harness.api import encode_prompt

    out: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        ids = [encode_prompt(tok, world.chat_text(p)) for p in chunk]
        out += generate_responses(model, tok, ids, max_new_tokens=max_new_tokens, seed=seed + start).texts
    return out


def model_stats(world: "EmbeddedWorld", name: str = "tiny", lm_eval: bool = True, seed: int = 0) -> dict[str, Any]:
    """The base model's gold score on ``eval`` prompts and its lm-eval scores."""
    from harness.api import load_causal_lm

    from .lm_eval_tasks import evaluate

    model, tok = load_causal_lm(world.base_model(name))
    prompts = world.prompts("eval")
    responses = sample_responses(world, model, tok, prompts, seed=seed)
    gold = world.gold()
    scores = [gold.score(p, r) for p, r in zip(prompts, responses)]
    out: dict[str, Any] = {"model": f"embedded:{name}", "eval_prompts": len(prompts),
                           "gold_mean": float(np.mean(scores)), "correct_by_kind": correct_by_kind(world, prompts, responses),
                           "examples": _examples(prompts, responses, scores)}
    if lm_eval:
        out["lm_eval"] = evaluate(model, tok, world)
    return out


def _examples(prompts: list[Prompt], responses: list[str], scores: list[float], n: int = 3) -> list[dict[str, Any]]:
    return [{"prompt": p.text, "response": r, "gold": round(s, 3)} for p, r, s in list(zip(prompts, responses, scores))[:n]]


def correct_by_kind(world: "EmbeddedWorld", prompts: list[Prompt], responses: list[str]) -> dict[str, float]:
    """Share correct per answerable kind and over all of them (harmful prompts: share declined)."""
    hits: dict[str, list[bool]] = {}
    for p, r in zip(prompts, responses):
        reading = read(world.facts, p, r)
        hits.setdefault(p.kind, []).append(reading.refused if p.harmful else reading.correct)
        if not p.harmful:
            hits.setdefault("answerable", []).append(reading.correct)
    return {kind: float(np.mean(v)) for kind, v in hits.items()}


def demonstration_stats(world: "EmbeddedWorld") -> dict[str, Any]:
    """Mean gold score of the SFT demonstrations (what SFT imitates), and how often each demonstrator is right."""
    gold = world.gold()
    demos = world.demonstrations()
    by_writer: dict[str, list[bool]] = {}
    for d in demos:
        if not d.prompt.harmful:
            by_writer.setdefault(d.demonstrator, []).append(read(world.facts, d.prompt, d.response).correct)
    return {"gold_mean": float(np.mean([gold.score(d.prompt, d.response) for d in demos])),
            "correct_by_demonstrator": {w: float(np.mean(v)) for w, v in sorted(by_writer.items())}}


def world_stats(world: "EmbeddedWorld", model: str | None = "tiny", lm_eval: bool = True, n_pairs: int = 2000) -> dict[str, Any]:
    """Everything ``harness world stats`` prints."""
    stats: dict[str, Any] = {"seed": world.seed, "splits": {s: len(world.prompts(s)) for s in ("sft", "rm", "rl", "eval")}}
    stats["annotation"] = annotation_stats(world, n_pairs=n_pairs)
    stats["demonstrations"] = demonstration_stats(world)
    if model:
        stats["base_model"] = model_stats(world, model, lm_eval=lm_eval)
    stats["calibration"] = calibration(stats)
    return stats


def calibration(stats: dict[str, Any]) -> list[dict[str, str]]:
    """The calibration table of ``docs/world.md``: each measured value beside the anchor it was chosen for."""
    ann = stats["annotation"]
    rows = [
        ("annotator pairwise agreement", f"{ann['pairwise_agreement_pct']:.1f}%", "72.6 ± 1.5%",
         "InstructGPT training labelers (Ouyang et al. 2022 §5.1)"),
        ("annotator agreement with gold", f"{ann['annotator_vs_gold_pct']:.1f}%", "77.3 ± 1.3%; ~75%",
         "InstructGPT held-out labelers; Coste et al. 2023 label noise 25%"),
        ("longer answer preferred on same-content pairs", f"{ann['longer_preferred']['annotators_pct']:.0f}%", "> 50%",
         "Singhal et al. 2023: people and RMs favour length"),
        ("demonstrators correct (answerable prompts)",
         ", ".join(f"{w} {v:.2f}" for w, v in stats["demonstrations"]["correct_by_demonstrator"].items()),
         "skilled, imperfect", "InstructGPT demonstrators"),
    ]
    base = stats.get("base_model")
    if base:
        rows.append(("base model correct (answerable, chat format)", f"{base['correct_by_kind'].get('answerable', float('nan')):.2f}",
                     "below SFT", "SFT elicits what pretraining taught (V3)"))
        cloze = base.get("lm_eval", {}).get("embedded_cloze/acc")
        if cloze is not None:
            rows.append(("base model cloze accuracy on the world's facts", f"{cloze:.2f}", ">= 0.95 (design 3)",
                         "knowledge comes from pretraining (InstructGPT §5.3; Zhou et al. 2023, LIMA)"))
    return [{"quantity": q, "measured": m, "anchor": a, "source": s} for q, m, a, s in rows]
