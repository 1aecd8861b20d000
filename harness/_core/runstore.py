"""The run store: every finished stage once, addressed by its hash; runs link to the stages they use.

``<output>/.stages/<stage>-<hash>/`` holds one stage with its manifest (the hash and what it covers:
config, seed, upstream stages and the code, see :mod:`harness._core.provenance`; package versions,
status, timings). ``<output>/<experiment>/<stage>`` is a relative symlink to the entry this run uses.

- A finished entry is never changed, so any number of runs (plain runs, the variants of a
  comparison, a β sweep after the default run) share it safely: three optimizers train one SFT
  model and one RM.
- A rerun whose config or code changed adds an entry and moves only its own link: the earlier
  entry stays for every other run that links to it, and their results stay comparable.
- An entry left ``running`` by a killed process resumes from its checkpoints; one whose manifest is
  unreadable is moved to ``.stages/.stale/`` (never deleted) and redone.
- A finished entry's manifest keeps the size and hash of every file it hands on (its models, feedback,
  metrics; see :mod:`harness._core.integrity`); before it is reused they are checked, and an entry with a
  missing, truncated or changed file is moved to ``.stages/.stale/`` and redone, with one note naming the file.
- A stage directory of the older layout (a real directory inside the run) joins the store.
- An entry is trained by one process at a time: :meth:`RunStore.begin` takes the entry's OS lock
  (``.stages/.locks/<stage>-<hash>.lock``, :mod:`harness._core.locks`) and waits while another
  process holds it; a reused entry lets it go at once, a trained one at :meth:`~RunStore.finish`
  or :meth:`~RunStore.fail`. So two experiments that need the same new stage train it once.
"""
from __future__ import annotations

import os
import platform
import resource
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness._core.errors import CorruptFileError
from harness._core.integrity import NOT_HANDED_ON, damaged, file_table
from harness._core.io import atomic_write_json, read_json
from harness._core.locks import lock_entry, unlock_entry
from harness._core.provenance import describe_change
from harness._core.secrets import scrub

MANIFEST = "manifest.json"
STAGES_DIR = ".stages"  # under the output root: every finished stage, addressed by its hash
TRACKED_PACKAGES = ("harness", "torch", "transformers", "trl", "accelerate", "deepspeed", "peft", "lm_eval", "pluggy")


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def changed_inputs(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """Why a stage's hash changed, one phrase per input (``config changed: optimizer.ppo.lr 3e-05 → 1e-05``)."""
    if not old or not new:
        return ["its config hash changed"]
    reasons = []
    if old.get("config") != new.get("config"):
        keys = changed_keys(old.get("config"), new.get("config"))
        reasons.append(f"config changed ({', '.join(keys[:6])}{', …' if len(keys) > 6 else ''})" if keys
                       else "config changed")
    if old.get("seed") != new.get("seed"):
        reasons.append(f"seed changed ({old.get('seed')} → {new.get('seed')})")
    reasons += [f"upstream stage {name!r} changed" for name in sorted(set(old.get("upstream", {})) | set(new.get("upstream", {})))
                if old.get("upstream", {}).get(name) != new.get("upstream", {}).get(name)]
    code = describe_change(old.get("code", {}), new.get("code", {}))
    if code:
        reasons.append(f"code changed ({'; '.join(code)})")
    return reasons or ["its config hash changed"]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config trees, each with its old → new value."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [f"{prefix or 'config'} {old!r} → {new!r}"] if old != new else []
    found = []
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in old:
            found.append(f"{name} added")
        elif key not in new:
            found.append(f"{name} removed")
        else:
            found += changed_keys(old[key], new[key], name)
    return found


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class StageRecord:
    """What :meth:`RunStore.begin` decided for a stage."""

    name: str
    dir: Path
    config_hash: str
    reused: bool
    resumed: bool
    manifest: dict[str, Any]

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"


class RunStore:
    """One experiment's directory, whose stages live in the shared stage store.

    Only rank 0 writes: in a multi-process launch the runner calls :meth:`begin`, :meth:`finish` and
    :meth:`fail` on rank 0 alone and shares the result.
    """

    def __init__(self, run_dir: Path, stages_root: Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stages_root = Path(stages_root) if stages_root is not None else self.run_dir.parent / STAGES_DIR
        self.notes: list[str] = []  # what begin() repaired or why it retrains; the runner prints them

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def entry(self, stage: str, config_hash: str) -> Path:
        """Where the stage with this hash lives in the store (the run's ``<stage>`` links to it)."""
        return self.stages_root / f"{stage}-{config_hash}"

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The manifest of the stage this run links to, None if absent; a :class:`CorruptFileError` if unreadable."""
        return _read_manifest(self.stage_dir(stage))

    def begin(self, stage: str, config_hash: str, seed: int, inputs: dict[str, Any] | None = None) -> StageRecord:
        """Reuse, resume or start ``stage`` in its store entry and link the run to it; marks it ``running`` unless reused.

        ``inputs`` is what ``config_hash`` was computed from (config, seed, upstream stages, code); the manifest
        keeps it, so a stage redone because something changed is redone with a note saying what.
        """
        entry = self.entry(stage, config_hash)
        self._lock(stage, config_hash)  # waits while another process trains this entry
        previous = self._previous(stage)
        self._adopt(stage, config_hash)
        try:
            old = _read_manifest(entry)
        except CorruptFileError as err:  # nothing in the entry can be trusted: keep it aside and redo it
            moved = self._move_aside(entry, f"{stage}-corrupt")
            self.notes.append(f"{str(err).split('; ')[0]}; moved the stage to {moved} and redoing it")
            old = None
        if old and old.get("status") == "finished":
            problem = damaged(entry, old.get("files") or {})  # a manifest from before checksums has none to check
            if problem is None:
                self._link(stage, entry)
                self.release(stage, config_hash)
                return StageRecord(stage, self.stage_dir(stage), config_hash, True, False, old)
            moved = self._move_aside(entry, f"{stage}-damaged")
            self.notes.append(f"{problem}; moved the stage to {moved} and redoing it")
            old = None
        self._link(stage, entry)
        resumed = old is not None
        if previous and previous.get("config_hash") != config_hash:
            self.notes.append(f"{'; '.join(changed_inputs(previous.get('inputs'), inputs))}: "
                              f"{'resuming' if resumed else 'retraining'} (the earlier stage stays in the store, "
                              f"{self.entry(stage, previous['config_hash'])}, for every run that uses it)")
        manifest = {
            "stage": stage,
            "config_hash": config_hash,
            "seed": seed,
            "status": "running",
            "started_at": time.time(),
            "attempts": (old or {}).get("attempts", 0) + 1 if resumed else 1,
            "packages": package_versions(),
            "python": platform.python_version(),
            "pid": os.getpid(),
            "inputs": inputs or {},
        }
        atomic_write_json(entry / MANIFEST, manifest)
        return StageRecord(stage, self.stage_dir(stage), config_hash, False, resumed, manifest)

    def finish(self, record: StageRecord, summary: dict[str, Any], wall_s: float) -> dict[str, Any]:
        """Mark the stage finished, with the size and hash of every file it hands on (checked before any reuse)."""
        manifest = dict(record.manifest)
        manifest.update(status="finished", finished_at=time.time(), wall_s=wall_s,
                        peak_rss_mib=peak_rss_mib(), summary=summary,
                        files=file_table(record.dir, leave_out=NOT_HANDED_ON))
        atomic_write_json(record.dir / MANIFEST, manifest)
        self.release(record.name, record.config_hash)
        return manifest

    def fail(self, record: StageRecord, error: BaseException) -> None:
        """Mark the stage failed or interrupted, and why; on a full disk, where even that cannot be written, it
        stays ``running`` (resumed from its checkpoints next time) and the error itself is what is reported."""
        manifest = dict(record.manifest)
        interrupted = isinstance(error, KeyboardInterrupt)
        manifest.update(status="interrupted" if interrupted else "failed", failed_at=time.time(),
                        error=scrub(f"{type(error).__name__}: {error}"))
        try:
            atomic_write_json(record.dir / MANIFEST, manifest)
        except OSError:  # a full disk: the stage stays "running", which a rerun resumes
            pass
        self.release(record.name, record.config_hash)

    def _lock(self, stage: str, config_hash: str) -> None:
        lock_entry(self.stages_root / ".locks" / f"{stage}-{config_hash}.lock")

    def release(self, stage: str, config_hash: str) -> None:
        """Let other processes at the entry (after :meth:`finish` or :meth:`fail`, or a :meth:`begin` that raised)."""
        unlock_entry(self.stages_root / ".locks" / f"{stage}-{config_hash}.lock")

    def _previous(self, stage: str) -> dict[str, Any] | None:
        """The manifest of the stage the run linked to before (to say why it changes), if readable."""
        try:
            return _read_manifest(self.stage_dir(stage))
        except CorruptFileError:
            return None

    def _adopt(self, stage: str, config_hash: str) -> None:
        """A stage directory of an older layout (a real directory in the run) joins the store, or is moved aside."""
        link = self.stage_dir(stage)
        if link.is_symlink() or not link.exists():
            return
        try:
            found = _read_manifest(link)
        except CorruptFileError:
            found = None
        target = self.entry(stage, found["config_hash"]) if found else None
        if target is not None and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(link), target)
        else:
            moved = self._move_aside(link, f"{stage}-{(found or {}).get('config_hash', 'corrupt')}")
            if found is None or found.get("config_hash") == config_hash:
                self.notes.append(f"{link} was not a readable stage; moved it to {moved}")

    def _link(self, stage: str, entry: Path) -> None:
        """Point the run's ``<stage>`` at ``entry`` (created if new), replacing the old link atomically."""
        entry.mkdir(parents=True, exist_ok=True)
        link = self.stage_dir(stage)
        target = os.path.relpath(entry, self.run_dir)
        if link.is_symlink() and os.readlink(link) == target:
            return
        tmp = self.run_dir / f".{stage}.link-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)

    def _move_aside(self, path: Path, label: str) -> Path:
        stale = self.stages_root / ".stale" / f"{label}-{time.time_ns()}"
        stale.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), stale)
        return stale


def _read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """A stage directory's manifest, None if absent; a :class:`CorruptFileError` if it does not parse."""
    path = stage_dir / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path, fix=f"move the stage directory {stage_dir} aside and rerun")
    if not isinstance(manifest.get("status"), str) or not isinstance(manifest.get("config_hash"), str):
        raise CorruptFileError(path, "not a stage manifest (no status or config_hash)",
                               f"move the stage directory {stage_dir} aside and rerun")
    return manifest
