"""Small inline components for core tests: the core is exercised without any real model.

A test that hands a component a context builds a real one (:func:`make_context`, :func:`make_experiment`)
with test values, never a duck type with fields missing: a component may rely on every field the
contract declares, and a fake that lacks one would push a fallback for it into the component.
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness import hookimpl
from harness._core.compute import ComputeOptions
from harness._core.config import EvaluationTable, Experiment, ExperimentTable, ModelTable
from harness._core.contracts import NoOptions, Options, StageContext


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


def make_experiment(seed: int = 0, compute: ComputeOptions | None = None, **fields: Any) -> Experiment:
    """A real resolved :class:`Experiment` of test values, as a hand-built StageContext carries it.

    The core tables are at their defaults but ``seed`` and ``compute`` (``ComputeOptions()`` unless
    given; most tests ask for one CPU thread); no slots or evaluators unless ``fields`` gives them
    (``slots={"world": Choice(...)}``, ``evaluation=EvaluationTable(...)``, …).
    """
    tables: dict[str, Any] = dict(source="<test>", experiment=ExperimentTable(name="test", seed=seed),
                                  model=ModelTable(), compute=ComputeOptions() if compute is None else compute,
                                  slots={}, evaluation=EvaluationTable(), evaluators={})
    return Experiment(**{**tables, **fields})


def make_context(stage: str = "evaluation", stage_dir: Path = Path("."), world: Any = None, *,
                 experiment: Experiment | None = None, log=None, **fields: Any) -> StageContext:
    """A real StageContext of test values: a :func:`make_experiment` experiment unless given, metrics dropped
    unless ``log`` keeps them, the runner's services (``build``, ``hook``, …) only where ``fields`` gives them."""
    return StageContext(experiment=make_experiment() if experiment is None else experiment, stage=stage,
                        stage_dir=stage_dir, world=world, log=log or (lambda metrics, step: None), **fields)


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
