"""Evaluation in the middle of training: the same evaluators, on the in-memory policy, every N steps.

A final number says where a run ended; the curve says whether it passed a better point on the
way (the gold reward often peaks before the end when the proxy is over-optimized). Every
``[evaluation] every`` optimizer steps the optimizer calls ``ctx.periodic_evaluation(step, model)``;
this module samples the policy on the first ``periodic_prompts`` held-out prompts, compares it with
π_SFT samples drawn once, runs every configured evaluator that declares ``periodic = True`` and
logs their numbers as ``eval/<path>``. The history lands in the policy summary (``periodic``); it also
keeps the lists of numbers an evaluator returns (per-prompt values, e.g. ``policy/per_prompt/kl``), which
are never logged: a statistic over prompts (a bootstrap) needs them, a metrics logger does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from harness._core.contracts import StageContext
from harness._core.evaluation import run_evaluators, sample_texts, samples_from_models
from harness._core.models import load_causal_lm


def flatten_numbers(fragment: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"win_rate_vs_sft": {"rate": 0.6, "judge": "gold"}} → {"win_rate_vs_sft/rate": 0.6} (numbers only)."""
    out: dict[str, float] = {}
    for key, value in fragment.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def flatten_number_lists(fragment: dict[str, Any], prefix: str = "") -> dict[str, list[float]]:
    """{"policy": {"per_prompt": {"kl": [0.1, 0.2]}}} → {"policy/per_prompt/kl": [0.1, 0.2]} (lists of numbers only)."""
    out: dict[str, list[float]] = {}
    for key, value in fragment.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_number_lists(value, f"{name}/"))
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in value):
            out[name] = [float(v) for v in value]
    return out


@dataclass
class PeriodicEvaluation:
    """Callable as ``evaluate(model, step)``; built by the runner for the policy stage."""

    ctx: StageContext
    evaluators: dict[str, Any]  # name -> evaluator instance (only the periodic ones)
    history: list[dict[str, float]] = field(default_factory=list)
    _reference: Any = None
    _tokenizer: Any = None
    _prompts: list = field(default_factory=list)
    _sft_texts: list[str] = field(default_factory=list)

    def _prepare(self) -> None:
        """π_SFT and its samples, once: every periodic evaluation compares against the same ones."""
        options = self.ctx.experiment.evaluation
        self._reference, self._tokenizer = load_causal_lm(self.ctx.artifacts["sft"])
        self._prompts = self.ctx.world.prompts("eval")[: options.periodic_prompts]
        self._sft_texts = sample_texts(self._reference, self._tokenizer, self.ctx.world, self._prompts, options,
                                       self.ctx.seed)

    def __call__(self, model: Any, step: int) -> dict[str, float]:
        if self._reference is None:
            self._prepare()
        options = self.ctx.experiment.evaluation
        self._reference.to(model.device)
        samples = samples_from_models(self.ctx.world, model, self._reference, self._tokenizer, self._prompts,
                                      self._sft_texts, options, self.ctx.seed)
        quiet = replace(self.ctx, log=lambda metrics, s: None)  # evaluators' own end-of-run logs stay out
        fragment = run_evaluators(self.evaluators, quiet, samples)
        numbers = flatten_numbers(fragment)
        metrics = {f"eval/{k}": v for k, v in numbers.items()}
        self.ctx.log(metrics, step)
        self.history.append({"step": step, **numbers, **flatten_number_lists(fragment)})
        return metrics
