"""harness: a plugin-based, evaluation-driven experimentation harness for RLHF.

Two public surfaces: this package's functions for running and reading experiments from Python
(``harness.run``, ``load_run``, ``load_runs``, ``compare``; see README "From Python"), and
:mod:`harness.api` for plugin authors (with ``hookimpl`` here). The Python API is imported on first
use (PEP 562), so ``import harness`` — which every plugin does — loads neither torch nor pandas.
"""
from typing import TYPE_CHECKING

from harness._core.hookspecs import hookimpl

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports it on first use
    from harness._core.python_api import ComparisonResult, RunResult, compare, load_run, load_runs, run

__version__ = "0.1.0"
_PYTHON_API = ("run", "load_run", "load_runs", "compare", "RunResult", "ComparisonResult")
__all__ = ["hookimpl", "__version__", *_PYTHON_API]


def __getattr__(name: str):
    if name in _PYTHON_API:
        from harness._core import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PYTHON_API})
