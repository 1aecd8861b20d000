"""Fixtures every test shares."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models only lose from intra-op threads (badly, on a busy 2-core machine); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    """A directory the whole test session shares: under pytest-xdist every worker's temp root is a child of
    one session root, so the workers meet in its parent; without xdist it is the session's own temp root."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_cache(session_dir) -> str:
    """Where built world models and lm-eval data go: ``HARNESS_CACHE_DIR`` (CI sets it), else one per session,
    shared by the xdist workers (builds into it are serialized by the world's own file locks)."""
    return os.environ.get("HARNESS_CACHE_DIR") or str(session_dir / "harness-cache")


@pytest.fixture(scope="session")
def clean_tiny_run(tiny_cache, session_dir):
    """One uninterrupted run of tests/data/tiny.toml (tests/tiny_run.py): (output root, results). Read-only: copy it.

    Trained once per session: the first xdist worker to need it trains it under a file lock, the others wait
    and read its results (as JSON, which is how every test compares them).
    """
    from filelock import FileLock

    from harness._core.config import load_experiment
    from harness._core.plugins import get_plugin_manager
    from harness._core.runner import run_experiment
    from tests.fakes import harness_cache
    from tests.tiny_run import OVERRIDES, TINY

    root, done = session_dir / "clean-tiny-run", session_dir / "clean-tiny-run.json"
    with FileLock(str(session_dir / "clean-tiny-run.lock")):
        if not done.exists():
            with harness_cache(tiny_cache):
                host = get_plugin_manager(autoload=False)
                experiment = load_experiment(TINY, host.registry, OVERRIDES)
                results = run_experiment(experiment, host, root, show_progress=False, echo=lambda s: None)
            done.write_text(json.dumps(results))
    return root, json.loads(done.read_text())
