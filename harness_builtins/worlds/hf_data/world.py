"""``HFDataWorld``: prompts, demonstrations and *recorded* human feedback from datasets.

A real-data world has no simulator behind it: no annotators to ask (the labels were collected
already and are handed to the feedback formats through ``recorded_feedback``), no candidate
generator, no gold judge (``gold()`` is None; evaluate with the reward model or an LLM judge),
and no models of its own (``[model] base`` is a local directory or a hub id). Data is read
lazily, on first use, so constructing the world (and validating an experiment) reads nothing.

Splits: ``rm`` are the feedback prompts minus those held out; ``eval`` comes from [eval] or is
a seeded ``eval_fraction`` of the feedback prompts, whose feedback and demonstrations are then
dropped so evaluation stays held out; ``rl`` comes from [rl], or a held-out ``rl_fraction``,
or is the ``rm`` prompts; ``sft`` are the prompts of the demonstrations.
"""
from __future__ import annotations

import random
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from harness.api import ConfigError, Demonstration, FeedbackRecord, HarnessError, Prompt, Split

from .options import TOKENIZER_TEMPLATE, HFDataOptions, SourceTable
from .records import (
    FORMAT_FIELD,
    Skipped,
    demonstrations_from_rows,
    feedback_records,
    preferred_response,
    prompts_from_rows,
)
from .sources import read_rows
from .transcripts import turns

TABLE = "world.hf_data"


class HFDataWorld:
    """Prompts, demonstrations and recorded human feedback from HF datasets (hub id or local JSONL/Parquet)."""

    name = "hf_data"
    Options = HFDataOptions

    def __init__(self, options: HFDataOptions, seed: int = 0) -> None:
        self.options = options
        self.seed = int(seed)
        self.skipped: dict[str, dict[str, int]] = {}

    # ---------------------------------------------------------------- reading
    def _rows(self, name: str, table: SourceTable) -> list[dict[str, Any]]:
        return read_rows(table, f"{TABLE}.{name}")

    def _report(self, name: str, skipped: Skipped, kept: int) -> None:
        if skipped:
            self.skipped[name] = dict(skipped.reasons)
            print(f"hf_data: [{TABLE}.{name}] skipped {sum(skipped.reasons.values())} rows "
                  f"({', '.join(f'{k}: {v}' for k, v in skipped.reasons.items())}); kept {kept}.", file=sys.stderr)
        if kept == 0:
            raise ConfigError(f"[{TABLE}.{name}] {getattr(self.options, name).path!r}: no usable rows"
                              f"{' (' + ', '.join(skipped.reasons) + ')' if skipped else ''}.")

    @cached_property
    def _all_feedback(self) -> list[FeedbackRecord]:
        table, skipped = self.options.feedback, Skipped()
        records = feedback_records(self._rows("feedback", table), table, f"{TABLE}.feedback", skipped)
        self._report("feedback", skipped, len(records))
        return records

    def _source_prompts(self, name: str) -> list[Prompt] | None:
        table = getattr(self.options, name)
        if table is None:
            return None
        skipped = Skipped()
        prompts = prompts_from_rows(self._rows(name, table), table, skipped)
        self._report(name, skipped, len(prompts))
        return prompts

    @cached_property
    def _splits(self) -> dict[str, list[Prompt]]:
        """rm / rl / eval prompts (sft prompts come with the demonstrations)."""
        feedback_prompts = list({r.prompt.id: r.prompt for r in self._all_feedback}.values())
        eval_given, rl_given = self._source_prompts("eval"), self._source_prompts("rl")
        o = self.options
        held = _hold_out(feedback_prompts, {"eval": None if eval_given else o.eval_fraction,
                                            "rl": None if rl_given or not o.rl_fraction else o.rl_fraction},
                         random.Random(f"hf_data-holdout-{self.seed}"))
        eval_prompts = eval_given or held["eval"]
        excluded = {p.id for p in eval_prompts} | {p.id for p in held["rl"]}
        rm = [p for p in feedback_prompts if p.id not in excluded]
        if not rm:
            raise ConfigError(f"[{TABLE}] every feedback prompt is held out for eval/rl; lower eval_fraction/rl_fraction "
                              f"or give more feedback rows.")
        return {"rm": rm, "rl": rl_given or held["rl"] or rm, "eval": eval_prompts}

    # ---------------------------------------------------------------- the World protocol
    def chat_text(self, prompt: Prompt) -> str:
        if self.options.chat_template == TOKENIZER_TEMPLATE:
            messages = turns(prompt.text) if prompt.kind == "dialogue" else [{"role": "user", "content": prompt.text}]
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.options.chat_template.replace("{prompt}", prompt.text)

    def prompts(self, split: Split) -> list[Prompt]:
        if split == "sft":
            return list({d.prompt.id: d.prompt for d in self.demonstrations()}.values())
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; one of sft, rm, rl, eval")
        return list(self._splits[split])

    def demonstrations(self) -> list[Demonstration]:
        return list(self._demonstrations)

    @cached_property
    def _demonstrations(self) -> list[Demonstration]:
        eval_ids = {p.id for p in self._splits["eval"]}
        if self.options.sft is None:  # SFT on the preferred response of each rm feedback item
            rm_ids = {p.id for p in self._splits["rm"]}
            demos = [Demonstration(r.prompt, preferred_response(r), "human") for r in self._all_feedback
                     if r.prompt.id in rm_ids]
        else:
            skipped = Skipped()
            demos = demonstrations_from_rows(self._rows("sft", self.options.sft), self.options.sft, skipped)
            self._report("sft", skipped, len(demos))
        return [d for d in demos if d.prompt.id not in eval_ids]

    def recorded_feedback(self, field: str) -> list[FeedbackRecord]:
        """The recorded records of the ``rm`` prompts, for the feedback format whose record key is ``field``."""
        fmt = self.options.feedback.format
        expected, plugin = FORMAT_FIELD[fmt]
        if field != expected:
            raise ConfigError(
                f"[{TABLE}.feedback] format = {fmt!r}: the data holds {fmt} labels ({expected!r} records), but the "
                f"run's feedback format reads {field!r} records. Set [feedback] name = {plugin!r}."
            )
        rm_ids = {p.id for p in self._splits["rm"]}
        return [r for r in self._all_feedback if r.prompt.id in rm_ids]

    def candidate_responses(self, prompt: Prompt, k: int, rng: random.Random) -> list[str]:
        raise HarnessError("world 'hf_data' has recorded feedback and no response generator; feedback formats "
                           "read its records through recorded_feedback().")

    def annotators(self) -> list:
        return []  # the labels are recorded; nobody is simulated

    def gold(self) -> None:
        return None  # real data has no ground-truth judge

    def pretraining_texts(self, split: Literal["train", "heldout"]) -> list[str]:
        if split not in ("train", "heldout"):
            raise ValueError(f"unknown corpus split {split!r}; 'train' or 'heldout'")
        return list(self._corpus[split])

    @cached_property
    def _corpus(self) -> dict[str, list[str]]:
        table = self.options.pretraining
        if table is None:
            raise ConfigError(f"world 'hf_data' has no pretraining text: PPO-ptx (ptx_coef > 0) needs "
                              f"[{TABLE}.pretraining] path = \"<dataset>\" (columns = {{text = \"<column>\"}}), "
                              f"or set ptx_coef = 0.")
        texts = [str(r["text"]) for r in self._rows("pretraining", table) if r["text"]]
        n_heldout = round(table.heldout_fraction * len(texts))
        return {"train": texts[: len(texts) - n_heldout], "heldout": texts[len(texts) - n_heldout:]}

    def base_model(self, name: str) -> Path:
        raise HarnessError(f"world 'hf_data' builds no models (asked for {name!r}); set [model] base to a local "
                           f"directory or a hub id such as 'EleutherAI/pythia-410m'.")

    def lm_eval_tasks(self) -> tuple[Path | None, list[str]]:
        return None, []  # no tasks of its own: name lm-eval tasks in [evaluation.lm_eval_tax] tasks

    # ---------------------------------------------------------------- helpers
    @cached_property
    def _tokenizer(self):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.options.tokenizer)
        except OSError as err:
            raise HarnessError(f"[{TABLE}] tokenizer = {self.options.tokenizer!r}: cannot load it ({err}).") from None
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"[{TABLE}] tokenizer = {self.options.tokenizer!r} has no chat template; set "
                              f"chat_template to a format string such as \"Human: {{prompt}}\\n\\nAssistant:\".")
        return tokenizer


def _hold_out(prompts: list[Prompt], fractions: dict[str, float | None], rng: random.Random) -> dict[str, list[Prompt]]:
    """Seeded disjoint shares of ``prompts`` (None or 0: none), each kept in first-seen order."""
    order = list(range(len(prompts)))
    rng.shuffle(order)
    out, start = {}, 0
    for name, fraction in fractions.items():
        n = max(1, round(fraction * len(prompts))) if fraction else 0
        picked = set(order[start : start + n])
        out[name], start = [p for i, p in enumerate(prompts) if i in picked], start + n
    return out
