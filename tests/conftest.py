"""Fixtures every test shares."""
from __future__ import annotations

import os

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
def tiny_cache(tmp_path_factory) -> str:
    """Where built world models and lm-eval data go: ``HARNESS_CACHE_DIR`` (CI sets it), else one per session."""
    return os.environ.get("HARNESS_CACHE_DIR") or str(tmp_path_factory.mktemp("harness-cache"))


@pytest.fixture(scope="session")
def clean_tiny_run(tiny_cache, tmp_path_factory):
    """One uninterrupted run of tests/data/tiny.toml (tests/tiny_run.py): (output root, results). Read-only: copy it."""
    from harness._core.config import load_experiment
    from harness._core.plugins import get_plugin_manager
    from harness._core.runner import run_experiment
    from tests.fakes import harness_cache
    from tests.tiny_run import OVERRIDES, TINY

    root = tmp_path_factory.mktemp("clean")
    with harness_cache(tiny_cache):
        host = get_plugin_manager(autoload=False)
        experiment = load_experiment(TINY, host.registry, OVERRIDES)
        return root, run_experiment(experiment, host, root, show_progress=False, echo=lambda s: None)
