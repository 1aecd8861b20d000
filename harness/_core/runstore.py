"""The run store: ``<output>/<experiment>/<stage>/`` with one manifest per stage.

A manifest records the stage's hash and what it covers (config, seed, upstream stages and the
code: see :mod:`harness._core.provenance`), package versions, status and timings. A finished stage whose hash matches is reused (three optimizers share one
SFT and one RM); a stage left ``running`` by a killed process resumes from its checkpoints;
a stage whose config changed is moved aside (never deleted) before it is redone.

Other runs under the same output root (and the other variants of a comparison) are *peers*: a
stage a peer already finished with the same hash is linked (a relative symlink), not redone.
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
from typing import Any, Sequence

from harness._core.errors import CorruptFileError
from harness._core.io import atomic_write_json, read_json
from harness._core.provenance import describe_change
from harness._core.secrets import scrub

MANIFEST = "manifest.json"
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
    """Why a stage's hash changed, one phrase per input (``code changed: plugins: source a → b``)."""
    if not old or not new:
        return ["its config hash changed"]
    reasons = [f"{key} changed" for key in ("config", "seed") if old.get(key) != new.get(key)]
    reasons += [f"upstream stage {name!r} changed" for name in sorted(set(old.get("upstream", {})) | set(new.get("upstream", {})))
                if old.get("upstream", {}).get(name) != new.get("upstream", {}).get(name)]
    code = describe_change(old.get("code", {}), new.get("code", {}))
    if code:
        reasons.append(f"code changed ({'; '.join(code)})")
    return reasons or ["its config hash changed"]


def finished_runs(output_root: Path, exclude: Path) -> tuple[Path, ...]:
    """Run directories (plain runs and comparison variants) under ``output_root``, except inside ``exclude``."""
    found = []
    for child in sorted(output_root.iterdir()) if output_root.is_dir() else []:
        if child.resolve() == exclude.resolve() or not child.is_dir():
            continue
        for candidate in (child, *sorted(c for c in child.iterdir() if c.is_dir())):
            if (candidate / "sft" / "manifest.json").is_file():
                found.append(candidate)
    return tuple(found)


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
    """One experiment's directory. Only rank 0 writes: in a multi-process launch the runner calls
    :meth:`begin`, :meth:`finish` and :meth:`fail` on rank 0 alone and shares the result."""

    def __init__(self, run_dir: Path, peers: Sequence[Path] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.peers = [Path(p) for p in peers if Path(p).resolve() != self.run_dir.resolve()]
        self.notes: list[str] = []  # what begin() repaired (a corrupt manifest moved aside); the runner prints them

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest, None if absent; a :class:`CorruptFileError` if it does not parse."""
        path = self.stage_dir(stage) / MANIFEST
        if not path.exists():
            return None
        manifest = read_json(path, fix=f"move the stage directory {self.stage_dir(stage)} aside and rerun")
        if not isinstance(manifest.get("status"), str) or not isinstance(manifest.get("config_hash"), str):
            raise CorruptFileError(path, "not a stage manifest (no status or config_hash)",
                                   f"move the stage directory {self.stage_dir(stage)} aside and rerun")
        return manifest

    def begin(self, stage: str, config_hash: str, seed: int, inputs: dict[str, Any] | None = None) -> StageRecord:
        """Reuse, resume or (re)start ``stage``; marks it ``running`` unless reused.

        ``inputs`` is what ``config_hash`` was computed from (config, seed, upstream stages, code); the manifest
        keeps it, so a stage redone because something changed is redone with a note saying what.
        """
        stage_dir = self.stage_dir(stage)
        if stage_dir.is_symlink() and not stage_dir.exists():
            stage_dir.unlink()  # a link to a peer's stage that has since been moved aside: nothing of ours is lost
        try:
            old = self.manifest(stage)
        except CorruptFileError as err:  # nothing in the stage can be trusted: keep it aside and redo it
            moved = self._move_aside(stage, "corrupt")
            self.notes.append(f"{str(err).split('; ')[0]}; moved the stage to {moved} and redoing it")
            old = None
        if old and old.get("config_hash") == config_hash and old.get("status") == "finished":
            return StageRecord(stage, stage_dir, config_hash, True, False, old)
        shared = self._finished_peer(stage, config_hash)
        if shared is not None:
            if old or stage_dir.is_symlink():
                self._move_aside(stage, (old or {}).get("config_hash", "unknown"))
            stage_dir.symlink_to(os.path.relpath(shared, self.run_dir))
            return StageRecord(stage, stage_dir, config_hash, True, False, read_json(shared / MANIFEST))
        resumed = bool(old and old.get("config_hash") == config_hash)
        if old and not resumed:
            moved = self._move_aside(stage, old.get("config_hash", "unknown"))
            self.notes.append(f"{'; '.join(changed_inputs(old.get('inputs'), inputs))}: retraining "
                              f"(the old stage is in {moved})")
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
        stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stage_dir / MANIFEST, manifest)
        return StageRecord(stage, stage_dir, config_hash, False, resumed, manifest)

    def finish(self, record: StageRecord, summary: dict[str, Any], wall_s: float) -> dict[str, Any]:
        manifest = dict(record.manifest)
        manifest.update(status="finished", finished_at=time.time(), wall_s=wall_s,
                        peak_rss_mib=peak_rss_mib(), summary=summary)
        atomic_write_json(record.dir / MANIFEST, manifest)
        return manifest

    def fail(self, record: StageRecord, error: BaseException) -> None:
        manifest = dict(record.manifest)
        interrupted = isinstance(error, KeyboardInterrupt)
        manifest.update(status="interrupted" if interrupted else "failed", failed_at=time.time(),
                        error=scrub(f"{type(error).__name__}: {error}"))
        atomic_write_json(record.dir / MANIFEST, manifest)

    def _finished_peer(self, stage: str, config_hash: str) -> Path | None:
        """The real directory of ``stage`` finished with ``config_hash`` in a peer run, if any."""
        for peer in self.peers:
            candidate = (peer / stage).resolve()
            manifest = candidate / MANIFEST
            if manifest.is_file():
                try:
                    found = read_json(manifest)
                except CorruptFileError:  # a peer's broken stage is the peer's problem: do not share it
                    continue
                if found.get("config_hash") == config_hash and found.get("status") == "finished":
                    return candidate
        return None

    def _move_aside(self, stage: str, old_hash: str) -> Path:
        stale = self.run_dir / ".stale" / f"{stage}-{old_hash}-{time.time_ns()}"
        stale.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.stage_dir(stage)), stale)
        return stale
