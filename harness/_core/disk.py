"""A full disk, a file-size limit, a quota or a read-only disk: one line naming the path and the space needed.

Every file a run writes goes through an atomic write (:mod:`harness._core.io`) or a checkpoint
directory that is swapped in whole, and each removes its temporary copy when the write fails, so
what finished earlier is never damaged. What is left is to say so: the error arrives as an
``OSError`` (``ENOSPC``, ``EDQUOT``, ``EFBIG``, ``EROFS``) somewhere in a chain of errors raised
while cleaning up, or as torch's or safetensors' own error with no errno at all (``unexpected pos``,
``iostream error``, ``Os { code: 28 … }``). :func:`disk_error` finds it and turns it into one
:class:`DiskError` line: the path, what it was doing there, the space free and the space a stage of
this model needs, and what to do. The runner records that line as the stage's and the run's error
(``results.json`` says ``failed``); a rerun once there is room resumes.
"""
from __future__ import annotations

import errno
import re
import resource
import shutil
from pathlib import Path

from harness._core.errors import HarnessError

REASONS = {
    errno.ENOSPC: "no space left on the device (ENOSPC)",
    errno.EDQUOT: "the disk quota is exceeded (EDQUOT)",
    errno.EFBIG: "a file grew past the file-size limit (EFBIG, ulimit -f)",
    errno.EROFS: "the file system is read-only (EROFS)",
}
# A stage of a model with S bytes of weights writes about 8 S: the model (S), a checkpoint with the optimizer's
# two moments (3 S) and, until the new one is swapped in, the checkpoint it replaces (3 S), plus slack.
STAGE_FACTOR = 8
_TORCH_WRITER = ("inline_container.cc", "iostream error", "PytorchStreamWriter", "file write failed")
_RUST_IO = re.compile(r"Os \{ code: (\d+)")  # safetensors: "IoError(Os { code: 28, kind: StorageFull, … })"
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


class DiskError(HarnessError):
    """The disk (or a limit on it) stopped a write: a failed run, exit 1, rerun to resume once there is room."""

    exit_code = 1


def disk_error(err: BaseException, where: Path, model_bytes: int | None = None,
               doing: str = "the run was writing there") -> DiskError | None:
    """``err`` as one :class:`DiskError` line when a full disk, quota, size limit or read-only disk caused it, else None."""
    if isinstance(err, HarnessError):
        return None
    code = _write_errno(err, Path(where), model_bytes)
    if code is None:
        return None
    path = next((e.filename for e in _chain(err) if isinstance(e, OSError) and e.filename), None) or where
    need = STAGE_FACTOR * model_bytes if model_bytes else None
    if code == errno.EROFS:
        advice = "a run writes its stages and results there: choose another --output."
    elif code == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "unlimited" if limit == resource.RLIM_INFINITY else _size(limit)
        biggest = f"; a checkpoint of this model holds files of about {_size(2 * model_bytes)} (its optimizer " \
                  f"state: 2 × its {_size(model_bytes)} of weights)" if model_bytes else ""
        advice = f"the limit is {shown}{biggest}. Raise it (ulimit -f unlimited) and rerun: finished stages are kept."
    else:
        free = _free(Path(where))
        needs = f", and a stage of this model needs about {_size(need)} ({STAGE_FACTOR} × its {_size(model_bytes)} " \
                f"of weights: the model, a checkpoint with the optimizer state, and the one it replaces)" if need else ""
        advice = (f"{_size(free) if free is not None else 'nothing'} free there{needs}. Free space or choose another "
                  f"--output, and rerun: finished stages are kept.")
    return DiskError(f"{path}: {REASONS[code]} while {doing}; {advice}")


def weights_bytes(model_dir) -> int | None:
    """Bytes of the weight files of an HF model directory (None for a hub id or an empty directory)."""
    path = Path(str(model_dir)).expanduser()
    if not path.is_dir():
        return None
    found = sum(f.stat().st_size for pattern in _WEIGHTS for f in path.glob(pattern) if f.is_file())
    return found or None


def _write_errno(err: BaseException, where: Path, model_bytes: int | None) -> int | None:
    """The errno (one of :data:`REASONS`) behind ``err`` or an error it was raised while handling; for a torch
    writer error without one, EFBIG under a file-size limit, ENOSPC when the disk has less room than a stage needs."""
    torch_writer = False
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in REASONS:
            return e.errno
        match = _RUST_IO.search(str(e))
        if match and int(match.group(1)) in REASONS:
            return int(match.group(1))
        torch_writer = torch_writer or (isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITER))
    if not torch_writer:
        return None
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return errno.EFBIG
    free = _free(where)
    if free is not None and free < max(STAGE_FACTOR * (model_bytes or 0), 64 << 20):
        return errno.ENOSPC
    return None


def _chain(err: BaseException):
    """``err`` and the errors it was raised from or while handling, newest first (each once)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _free(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"
