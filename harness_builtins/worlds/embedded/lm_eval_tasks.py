"""lm-eval task files for the embedded world: held-out perplexity and a multiple-choice cloze.

The cloze task's headline metric is the Brier score of the choice (lower is better), accuracy
beside it: the world's bases know its facts (accuracy 1.00), so a tax shows in calibration first.

They measure what pretraining gave the base model — fluency on held-out text and knowledge of
the world's facts — with the same tool (lm-eval, YAML tasks, local data) a GPU user points at
hellaswag or arc; the alignment tax is the drop in these scores after RLHF. Data and YAML are
written once per world (seed + corpus options) into the cache, atomically. Both tasks read local
JSONL (``dataset_path: json``) with a ``cache_dir`` beside it, so nothing touches the network.
"""
from __future__ import annotations

import json
import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.api import World

from .facts import COLOURS, Facts, number_word
from .model import build_once, cache_root, config_hash

TASKS_VERSION = 3
HELDOUT_TASK = "embedded_heldout"
CLOZE_TASK = "embedded_cloze"
N_CHOICES = 4
PERPLEXITY_METRICS = (("word_perplexity", "weighted_perplexity"), ("byte_perplexity", "weighted_perplexity"),
                      ("bits_per_byte", "bits_per_byte"))


def _cloze_item(context: str, answer: str, domain: list[str], rng: random.Random) -> dict[str, Any]:
    """One multiple-choice item: the answer among three distractors from its domain, shuffled."""
    choices = rng.sample([d for d in domain if d != answer], N_CHOICES - 1) + [answer]
    rng.shuffle(choices)
    return {"context": context, "choices": choices, "label": choices.index(answer)}


def cloze_items(facts: Facts, seed: int) -> list[dict[str, Any]]:
    """Every capital and colour, every opposite and a spread of sums, as 4-way cloze items."""
    rng = random.Random(f"embedded-cloze-{seed}")
    capitals = list(facts.capitals.values())
    items = [_cloze_item(f"The capital of {c} is", a, capitals, rng) for c, a in facts.capitals.items()]
    items += [_cloze_item(f"A {t} is", c, list(COLOURS), rng) for t, c in facts.colours.items()]
    items += [_cloze_item(f"The opposite of {w} is", o, sorted(facts.opposites), rng) for w, o in facts.opposites.items()]
    sums = [number_word(n) for n in range(2, 19)]
    items += [_cloze_item(f"{number_word(a).capitalize()} plus {number_word(b)} is", number_word(a + b), sums, rng)
              for a in range(1, 10) for b in (2, 4, 6, 8)]
    return items


def _yaml(task: str, data: Path, cache: Path, fields: dict[str, Any]) -> str:
    import yaml

    config = {
        "task": task, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(cache)},
        "test_split": "test", **fields, "metadata": {"version": TASKS_VERSION},
    }
    return yaml.safe_dump(config, sort_keys=False)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_into(tmp: Path, final: Path, facts: Facts, seed: int, heldout: list[str]) -> None:
    """JSONL data and YAML configs; YAML points at ``final`` (where the directory will live)."""
    _write_jsonl(tmp / "heldout.jsonl", [{"text": t} for t in heldout])
    _write_jsonl(tmp / "cloze.jsonl", cloze_items(facts, seed))
    cache = final / "hf_datasets_cache"
    (tmp / f"{HELDOUT_TASK}.yaml").write_text(_yaml(HELDOUT_TASK, final / "heldout.jsonl", cache, {
        "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m, "aggregation": agg, "higher_is_better": False} for m, agg in PERPLEXITY_METRICS],
    }))
    (tmp / f"{CLOZE_TASK}.yaml").write_text(_yaml(CLOZE_TASK, final / "cloze.jsonl", cache, {
        "output_type": "multiple_choice", "doc_to_text": "context", "doc_to_target": "label",
        "doc_to_choice": "choices",
        # The Brier score first, so it is the tax's headline metric: a proper scoring rule with no ceiling
        # at 100% accuracy, where post-training's cost shows first (GPT-4 Technical Report, Fig. 8).
        "metric_list": [{"metric": "brier_score", "aggregation": "brier_score", "higher_is_better": False},
                        {"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }))


def write_tasks(facts: Facts, seed: int, recipe: dict[str, Any], heldout: Callable[[], list[str]]) -> tuple[Path, list[str]]:
    """(task directory, task names), written on first use.

    What the tasks are made of comes from the world (``EmbeddedWorld.lm_eval_tasks``): its facts and
    seed, the options its held-out documents depend on (``recipe``, part of the cache key) and those
    documents (``heldout``, only called when the tasks are written).
    """
    key = {"version": TASKS_VERSION, "seed": seed, **recipe}
    path = cache_root() / "lm_eval" / f"s{seed}-{config_hash(key)}"
    build_once(path, f"{CLOZE_TASK}.yaml", lambda tmp: _write_into(tmp, path, facts, seed, heldout()))
    return path, [HELDOUT_TASK, CLOZE_TASK]


@contextmanager
def local_hf_caches(cache: Path) -> Iterator[None]:
    """HF_DATASETS_CACHE / HF_HOME under ``cache`` for the duration of one evaluation, then restored.

    Scoped, not process-wide: a GPU user who later loads hub models keeps their own cache.
    (The YAML's ``cache_dir`` already pins the datasets cache; this covers what reads the env.)
    """
    saved = {var: os.environ.get(var) for var in ("HF_DATASETS_CACHE", "HF_HOME")}
    os.environ.update({var: str(cache / var.lower()) for var in saved})
    try:
        yield
    finally:
        for var, value in saved.items():
            os.environ.pop(var) if value is None else os.environ.__setitem__(var, value)


def evaluate(model, tokenizer, world: World, batch_size: int = 32, limit: int | None = None) -> dict[str, float]:
    """lm-eval scores of an in-memory model on this world's tasks: ``{"<task>/<metric>": value}``."""
    task_dir, names = world.lm_eval_tasks()
    with local_hf_caches(task_dir):
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(getattr(model, "device", "cpu")))
        manager = TaskManager(include_path=str(task_dir), include_defaults=False)
        out = lm_eval.simple_evaluate(model=lm, tasks=names, limit=limit, log_samples=False, task_manager=manager)
    return flatten_results(out["results"])


def flatten_results(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """lm-eval's ``{"task": {"acc,none": x, ...}}`` -> ``{"task/acc": x}`` (numbers only, no stderr)."""
    flat = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric = key.split(",")[0]
            if isinstance(value, (int, float)) and not metric.endswith("_stderr") and metric != "sample_len":
                flat[f"{task}/{metric}"] = float(value)
    return flat
