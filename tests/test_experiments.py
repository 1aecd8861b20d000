"""Every shipped experiment validates: plugin names resolve and every option type-checks."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness._core.config import load_experiment
from harness._core.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "experiments").glob("*.toml")) + [ROOT / "tests" / "data" / "tiny.toml"]


@pytest.fixture(scope="module")
def registry():
    return get_plugin_manager(autoload=False).registry


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_experiment_validates(path, registry):
    experiment = load_experiment(path, registry)
    assert experiment.name and experiment.to_dict()["optimizer"]["name"] in registry.names("optimizer")


def test_default_uses_the_instructgpt_shape(registry):
    exp = load_experiment(ROOT / "experiments" / "instructgpt.toml", registry)
    ppo = exp.choice("optimizer").options
    assert exp.choice("feedback").name == "ranking" and 4 <= exp.choice("feedback").options.k <= 9
    assert 0.01 <= ppo.init_kl_coef <= 0.1 and hasattr(ppo, "ptx_coef")
