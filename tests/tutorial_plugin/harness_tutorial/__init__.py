"""The tutorial plugin of docs/plugins.md: one component of each kind, registered through the entry point.

``pip install`` it and every name below is usable from TOML: optimizer ``mini_rloo``, reward source
``length_penalized``, feedback format ``thumbs``, evaluator ``mean_words`` and judge ``shorter``.
"""
from __future__ import annotations

from harness.api import hookimpl
from harness_tutorial.length_penalized import LengthPenalized
from harness_tutorial.mean_words import MeanWords
from harness_tutorial.rloo import RLOO
from harness_tutorial.shorter import Shorter
from harness_tutorial.thumbs import Thumbs


@hookimpl
def register_optimizers(register):
    register("mini_rloo", RLOO)


@hookimpl
def register_reward_sources(register):
    register("length_penalized", LengthPenalized)


@hookimpl
def register_feedback_formats(register):
    register("thumbs", Thumbs)


@hookimpl
def register_evaluators(register):
    register("mean_words", MeanWords)


@hookimpl
def register_judges(register):
    register("shorter", Shorter)
