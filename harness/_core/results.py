"""``results.json``: current for the run's config, or visibly not.

A rerun with a changed config rewrites ``resolved_config.json`` at once and redoes stages one
by one; if it then fails, the old numbers must not pass for the new config's. So:

- when a run starts, an existing ``results.json`` is moved to ``.stale/`` and replaced by a
  marker ``{"status": "running", "config_hash": …}``;
- a run that fails or is interrupted leaves the marker with ``status`` ``failed`` or
  ``interrupted`` and the (scrubbed) error;
- only a complete run writes the real results, with ``status = "complete"``, its config hash
  and the config hash of every stage it used.

:func:`check_current` is what ``harness compare`` asks before it trusts a run: complete,
the same config hash as ``resolved_config.json``, and every stage manifest finished with the
hash the results were computed from, its files as they were written.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from harness._core.errors import CorruptFileError, HarnessError
from harness._core.integrity import damaged
from harness._core.io import atomic_write_json, read_json
from harness._core.secrets import scrub

RESULTS = "results.json"
CONFIG = "resolved_config.json"
COMPLETE = "complete"


def config_hash(config: dict[str, Any]) -> str:
    """The hash :meth:`Experiment.hash_of` gives over every table of a resolved config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def mark_started(run_dir: Path, experiment: str, chash: str) -> None:
    """Move earlier results aside and leave a ``running`` marker in their place."""
    path = Path(run_dir) / RESULTS
    if path.exists():
        stale = Path(run_dir) / ".stale" / f"results-{time.time_ns()}.json"
        stale.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, stale)
    atomic_write_json(path, {"experiment": experiment, "status": "running", "config_hash": chash,
                             "started_at": time.time()})


def mark_ended(run_dir: Path, experiment: str, chash: str, error: BaseException) -> dict[str, Any]:
    """The marker of a run that did not complete: ``failed`` or ``interrupted``, and why (returned too).

    On a full disk the atomic write (a new temp file) may find no room; the marker is then rewritten
    in place over the ``running`` one, whose block is already allocated, so the run still reads ``failed``.
    """
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    path = Path(run_dir) / RESULTS
    marker = {"experiment": experiment, "status": status, "config_hash": chash, "ended_at": time.time(),
              "error": scrub(f"{type(error).__name__}: {error}")[:1000]}
    try:
        atomic_write_json(path, marker)
    except OSError:
        _rewrite_in_place(path, json.dumps(marker, indent=2) + "\n")
    return marker


def _rewrite_in_place(path: Path, text: str) -> None:
    """Overwrite an existing small file without allocating a new one (the last resort on a full disk)."""
    try:
        with open(path, "r+b") as fh:
            fh.write(text.encode("utf-8"))
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        pass  # nothing can be written there: the error the run reports says why


def check_current(run_dir: Path, results: dict[str, Any]) -> str | None:
    """Why ``results`` cannot be shown as this run's current results, or None if they can."""
    run_dir = Path(run_dir)
    status = results.get("status", COMPLETE)  # results written before the marker existed carry no status
    if status != COMPLETE:
        error = f" ({results['error']})" if results.get("error") else ""
        return f"its last run is {status}{error}, so it has no current results; rerun it to finish"
    config_path = run_dir / CONFIG
    if config_path.exists():
        current = config_hash(read_json(config_path, fix="rerun the experiment to rewrite it"))
        if results.get("config_hash") != current:
            return (f"results.json is for config {results.get('config_hash')} but {CONFIG} is config {current} "
                    f"(a rerun with a changed config did not finish); rerun it")
    for stage, expected in (results.get("stage_hashes") or {}).items():
        manifest_path = run_dir / stage / "manifest.json"
        if not manifest_path.is_file():
            return f"stage {stage!r} has no manifest (its results belong to a stage that is gone); rerun it"
        manifest = read_json(manifest_path, fix=f"move {run_dir / stage} aside and rerun")
        if manifest.get("status") != "finished" or manifest.get("config_hash") != expected:
            return (f"stage {stage!r} is now {manifest.get('status')} with config {manifest.get('config_hash')}, "
                    f"not the finished stage {expected} its results came from; rerun it")
        problem = damaged(manifest_path.parent, manifest.get("files") or {})
        if problem:
            return f"stage {stage!r}: {problem}; rerun it (the stage is redone)"
    return None


def load_current(run_dir: Path) -> dict[str, Any]:
    """The results of a run directory, or one error naming it and why its results are not current."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS
    if not path.is_file():
        hint = " It holds a comparison: pass its variant directories (seed-<s>/<variant>, or seed-<s>, for " \
               "several seeds), or its report is in report/." \
            if (run_dir / "comparison.json").is_file() else " Did the run finish?"
        raise HarnessError(f"{run_dir}: no results.json.{hint}")
    try:
        results = read_json(path, fix="rerun the experiment to rebuild it")
    except CorruptFileError as err:
        raise StaleResults(str(err)) from None
    problem = check_current(run_dir, results)
    if problem:
        raise StaleResults(f"{run_dir}: not comparable: {problem}.")
    return results


class StaleResults(HarnessError):
    """A run whose results.json is corrupt or not the current results of its config."""

    exit_code = 2
