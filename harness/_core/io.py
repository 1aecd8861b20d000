"""Atomic writes: a crash never leaves a half-written file or model directory behind.

Everything a user made (checkpoints, feedback, results) goes through these helpers:
write into a temporary sibling, then ``os.replace`` it into place.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness._core.errors import CorruptFileError


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON (indented, keys in insertion order) written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path, fix: str = "delete it (or restore it from a backup) and rerun",
              expect: type | None = dict) -> Any:
    """The JSON at ``path``, validated: an empty, torn, non-UTF-8 or wrongly shaped file is one
    :class:`CorruptFileError` naming the file, the problem and ``fix`` (never a bare decode error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(path, f"not UTF-8 text (byte {err.start})", fix) from None
    if not text.strip():
        raise CorruptFileError(path, "empty file", fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})", fix) from None
    if expect is not None and not isinstance(data, expect):
        raise CorruptFileError(path, f"expected a JSON {'object' if expect is dict else expect.__name__}, "
                                     f"found {type(data).__name__}", fix)
    return data


def read_jsonl(path: Path, fix: str = "delete it (or restore it from a backup) and rerun") -> list[dict[str, Any]]:
    """One JSON object per non-empty line; a bad line is one :class:`CorruptFileError` naming its line number."""
    path = Path(path)
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise CorruptFileError(f"{path}:{number}", f"not UTF-8 text (byte {err.start} of the line)", fix) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorruptFileError(f"{path}:{number}", f"not valid JSON (character {err.pos + 1}: {err.msg})", fix) from None
            if not isinstance(row, dict):
                raise CorruptFileError(f"{path}:{number}", f"expected a JSON object, found {type(row).__name__}", fix)
            rows.append(row)
    return rows


def move_aside(path: Path, why: str = "corrupt") -> Path:
    """Rename a file that cannot be read to ``<name>.<why>-<time>`` beside it (never delete a user's file)."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{why}-{int(time.time())}")
    os.replace(path, target)
    return target


def read_rebuildable_jsonl(path: Path, rebuild: str) -> list[dict[str, Any]] | None:
    """Rows of a JSONL file the harness can rebuild; None when it is absent or corrupt (then it is moved
    aside with one warning line saying where, and the caller ``rebuild``s it)."""
    if not Path(path).exists():
        return None
    try:
        return read_jsonl(path)
    except CorruptFileError as err:
        moved = move_aside(path)
        print(f"warning: {str(err).split('; ')[0]}; moved it to {moved.name}, {rebuild}", file=sys.stderr)
        return None


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces ``path`` whole (the old one is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
