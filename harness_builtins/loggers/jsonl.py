"""Built-in logger ``jsonl``: every ``metrics_logged`` call appends one JSON line to ``<stage>/metrics.jsonl``.

Lines are flushed as they are written, so a killed run keeps every step it logged. A resumed
stage restarts from its last checkpoint and logs those steps again, so the first time a run
logs a metric namespace (``ppo/``, ``sft/`` …) of a stage at step ``s``, the lines of that
namespace at steps ``>= s`` — the killed attempt's steps after its checkpoint — are dropped
first (an atomic rewrite; a line torn by the kill goes too). The stream then holds each step once.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.api import NoOptions, atomic_write_text, hookimpl

FILENAME = "metrics.jsonl"


class JsonlLogger:
    """Every step's metrics as a JSON line in <stage>/metrics.jsonl (the run's own record of its curves)."""

    Options = NoOptions

    def __init__(self, options: NoOptions):
        self._started: set[tuple[str, str]] = set()  # (stage dir, namespace) this run has logged already

    @hookimpl
    def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
        stage_dir.mkdir(parents=True, exist_ok=True)
        path = stage_dir / FILENAME
        fresh = {ns for ns in map(_namespace, metrics) if (str(stage_dir), ns) not in self._started}
        if fresh and path.exists():
            _truncate(path, fresh, step)
        self._started.update((str(stage_dir), ns) for ns in fresh)
        line = json.dumps({"step": step, "time": time.time(), **metrics})
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


@hookimpl
def register_loggers(register):
    register("jsonl", JsonlLogger)


def _namespace(key: str) -> str:
    return key.split("/", 1)[0]


def _truncate(path: Path, namespaces: set[str], step: int) -> None:
    """Drop the lines of ``namespaces`` at ``step`` or later, and torn lines, from an earlier attempt."""
    kept, dropped = [], False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            stale = row.get("step", -1) >= step and any(_namespace(k) in namespaces for k in row
                                                        if k not in ("step", "time"))
        except (ValueError, AttributeError, TypeError):
            stale = True
        if stale:
            dropped = True
        else:
            kept.append(line + "\n")
    if dropped:
        atomic_write_text(path, "".join(kept))
