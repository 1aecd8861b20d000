"""OS file locks: one live run per experiment folder, one trainer per stage-store entry.

Two ``harness run`` of one experiment into one output root would log every step twice, or move
each other's running stage aside; two *different* experiments that need the same new stage
would train it twice into one entry. Both are stopped here with ``fcntl.flock``:

- the lock belongs to an open file, so the OS drops it when the process ends, however it ends:
  a ``kill -9`` never leaves a stale lock behind and no lock file ever needs deleting;
- the holder writes its PID into the lock file, so a refusal can say who holds it;
- an experiment folder (``<output>/<experiment>/.lock``; a comparison's variants live inside it) is
  refused at once, with one line, unless the second run asked to ``--wait``;
- a stage-store entry (``<output>/.stages/.locks/<stage>-<hash>.lock``) is always waited for: the
  other process is training exactly the stage this run needs, and once it finishes this run reuses it
  (or, if it died, resumes from its checkpoints). A process holds at most one entry lock at a time
  and never waits for a folder while holding one, so two runs cannot wait for each other.

Linux and macOS only (``fcntl``), as the rest of the harness.
"""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from harness._core.errors import UsageError

FOLDER_LOCK = ".lock"


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if absent) holding the PID of its holder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait: bool, on_wait: Callable[[int | None], None] | None = None) -> bool:
        """Take the lock; False if another process holds it and ``wait`` is False. ``on_wait(pid)`` is
        called once before blocking, with the holder's PID (None when it has not written it yet)."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return False
                if on_wait is not None:
                    on_wait(self.holder())
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """The PID written by the process that holds (or last held) the lock."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)  # closing the descriptor drops the flock


@contextmanager
def folder_lock(folder: Path, *, wait: bool = False, echo: Callable[[str], None] = print) -> Iterator[FileLock]:
    """Hold ``<folder>/.lock`` while the body runs; refuse with one :class:`UsageError` line if another
    process holds it, or (``wait``) wait for it after one line saying for whom."""
    lock = FileLock(Path(folder) / FOLDER_LOCK)

    def waiting(pid: int | None) -> None:
        echo(f"waiting for {_who(pid)} to finish with {folder} …")

    if not lock.acquire(wait=wait, on_wait=waiting):
        raise UsageError(f"{folder} is in use by another harness run ({_who(lock.holder())}, holding {lock.path}); "
                         f"wait for it with `harness run --wait …`, or give this run another --output or "
                         f"[experiment] name.")
    try:
        yield lock
    finally:
        lock.release()


_entries: dict[Path, FileLock] = {}  # this process's entry locks, by path (a process trains one stage at a time)


def lock_entry(path: Path, on_wait: Callable[[int | None], None] | None = None) -> FileLock:
    """Hold the lock of one stage-store entry, waiting while another process holds it. Re-entrant within a
    process: a lock this process still holds (a stage that failed before it could release) is simply kept."""
    path = Path(path)
    lock = _entries.get(path)
    if lock is None or not lock.held:
        lock = _entries[path] = FileLock(path)
    lock.acquire(wait=True, on_wait=on_wait or (lambda pid: print(
        f"! waiting for {_who(pid)}, which is running the same stage ({path.stem}); it is reused when finished",
        file=sys.stderr)))
    return lock


def unlock_entry(path: Path) -> None:
    lock = _entries.pop(Path(path), None)
    if lock is not None:
        lock.release()


def _who(pid: int | None) -> str:
    return f"PID {pid}" if pid else "another process"
