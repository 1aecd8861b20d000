"""Sizes and hashes of the files a stage or a checkpoint hands on: a damaged file is found, never trusted.

A finished stage is reused by every later run, and a checkpoint is resumed from: a file truncated
by a full disk, cut short by a copy or changed by hand would otherwise be read as if it were the
one written (an RM trained on a tenth of its feedback, a policy resumed with another RNG state).
So whatever hands files on records, when it is written, the size and SHA-256 of each of them, and
whatever takes them checks them first:

- a stage's manifest keeps :func:`file_table` of its directory (``checkpoints/``, checked at
  resume, and a logger's ``tensorboard/``, closed after the stage is marked finished, left out);
  :class:`harness._core.runstore.RunStore` checks it with :func:`damaged` before it reuses the stage,
  and ``harness compare`` before it trusts a run's results (:func:`harness._core.results.check_current`);
- a checkpoint is written in :func:`checkpoint_directory`, which adds :data:`CHECKSUMS` once every
  process has written its part and before the directory is swapped into place (so atomically with
  it); :func:`latest_intact` picks the newest checkpoint that still matches and moves each damaged
  one aside with one line saying so.

The size is compared first (a truncation costs one ``stat``); the hash reads the file in 1 MiB
chunks. A file hashed once in this process and unchanged since (same inode, size and mtime) is not
read again, so the variants of a comparison reusing one SFT model pay for it once.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness._core.distributed import barrier, is_main_process, shared_directory
from harness._core.errors import CorruptFileError
from harness._core.io import atomic_write_json, read_json

CHECKSUMS = "checksums.json"  # inside a checkpoint directory: {"files": {relative path: {"size", "sha256"}}}
NOT_HANDED_ON = ("checkpoints", "tensorboard", "manifest.json")  # top-level names a stage's table leaves out
_CHUNK = 1 << 20
_seen: dict[tuple[int, int, int, int], str] = {}  # (device, inode, size, mtime_ns) → sha256, this process only


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), read in chunks; remembered while the file's inode, size and mtime stay the same
    (keyed by inode, so a stage reached through several runs' links is read once)."""
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _seen:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _seen[key] = digest.hexdigest()
    return _seen[key]


def file_table(root: Path, leave_out: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "sha256"}}`` of every file under ``root``, except the top-level names in ``leave_out``
    and temporary siblings (names starting with ``.``, which an atomic write renames away)."""
    root = Path(root)
    table = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in leave_out]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or (here == root and name in leave_out):
                continue
            path = here / name
            table[path.relative_to(root).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return table


def damaged(root: Path, table: dict[str, dict[str, Any]]) -> str | None:
    """The first file of ``table`` that is missing or differs from what was recorded, said in one phrase; None if none."""
    for rel, want in table.items():
        path = Path(root) / rel
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != want.get("size"):
            return f"{path} is damaged ({size} bytes, {want.get('size')} when it was written)"
        if sha256_of(path) != want.get("sha256"):
            return f"{path} is damaged (its contents changed since it was written: sha256 differs)"
    return None


def write_checksums(directory: Path) -> None:
    """Record the size and hash of every file in ``directory`` in its :data:`CHECKSUMS` (written atomically)."""
    atomic_write_json(Path(directory) / CHECKSUMS, {"files": file_table(directory, leave_out=(CHECKSUMS,))})


def verify_checksums(directory: Path) -> str | None:
    """Why ``directory`` does not match its :data:`CHECKSUMS`, or None when it does (or predates them: nothing to check)."""
    path = Path(directory) / CHECKSUMS
    if not path.exists():
        return None
    try:
        files = read_json(path, fix="").get("files")
    except CorruptFileError as err:
        return str(err).split("; ")[0]
    if not isinstance(files, dict):
        return f"{path} is not a checksum table"
    return damaged(directory, files)


@contextmanager
def checkpoint_directory(path: Path) -> Iterator[Path]:
    """A temp directory every process writes its part of a checkpoint into; rank 0 then records its
    :data:`CHECKSUMS` and swaps it into place at ``path`` (see :func:`harness._core.distributed.shared_directory`)."""
    with shared_directory(path) as tmp:
        yield tmp
        barrier()  # every process has written its part
        if is_main_process():
            write_checksums(tmp)


def latest_intact(candidates: Sequence[Path], companions: Sequence[Path] = ()) -> Path | None:
    """The newest of ``candidates`` (oldest first) whose files, and those of each of ``companions`` that exists,
    match their checksums; None when none does.

    Each damaged candidate newer than the one returned is renamed ``.<name>.damaged-<time>`` beside itself
    (never deleted; the leading dot hides it from the checkpoint listing) with one line on stderr naming the
    damaged file and what happens instead. Every process of a launch calls it; only rank 0 moves and speaks
    (a checkpoint another process just moved reads as missing there, so all of them skip it alike).
    """
    shared = next((p for p in (verify_checksums(c) for c in companions if Path(c).exists()) if p), None)
    remaining = list(candidates)
    while remaining:
        candidate = Path(remaining.pop())
        problem = shared or verify_checksums(candidate)
        if problem is None:
            return candidate
        if is_main_process():
            instead = f"resuming from {Path(remaining[-1]).name} instead" if remaining and not shared else \
                "starting this training afresh"
            moved = _set_aside(candidate)
            print(f"warning: {problem}; moved the checkpoint to {moved}, {instead}", file=sys.stderr)
        if shared:
            return None
    return None


def _set_aside(directory: Path) -> Path:
    target = directory.with_name(f".{directory.name}.damaged-{time.time_ns()}")
    try:
        os.replace(directory, target)
    except FileNotFoundError:  # another process of the launch moved it first
        pass
    return target
