"""The stage driver: how a run's stages are built, hashed, reused or run, and wired one to the next.

Everything that takes part in training a stage is here or imported from here, so this module is the root
of every stage's code identity (:data:`harness._core.provenance.CORE_ROOT`): an edit to it, or to a module
it imports, reruns every stage. What happens around the stages — the run directory, ``results.json``, the
loggers, the report, ``[compare]`` variants and seeds — is :mod:`harness._core.pipeline` and the modules
above it, which import this one and are imported by no stage, so editing them reruns nothing.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from harness._core import distributed
from harness._core.building import build_component
from harness._core.config import SLOTS, Experiment
from harness._core.contracts import Components, SamplingOptimizer, StageContext
from harness._core.disk import disk_error, weights_bytes
from harness._core.divergence import check_saved_weights
from harness._core.feedback import feedback_stage
from harness._core.io import atomic_write_json
from harness._core.models import resolve_base
from harness._core.plugins import PluginHost
from harness._core.provenance import code_identity
from harness._core.runstore import RunStore, StageRecord
from harness._core.secrets import scrub_data

# stage -> (config tables it depends on, upstream stages)
STAGE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sft": (("model", "world", "sft"), ()),
    "feedback": (("feedback",), ("sft",)),
    "reward_model": (("reward_model",), ("sft", "feedback")),
    "policy": (("reward", "optimizer"), ("sft", "reward_model")),
    "evaluation": (("evaluation",), ("policy",)),
}


@dataclass
class Run:
    """State of one run in progress: where it writes, what finished, what it measured."""

    experiment: Experiment
    host: PluginHost
    store: RunStore
    show_progress: bool = True
    world: Any = None
    hashes: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: Components = field(default_factory=Components)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> its code identity, read once per run
    echo: Callable[[str], None] = print

    # ------------------------------------------------------------------ helpers
    def instantiate(self, slot: str):
        choice = self.experiment.choice(slot)
        component = self.host.registry.get(SLOTS[slot][0], choice.name)
        if slot == "world":
            return component.factory(choice.options, seed=self.experiment.seed)
        return component.factory(choice.options)

    def stage_inputs(self, stage: str) -> dict[str, Any]:
        """What a stage's hash covers: its config tables, the seed, its upstream stages and its code."""
        tables, upstream = STAGE_INPUTS[stage]
        resolved = self.experiment.to_dict()
        return {"config": {table: resolved[table] for table in tables}, "seed": self.experiment.seed,
                "upstream": {u: self.hashes[u] for u in upstream}, "code": self.code(stage)}

    def code(self, stage: str) -> dict[str, Any]:
        """The stage's code identity (:func:`harness._core.provenance.code_identity`), read once per run."""
        if stage not in self.codes:
            self.codes[stage] = code_identity(self.factories(stage))
        return self.codes[stage]

    def factories(self, stage: str) -> list[Any]:
        """The registered factories a stage runs (its slots' components; the evaluators for evaluation)."""
        registry = self.host.registry
        if stage == "evaluation":
            return [registry.get("evaluator", name).factory for name in self.experiment.evaluators]
        slots = [t for t in STAGE_INPUTS[stage][0] if t in SLOTS]
        return [registry.get(SLOTS[s][0], self.experiment.choice(s).name).factory for s in slots]

    def context(self, record: StageRecord) -> StageContext:
        return StageContext(
            experiment=self.experiment, stage=record.name, stage_dir=record.dir, world=self.world,
            log=self._logger(record), artifacts=dict(self.artifacts),
            checkpoint_dir=record.checkpoint_dir, progress=self._progress if self.show_progress else None,
            components=self.components, hook=self.host.hook, summaries=dict(self.summaries), build=self.build,
        )

    def build(self, family: str, name: str, options: dict[str, Any] | None = None):
        """What ``ctx.build`` does: another registered component, built by name from options."""
        return build_component(self.host.registry, family, name, options, source=self.experiment.source,
                               seed=self.experiment.seed)

    def _logger(self, record: StageRecord):
        def log(metrics: dict[str, float], step: int) -> None:
            if not distributed.is_main_process():  # every process computes the same global metrics; one writes
                return
            clean = {k: float(v) for k, v in metrics.items()}
            self.host.hook.metrics_logged(experiment=self.experiment, stage=record.name,
                                          stage_dir=record.dir, metrics=clean, step=step)
        return log

    def model_bytes(self) -> int | None:
        """The policy's weight bytes (π_SFT's, else the base model's), for the space a stage needs."""
        return weights_bytes(self.artifacts.get("sft", "")) or weights_bytes(self.artifacts.get("base", ""))

    @staticmethod
    def _progress(total: int, desc: str):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    # ------------------------------------------------------------------ stages
    def stage(self, name: str, work: Callable[[StageContext], dict[str, Any]], *, collective: bool = True) -> dict[str, Any]:
        """Run ``work`` as stage ``name`` unless a finished stage with the same config hash is reusable.

        Launched as several processes, every process runs ``work``; rank 0 alone decides reuse, writes
        the manifest and calls the lifecycle hooks, and the others take its decision and its summary.
        A stage that is not ``collective`` runs on rank 0 alone (evaluation).
        """
        sync = distributed.barrier if collective else (lambda: None)
        share = distributed.broadcast_object if collective else (lambda obj: obj)
        inputs = self.stage_inputs(name)
        self.hashes[name] = _short_hash(json.dumps(inputs, sort_keys=True))
        main = distributed.is_main_process()
        sync()  # the previous stage is finished (and written) everywhere
        kept = scrub_data(inputs)  # what the manifest keeps (and later runs compare against): no pasted key
        try:
            record = share(self.store.begin(name, self.hashes[name], self.experiment.seed, kept) if main else None)
        except BaseException:
            if main:
                self.store.release(name, self.hashes[name])
            raise
        for note in self.store.notes:
            self.echo(f"! {name}: {note}")
        self.store.notes.clear()
        if record.reused:
            self.echo(f"· {name}: reusing finished stage ({record.dir})")
            summary = record.manifest["summary"]
            self.timings[name] = {"wall_s": record.manifest.get("wall_s"), "reused": True,
                                  "peak_rss_mib": record.manifest.get("peak_rss_mib")}
        else:
            self.echo(f"· {name}: {'resuming' if record.resumed else 'running'} → {record.dir}")
            start = time.perf_counter()
            try:
                summary = work(self.context(record))
                sync()
                check_saved_weights(record.dir, name, self.experiment)  # a diverged model is never finished
            except BaseException as err:
                failure = disk_error(err, record.dir.resolve(), self.model_bytes(), f"the {name} stage wrote there")
                if main:
                    self.store.fail(record, failure or err)
                if failure is None:
                    raise
                raise failure from None
            manifest = share(self.store.finish(record, summary, time.perf_counter() - start) if main else None)
            summary = manifest["summary"]
            self.timings[name] = {"wall_s": manifest["wall_s"], "reused": False, "peak_rss_mib": manifest["peak_rss_mib"]}
        self.summaries[name] = summary
        if main:
            self.host.hook.stage_finished(experiment=self.experiment, stage=name, stage_dir=record.dir, summary=summary)
        return summary


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_stages(run: Run, main: bool) -> None:
    """Every stage in order, each reading what the earlier ones left in ``run.artifacts``; evaluation on rank 0 only."""
    experiment, host = run.experiment, run.host
    random.seed(experiment.seed)
    for stage in STAGE_INPUTS:  # the code this process runs, read as it starts; an edit counts from the next run
        run.code(stage)
    with distributed.main_process_first():  # a world may build and cache its models on first use
        run.world = run.instantiate("world")
        run.artifacts["base"] = resolve_base(host.hook, experiment.model.base, experiment)
    run.components.feedback = run.instantiate("feedback")
    run.stage("sft", run.instantiate("sft").run)
    run.artifacts["sft"] = run.store.stage_dir("sft") / "model"
    run.stage("feedback", feedback_stage)
    run.artifacts["feedback"] = run.store.stage_dir("feedback")
    run.stage("reward_model", run.instantiate("reward_model").run)
    run.artifacts["reward_model"] = run.store.stage_dir("reward_model")
    reward = run.instantiate("reward")
    run.components.reward = reward
    reward.prepare(_prep_context(run))
    optimizer = run.instantiate("optimizer")
    run.components.optimizer = optimizer
    run.stage("policy", lambda ctx: _train_policy(run, ctx, optimizer, reward))
    run.artifacts["policy"] = run.store.stage_dir("policy") / "model"
    if main:  # evaluation is rank 0's; the other processes wait for it at the run's end
        run.stage("evaluation", lambda ctx: _evaluate(run, ctx), collective=False)


def _train_policy(run: Run, ctx: StageContext, optimizer, reward) -> dict[str, Any]:
    """The optimizer's training, with mid-training evaluation every ``[evaluation] every`` steps."""
    from harness._core.evaluation import build_evaluators
    from harness._core.periodic import PeriodicEvaluation

    periodic = None
    if run.experiment.evaluation.every:
        periodic = PeriodicEvaluation(ctx, build_evaluators(run.host.registry, run.experiment, periodic_only=True))
        ctx.evaluate, ctx.evaluate_every = periodic, run.experiment.evaluation.every
    summary = optimizer.train(ctx, reward if optimizer.mode == "online" else None)
    if periodic is not None and periodic.history:
        summary = {**summary, "periodic": periodic.history}
    return summary


def _prep_context(run: Run) -> StageContext:
    """A context for preparing components outside a stage (reads artifacts, logs nowhere)."""
    return StageContext(experiment=run.experiment, stage="prepare", stage_dir=run.store.run_dir, world=run.world,
                        log=lambda m, s: None, artifacts=dict(run.artifacts),
                        components=run.components, hook=run.host.hook, build=run.build)


def _evaluate(run: Run, ctx: StageContext) -> dict[str, Any]:
    from harness._core.evaluation import build_evaluators, draw_eval_samples, run_evaluators

    device = "cuda" if run.experiment.compute.uses_gpu else "cpu"
    optimizer = run.components.optimizer  # its policy may be a sampling procedure (best-of-n)
    samples = draw_eval_samples(run.world, run.artifacts["policy"], run.artifacts["sft"],
                                run.experiment.evaluation, run.experiment.seed, device,
                                sampler=optimizer.evaluation_policy(ctx) if isinstance(optimizer, SamplingOptimizer) else None)
    atomic_write_json(ctx.stage_dir / "samples.json", [
        {"prompt": p.text, "kind": p.kind, "policy": a, "sft": b, "kl": k}
        for p, a, b, k in zip(samples.prompts, samples.policy, samples.sft, samples.kl)
    ])
    return run_evaluators(build_evaluators(run.host.registry, run.experiment), ctx, samples, describe=True)
