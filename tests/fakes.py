"""Small inline components for core tests: the core is exercised without any real model."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness import hookimpl
from harness._core.contracts import NoOptions, Options


class FakePPOOptions(Options):
    clip: float = Field(0.2, gt=0, description="PPO ratio clip ε.")
    kl_coef: float = Field(0.05, ge=0, description="Initial KL coefficient β.")
    epochs: int = Field(4, ge=1, description="PPO epochs per batch.")
    mode: Literal["fast", "slow"] = Field("fast", description="A literal option.")


class FakePPO:
    """A fake optimizer with PPO-shaped options."""

    Options = FakePPOOptions
    mode = "online"

    def __init__(self, options):
        self.options = options


class FakeComponent:
    """A fake component that takes no options."""

    Options = NoOptions

    def __init__(self, options, **kwargs):
        self.options = options


class FakePlugin:
    """Registers one fake component in every slot the default experiment needs."""

    @hookimpl
    def register_worlds(self, register):
        register("embedded", FakeComponent)

    @hookimpl
    def register_stages(self, register):
        register("next_token", FakeComponent)
        register("bradley_terry", FakeComponent)

    @hookimpl
    def register_feedback_formats(self, register):
        register("ranking", FakeComponent)
        register("pairwise", FakeComponent)

    @hookimpl
    def register_reward_sources(self, register):
        register("learned", FakeComponent)

    @hookimpl
    def register_optimizers(self, register):
        register("ppo", FakePPO)
        register("a2c", FakeComponent)

    @hookimpl
    def register_evaluators(self, register):
        register("rewards", FakeComponent)
        register("win_rate", FakeComponent)


def judge_builder():
    """``ctx.build`` over the built-in judges only (what the win-rate evaluator builds its judge with)."""
    from functools import partial

    from harness._core.building import build_component
    from harness._core.plugins import get_plugin_manager

    builtins = ("harness_builtins.judges.scored", "harness_builtins.judges.pairwise_llm", "harness_builtins.judges.scoring_llm")
    return partial(build_component, get_plugin_manager(builtins=builtins, autoload=False).registry)


def pip_install_into(target: Path, package: Path) -> Path:
    """pip-install an out-of-tree plugin package (no deps) into a private ``target`` directory; returns it."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package)], check=True)
    return target


@contextmanager
def harness_cache(path: str | Path):
    """``HARNESS_CACHE_DIR`` set to ``path`` for the block (built models and lm-eval data go there), then restored."""
    old = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HARNESS_CACHE_DIR")
        else:
            os.environ["HARNESS_CACHE_DIR"] = old
