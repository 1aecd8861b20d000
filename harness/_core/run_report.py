"""A completed run's own report, drawn for the plugins that implement ``report_written`` (a tracker logs its plots).

Handed to :func:`harness._core.pipeline.run_single` (``report=…``) by the runner rather than imported by the
pipeline: the report's plotting code trains nothing, so no stage's code identity (:mod:`harness._core.provenance`,
rooted at :mod:`harness._core.stage_driver`) may reach it, and an edit to it retrains nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness._core.secrets import scrub

REPORT_DIR = "report"  # <run>/report/


def write_run_report(experiment, host, run_dir: Path, echo: Callable[[str], None]) -> None:
    """The run's own report in ``<run>/report/``, handed to ``report_written``; drawn only when a plugin implements
    that hook. The run is already complete, so a report that cannot be drawn is a note, not a failed run."""
    if not host.hook.report_written.get_hookimpls():
        return
    from harness._core.report import load_runs, render_report

    try:
        report = render_report(load_runs([run_dir]), run_dir / REPORT_DIR, host.registry,
                               title=experiment.name + (f" / {experiment.variant}" if experiment.variant else ""),
                               description=experiment.experiment.description)
    except Exception as err:  # noqa: BLE001 - a plot's bug must not turn complete results into a failed run
        echo(f"! the run's report could not be drawn for the loggers ({type(err).__name__}: {scrub(str(err))}); "
             f"results.json is complete, and `harness compare {run_dir}` draws it")
        return
    host.hook.report_written(experiment=experiment, run_dir=run_dir, report_dir=report.parent,
                             plots=sorted(report.parent.glob("*.png")))
