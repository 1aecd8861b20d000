"""Built-in logger: every ``metrics_logged`` call appends one JSON line to ``<stage>/metrics.jsonl``.

Lines are flushed as they are written, so a killed run keeps every step it logged.
"""
from __future__ import annotations

import json
import time

from harness import hookimpl

FILENAME = "metrics.jsonl"


@hookimpl
def metrics_logged(experiment, stage, stage_dir, metrics, step):
    stage_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "time": time.time(), **metrics})
    with open(stage_dir / FILENAME, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
