"""One run around its stages: the run directory, the results marker, the loggers, ``results.json`` and the report.

The stages themselves — their order, hashes, reuse and the wiring between them — are
:mod:`harness._core.stage_driver`'s; this module only prepares a run for them and writes what they
produced. It is no part of any stage's code identity, so an edit here (or to the report, the comparison
and the seed statistics above it) reruns nothing.
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any, Callable

from harness._core import distributed
from harness._core import results as results_file
from harness._core.config import Experiment
from harness._core.disk import disk_error
from harness._core.errors import UsageError
from harness._core.io import atomic_write_json, atomic_write_text
from harness._core.plugins import PluginHost
from harness._core.run_loggers import attached as attached_loggers
from harness._core.runstore import RunStore, peak_rss_mib
from harness._core.secrets import scrub, scrub_data
from harness._core.stage_driver import Run, run_stages
from harness._core.tables import deep_merge


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
    start = time.perf_counter()
    run_stages(run, main)
    results: dict[str, Any] = {}
    if main:  # results are rank 0's; the other processes wait for it below
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
