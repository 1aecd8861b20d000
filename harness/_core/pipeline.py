"""One run of the InstructGPT flow over plugins: SFT → feedback → reward model → policy optimization → evaluation.

The runner owns the order, the run store (reuse/resume per stage), the metrics stream and
results.json; every piece of work is a component looked up by name in the registry.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from harness._core import distributed
from harness._core import results as results_file
from harness._core.building import build_component
from harness._core.config import SLOTS, Experiment
from harness._core.contracts import Components, SamplingOptimizer, StageContext
from harness._core.disk import disk_error, weights_bytes
from harness._core.divergence import check_saved_weights
from harness._core.errors import HarnessError, UsageError
from harness._core.feedback import feedback_stage
from harness._core.io import atomic_write_json, atomic_write_text
from harness._core.models import resolve_base
from harness._core.plugins import PluginHost
from harness._core.provenance import code_identity
from harness._core.run_loggers import attached as attached_loggers
from harness._core.runstore import RunStore, StageRecord, peak_rss_mib
from harness._core.secrets import scrub, scrub_data
from harness._core.tables import deep_merge

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
                "upstream": {u: self.hashes[u] for u in upstream}, "code": code_identity(self.factories(stage))}

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


def run_single(experiment: Experiment, host: PluginHost, run_dir: Path, *, show_progress: bool = True,
               echo: Callable[[str], None] = print, stages_root: Path | None = None,
               report: Callable[..., None] | None = None) -> dict[str, Any]:
    """Run every stage of one experiment (no ``[compare]`` variants) in ``run_dir``; return (and write) its results.

    ``stages_root`` is the stage store shared by every run under the output root (default: beside ``run_dir``):
    a stage whose hash is already finished there is linked, not redone. ``report(experiment, host, run_dir, echo)``
    is called once the results are written, before ``run_finished`` (:func:`harness._core.run_report.write_run_report`).
    """
    distributed.init_process_group()  # several launched processes: rank 0 writes, the others follow
    main = distributed.is_main_process()
    chash = experiment.hash_of(*experiment.to_dict())
    if main:
        ensure_writable(run_dir)
    with attached_loggers(experiment, host, main):  # [loggers], registered as plugins for this run only
        try:
            if main:
                results_file.mark_started(run_dir, experiment.name, chash)
            return _run_stages(experiment, host, run_dir, stages_root, main, show_progress, echo, report)
        except BaseException as err:
            failure = disk_error(err, run_dir)  # a stage's own is already one line (HarnessError)
            if main:
                marker = results_file.mark_ended(run_dir, experiment.name, chash, failure or err)
                _tell_failure(experiment, host, run_dir, marker, echo)
            if failure is None:
                raise
            raise failure from None


def _tell_failure(experiment: Experiment, host: PluginHost, run_dir: Path, marker: dict[str, Any],
                  echo: Callable[[str], None]) -> None:
    """``run_failed`` for the loggers (a tracker marks its run failed); a hook that fails too must not hide the run's error."""
    try:
        host.hook.run_failed(experiment=experiment, run_dir=run_dir, results=marker)
    except Exception as err:  # noqa: BLE001 - the run's own error is the one to raise
        echo(f"! a plugin's run_failed hook failed as well: {type(err).__name__}: {scrub(str(err))}")


def _run_stages(experiment: Experiment, host: PluginHost, run_dir: Path, stages_root: Path | None, main: bool,
                show_progress: bool, echo: Callable[[str], None], report: Callable[..., None] | None) -> dict[str, Any]:
    run = Run(experiment, host, RunStore(run_dir, stages_root), show_progress=show_progress and main,
              echo=echo if main else _silent)
    if main:
        _write_config(run)
        host.hook.run_started(experiment=experiment, run_dir=run_dir)
    random.seed(experiment.seed)
    start = time.perf_counter()
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
    results: dict[str, Any] = {}
    if main:  # evaluation and results are rank 0's; the other processes wait for it below
        run.stage("evaluation", lambda ctx: _evaluate(run, ctx), collective=False)
        results = _results(run, time.perf_counter() - start)
        atomic_write_json(run_dir / "results.json", results)
        if report is not None:
            report(experiment, host, run_dir, run.echo)
        _announce_finished(host, experiment, run_dir, results, run.echo)
    distributed.barrier()  # every process of a launch ends together
    return results


def _announce_finished(host, experiment, run_dir: Path, results: dict[str, Any], echo) -> None:
    """``run_finished`` for every plugin (loggers, trackers): the results are complete and written by now, so a
    plugin that fails here (a tracker's upload, a full disk of its own) costs one line, not the finished run."""
    try:
        host.hook.run_finished(experiment=experiment, run_dir=run_dir, results=results)
    except Exception as err:  # noqa: BLE001 - any plugin's failure; the run itself is done
        echo(f"! a plugin failed after the run finished ({type(err).__name__}: {err}); "
             f"the results are complete in {run_dir / 'results.json'}")


def ensure_writable(run_dir: Path) -> None:
    """One clear error, before any work, when the run directory cannot be written (read-only disk or copy)."""
    probe = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        for sub in [p for p in run_dir.iterdir() if p.is_dir() and not p.is_symlink()]:
            if not os.access(sub, os.W_OK):
                raise PermissionError(13, "Permission denied", str(sub))
    except OSError as err:  # EACCES/EPERM, or EROFS: a read-only file system is no PermissionError
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        fix = "choose another --output" if err.errno == errno.EROFS else \
            f"make it writable (chmod -R u+w {run_dir}) or choose another --output"
        raise UsageError(f"{err.filename or run_dir}: not writable ({err.strerror}); a run writes its stages and "
                         f"results there: {fix}.") from None
    finally:
        if probe is not None:
            probe.unlink(missing_ok=True)


def _silent(text: str) -> None:
    """Where the output of processes other than rank 0 goes."""


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


def _results(run: Run, wall_s: float) -> dict[str, Any]:
    evaluation = run.summaries["evaluation"]
    results: dict[str, Any] = {
        "experiment": run.experiment.name,
        "variant": run.experiment.variant,
        "status": results_file.COMPLETE,
        "config_hash": run.experiment.hash_of(*run.experiment.to_dict()),
        "stage_hashes": dict(run.hashes),
        "seed": run.experiment.seed,
        "components": {slot: choice.name for slot, choice in run.experiment.slots.items()},
        "sft": run.summaries["sft"],
        "feedback": run.summaries["feedback"],
        "rm": run.summaries["reward_model"],
        "policy": {"optimizer": run.experiment.choice("optimizer").name, "train": run.summaries["policy"]},
        "stages": run.timings,
        "wall_s": wall_s,  # this invocation's time (a reused stage costs ~0 s here)
        "compute_s": sum(t.get("wall_s") or 0.0 for t in run.timings.values()),  # every stage's own time, reused or not
        "peak_rss_mib": peak_rss_mib(),
    }
    deep_merge(results, evaluation)
    return results


def _write_config(run: Run) -> None:
    """The resolved config (every default filled) and the experiment's tables as run."""
    run.store.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.store.run_dir / "resolved_config.json", scrub_data(run.experiment.to_dict()))
    atomic_write_text(run.store.run_dir / "experiment.toml", resolved_toml(run.experiment))


def resolved_toml(experiment: Experiment) -> str:
    """The experiment's tables as run, in one self-contained TOML file: ``extends`` merged in (so the copy
    in the run dir points at no file outside it), ``--set`` and the variant applied, secrets masked.
    ``harness run`` takes it as is; ``resolved_config.json`` beside it has every default filled in."""
    import tomli_w

    data = scrub_data(_plain(experiment.raw))
    data.setdefault("experiment", {}).pop("extends", None)
    header = f"# {experiment.source}, as run by harness (extends merged in, overrides applied).\n"
    return header + tomli_w.dumps(data)


def _plain(value: Any) -> Any:
    """Mappings (read-only proxies included) as plain dicts, for the TOML writer."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
