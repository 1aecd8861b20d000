"""``harness run``'s entry point: one experiment, or each variant of a ``[compare]`` experiment.

The single-run pipeline is :mod:`harness._core.pipeline`; comparisons are :mod:`harness._core.comparison`,
which runs its variants through the pipeline — so this dispatcher sits above both and neither
imports it back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness._core.comparison import run_comparison
from harness._core.config import Experiment
from harness._core.pipeline import ensure_writable, run_single
from harness._core.plugins import PluginHost
from harness._core.runstore import STAGES_DIR

__all__ = ["ensure_writable", "run_experiment"]


def run_experiment(experiment: Experiment, host: PluginHost, output: str | Path | None = None,
                   *, show_progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``experiment`` under ``output`` (default ``[experiment] output``); return (and write) its results.

    An experiment with ``[compare]`` variants runs each of them and returns the comparison's summary. Every
    run under one output root shares its stage store (``<output>/.stages``): a stage whose hash (config,
    seed, upstream stages and code) is already finished there is linked, not retrained.
    """
    if experiment.variants:
        return run_comparison(experiment, host, output, show_progress=show_progress, echo=echo)
    root = Path(output or experiment.experiment.output)
    return run_single(experiment, host, root / experiment.name, show_progress=show_progress, echo=echo,
                      stages_root=root / STAGES_DIR)
