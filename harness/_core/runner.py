"""``harness run``'s entry point: one experiment, or each variant of a ``[compare]`` experiment.

The single-run pipeline is :mod:`harness._core.pipeline`; comparisons are :mod:`harness._core.comparison`,
which runs its variants through the pipeline — so this dispatcher sits above both and neither
imports it back. It holds the experiment folder's lock (:mod:`harness._core.locks`) for the whole run:
one live run per ``<output>/<experiment>/``, variants of a comparison included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness._core import distributed
from harness._core.comparison import run_comparison
from harness._core.config import Experiment
from harness._core.locks import folder_lock
from harness._core.pipeline import ensure_writable, run_single
from harness._core.plugins import PluginHost
from harness._core.run_report import write_run_report
from harness._core.runstore import STAGES_DIR
from harness._core.seeds import with_seed

__all__ = ["ensure_writable", "run_experiment"]


def run_experiment(experiment: Experiment, host: PluginHost, output: str | Path | None = None,
                   *, show_progress: bool = True, echo: Callable[[str], None] = print,
                   wait: bool = False) -> dict[str, Any]:
    """Run ``experiment`` under ``output`` (default ``[experiment] output``); return (and write) its results.

    An experiment with ``[compare]`` variants or several ``seeds`` runs each variant once per seed and returns the
    comparison's summary (:mod:`harness._core.comparison`). Every
    run under one output root shares its stage store (``<output>/.stages``): a stage whose hash (config,
    seed, upstream stages and code) is already finished there is linked, not retrained.

    Another live run of the same experiment folder makes this one refuse at once (a :class:`UsageError`
    naming its PID), or, with ``wait``, wait until it ends. In a multi-process launch rank 0 holds the lock.
    """
    root = Path(output or experiment.experiment.output)
    if not distributed.is_main_process():
        return _run(experiment, host, root, show_progress, echo)
    folder = root / experiment.name
    ensure_writable(folder)
    ensure_writable(root / STAGES_DIR)
    with folder_lock(folder, wait=wait, echo=echo):
        return _run(experiment, host, root, show_progress, echo)


def _run(experiment: Experiment, host: PluginHost, root: Path, show_progress: bool,
         echo: Callable[[str], None]) -> dict[str, Any]:
    if experiment.variants or len(experiment.seeds) > 1:  # several runs: per variant, per seed
        return run_comparison(experiment, host, root, show_progress=show_progress, echo=echo)
    return run_single(with_seed(experiment, experiment.seeds[0]), host, root / experiment.name,
                      show_progress=show_progress, echo=echo, stages_root=root / STAGES_DIR,
                      report=write_run_report)
