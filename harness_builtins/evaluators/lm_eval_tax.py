"""Evaluator ``lm_eval_tax``: the alignment tax, measured with lm-eval like any paper would.

The same lm-eval tasks score π_θ, π_SFT and the base model; ``tax.<task>.delta`` is the policy's
score minus SFT's on the task's primary metric (read ``higher_is_better`` beside it: for a
perplexity a positive delta is a loss). By default the tasks are the world's own (local data,
offline); any lm-eval task name works where its data is reachable.
"""
from __future__ import annotations

import math
import os
import subprocess
from contextlib import contextmanager
from typing import Any, Sequence

from pydantic import Field

from harness.api import (Cell, EvalSamples, HarnessError, Options, Plot, ReportRun, StageContext, hookimpl,
                         load_causal_lm, variant_points)


class LmEvalTaxOptions(Options):
    tasks: tuple[str, ...] = Field((), description="lm-eval task names; empty = the world's own tasks.")
    include_path: str | None = Field(None, description="Extra directory of lm-eval task YAMLs (with `tasks`).")
    include_defaults: bool = Field(False, description="Index lm-eval's built-in tasks too (~13 s; needed for hub tasks).")
    limit: int | None = Field(None, ge=1, description="At most this many examples per task.")
    batch_size: int = Field(32, ge=1, description="lm-eval batch size.")
    baselines: tuple[str, ...] = Field(("sft", "base"), description="Models the policy is compared with.")


def primary_metric(task_results: dict[str, Any], higher: dict[str, bool]) -> str:
    """The task's headline metric: the first one lm-eval says which way is better."""
    for name in higher:
        if f"{name},none" in task_results:
            return name
    raise HarnessError(f"lm-eval returned no known metric among {sorted(task_results)}.")


def _git_hash_quietly() -> str | None:
    """lm-eval's ``get_git_commit_hash`` without git's stderr: outside a git checkout, git prints
    ``fatal: not a git repository`` into the run output, which reads like a failure and is not one."""
    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return done.stdout.strip() or None


@contextmanager
def quiet_git_hash():
    """Swap lm-eval's git-hash helper for :func:`_git_hash_quietly` while it evaluates (where it has one)."""
    import lm_eval.evaluator as evaluator

    if not hasattr(evaluator, "get_git_commit_hash"):
        yield
        return
    original = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = _git_hash_quietly
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original


class LmEvalTax:
    """Alignment tax: lm-eval score of the policy minus that of SFT (and of the base model)."""

    Options = LmEvalTaxOptions

    def __init__(self, options: LmEvalTaxOptions) -> None:
        self.options = options

    def task_manager(self, ctx: StageContext):
        from lm_eval.tasks import TaskManager

        if self.options.tasks:
            include, names = self.options.include_path, list(self.options.tasks)
        else:
            include, names = ctx.world.lm_eval_tasks()
            if not names:
                raise HarnessError(f"evaluator lm_eval_tax: world {ctx.world.name!r} has no lm-eval tasks of its own; "
                                   f"name some in [evaluation.lm_eval_tax] tasks = [\"hellaswag\", \"arc_easy\"] "
                                   f"(include_defaults = true for lm-eval's built-in tasks).")
        return TaskManager(include_path=str(include) if include else None,
                           include_defaults=self.options.include_defaults or not include), names

    def score(self, model_dir, manager, names: list[str], device: str = "cpu") -> dict[str, Any]:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        model, tokenizer = load_causal_lm(model_dir)
        lm = HFLM(pretrained=model.to(device), tokenizer=tokenizer, batch_size=self.options.batch_size, device=device)
        with quiet_git_hash():
            out = simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=self.options.limit,
                                  log_samples=False, verbosity="ERROR")
        return {"results": out["results"], "higher_is_better": out.get("higher_is_better", {})}

    def evaluate(self, ctx: StageContext, samples: EvalSamples) -> dict[str, Any]:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        manager, names = self.task_manager(ctx)
        models = {"policy": ctx.artifacts["policy"], **{b: ctx.artifacts[b] for b in self.options.baselines}}
        device = "cuda" if ctx.experiment.compute.uses_gpu else "cpu"  # where the run trained
        scored = {who: self.score(path, manager, names, device) for who, path in models.items()}
        tax, flat = {}, {}
        for task in names:
            higher = scored["policy"]["higher_is_better"].get(task, {})
            metric = primary_metric(scored["policy"]["results"][task], higher)
            values = {who: float(s["results"][task][f"{metric},none"]) for who, s in scored.items()}
            errors = [s["results"][task].get(f"{metric}_stderr,none") for who, s in scored.items() if who in ("policy", "sft")]
            tax[task] = {"metric": metric, "higher_is_better": bool(higher.get(metric, True)), **values,
                         "delta": values["policy"] - values["sft"]}
            if all(_num(e) for e in errors):  # the two scores' standard errors, taken as independent
                tax[task]["delta_stderr"] = math.sqrt(sum(float(e) ** 2 for e in errors))
            flat.update({f"eval/lm_eval/{task}/{metric}": values["policy"], f"tax/{task}": tax[task]["delta"]})
        ctx.log(flat, 0)
        return {"tax": tax}

    def headline(self, fragment: dict[str, Any]) -> list[Cell]:
        """Per task, the policy's lm-eval score minus SFT's (for a lower-is-better metric, positive is a loss)."""
        return [Cell(f"tax {task}", t.get("delta"), fmt="+.4f", note=f"{t.get('metric')}, policy − SFT",
                     better="higher" if t.get("higher_is_better", True) else "lower")
                for task, t in sorted(fragment["tax"].items())]


    @classmethod
    def report_plots(cls, runs: Sequence[ReportRun]) -> list[Plot]:
        """``tax_vs_reward.png``: per variant the tax of each task against the policy's held-out gold reward,
        each with its 95% interval (gold: over prompts and seeds; tax: over seeds, or lm-eval's standard error
        with one seed)."""
        tasks = sorted({t for r in runs if _num(r["results"].get("policy", {}).get("reward_gold"))
                        for t, v in r["results"].get("tax", {}).items() if _num(v.get("delta"))})
        return [Plot("tax_vs_reward.png", lambda plt: _draw_tax(plt, tasks, runs))] if tasks else []

    @classmethod
    def report_notes(cls, runs: Sequence[ReportRun]) -> list[str]:
        """What the tax is, when a run measured one."""
        if not any(r["results"].get("tax") for r in runs):
            return []
        return ["Tax: lm-eval score of the policy minus SFT's (for perplexity, positive is a loss)."]


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value


def _gold(run: ReportRun) -> Any:
    policy = run["results"].get("policy", {})
    return policy.get("per_prompt", {}).get("reward_gold") or policy.get("reward_gold")


def _draw_tax(plt, tasks: list[str], runs: Sequence[ReportRun]):
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    gold = {point.variant: point for point in variant_points(runs, _gold)}
    variants = list(gold)
    for ax, task in zip(axes[0], tasks):
        for tax in variant_points(runs, lambda r: r["results"].get("tax", {}).get(task, {}).get("delta")):
            if tax.variant not in gold:
                continue
            err = tax.err()
            se = tax.runs[0]["results"]["tax"][task].get("delta_stderr")
            if err is None and _num(se):  # one seed: lm-eval's standard error of the difference
                err = [[1.96 * se], [1.96 * se]]
            x = gold[tax.variant]
            ax.errorbar([x.mean], [tax.mean], xerr=x.err(), yerr=err, fmt="o", capsize=3,
                        color=f"C{variants.index(tax.variant) % 10}", label=tax.variant)
            ax.annotate(tax.variant, (x.mean, tax.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.0, color="k", lw=1, ls="--")
        ax.set_xlabel("gold reward of the policy (held-out, 95% CI)")
        ax.set_ylabel("tax: policy − SFT (95% CI)")
        ax.set_title(task)
    return fig


@hookimpl
def register_evaluators(register):
    register("lm_eval_tax", LmEvalTax)
