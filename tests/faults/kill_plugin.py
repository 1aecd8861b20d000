"""A test plugin that kills its own process with SIGKILL at one point named by $HARNESS_TEST_KILL_AT.

``metrics:<stage>:<n>`` — at the n-th metrics line of a stage; ``finished:<stage>`` — right after
a stage's manifest says finished (before the next stage starts or results.json is written);
``finished:<stage>:<n>`` — after the n-th time it does in this process (a reused stage counts too:
the runs of a comparison each finish their stages). Loaded with ``-p kill_plugin`` (this directory on
PYTHONPATH) by ``tests/test_faults.py`` and ``tests/test_seeds.py``.
"""
from __future__ import annotations

import os
import signal

from harness import hookimpl

_counts: dict[str, int] = {}


def _kill_if(point: str) -> None:
    if os.environ.get("HARNESS_TEST_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def metrics_logged(experiment, stage, stage_dir, metrics, step):
    _counts[stage] = _counts.get(stage, 0) + 1
    _kill_if(f"metrics:{stage}:{_counts[stage]}")


@hookimpl
def stage_finished(experiment, stage, stage_dir, summary):
    _counts[f"finished:{stage}"] = _counts.get(f"finished:{stage}", 0) + 1
    _kill_if(f"finished:{stage}")
    _kill_if(f"finished:{stage}:{_counts[f'finished:{stage}']}")
