"""Run the variants of a ``[compare]`` experiment, sharing common stages, then write the report.

Variants run one after another in ``<output>/<experiment>/<label>/``, on the stage store every run
under the output root shares (``<output>/.stages``, see :mod:`harness._core.runstore`): a stage with
the same hash (SFT and the reward model, when only the optimizer or β differs; or a stage the
default run already finished) is trained once and linked into the rest. A variant that fails does
not take the finished ones with it: the error is reported, the others run, and the report covers
every variant that finished and lists those that failed; when none finished, the report says so
(an older report is never left standing as if it were this comparison's).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from harness._core.config import Experiment
from harness._core.errors import HarnessError
from harness._core.io import atomic_write_json
from harness._core.pipeline import run_single
from harness._core.runstore import STAGES_DIR
from harness._core.plugins import PluginHost
from harness._core.run_report import write_run_report
from harness._core.secrets import scrub

REPORT_DIR = "report"


def run_comparison(experiment: Experiment, host: PluginHost, output: str | Path | None = None, *,
                   show_progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Every variant of ``experiment``; returns {"comparison", "variants": {label: results}, "report", "failed"}."""
    from harness._core.report import write_report

    output_root = Path(output or experiment.experiment.output)
    root = output_root / experiment.name
    dirs = {label: root / label for label in experiment.variants}
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    start = time.perf_counter()
    for i, (label, variant) in enumerate(experiment.variants.items(), 1):
        echo(f"━━ variant {i}/{len(dirs)}: {label}")
        try:
            results[label] = run_single(variant, host, dirs[label], show_progress=show_progress, echo=echo,
                                        stages_root=output_root / STAGES_DIR, report=write_run_report)
        except HarnessError as err:
            failed[label] = scrub(str(err))
            echo(f"✗ variant {label} failed: {failed[label]}")
    finished = [dirs[label] for label in results]
    report = write_report(finished, root / REPORT_DIR, host.registry, title=experiment.name,
                          description=experiment.experiment.description, failed=failed)
    summary = {"comparison": experiment.name, "wall_s": time.perf_counter() - start,
               "variants": results, "failed": failed, "report": str(report)}
    atomic_write_json(root / "comparison.json", summary)
    if failed and not results:
        raise HarnessError(f"every variant of {experiment.name!r} failed ({report} says so); "
                           f"first: {next(iter(failed.values()))}")
    return summary
