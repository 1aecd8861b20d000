"""Run the variants of a ``[compare]`` experiment, once per seed, sharing common stages, then write the report.

With one seed, variants run one after another in ``<output>/<experiment>/<label>/`` (a multi-seed
experiment without ``[compare]`` is one variant). With several (``[experiment] seeds``,
:mod:`harness._core.seeds`) each seed's runs live in ``<output>/<experiment>/seed-<s>/<label>/`` (or
``seed-<s>/`` itself without ``[compare]``): a seed's variants form one paired set — same SFT model,
feedback and reward model, same evaluation prompts — which is what the paired statistics of the report
rest on, so the runs go seed by seed: an interrupted experiment has whole seeds behind it.

Every run is on the stage store all runs under the output root share (``<output>/.stages``, see
:mod:`harness._core.runstore`): a stage with the same hash (SFT and the reward model, when only the
optimizer or β differs; or a stage an earlier run already finished) is trained once and linked into
the rest, so rerunning an interrupted experiment resumes it. A run that fails does not take the
finished ones with it: the error is reported, the others run, and the report covers every run that
finished and lists those that failed; when none finished, the report says so (an older report is never
left standing as if it were this comparison's).
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
from harness._core.seeds import seed_dir, with_seed

REPORT_DIR = "report"


def planned_runs(experiment: Experiment, root: Path) -> list[tuple[str, Experiment, Path]]:
    """(name, the run's experiment, its folder) per seed and variant, seed by seed; ``name`` is the folder
    relative to ``root`` (``ppo``, ``seed-1/ppo``, ``seed-1``)."""
    seeds = experiment.seeds
    plan = []
    for seed in seeds:
        for label, variant in (experiment.variants or {"": experiment}).items():
            name = "/".join([seed_dir(seed)] * (len(seeds) > 1) + [label] * bool(label))
            plan.append((name, with_seed(variant, seed), root / name))
    return plan


def run_comparison(experiment: Experiment, host: PluginHost, output: str | Path | None = None, *,
                   show_progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Every variant of ``experiment`` on every seed; returns {"comparison", "seeds", "variants": {name: results},
    "report", "failed", "statistics"} (``statistics``: the ranking across seeds as text, what ``harness run`` prints)."""
    from harness._core.report import write_report

    output_root = Path(output or experiment.experiment.output)
    root = output_root / experiment.name
    plan = planned_runs(experiment, root)
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    start = time.perf_counter()
    noun = "variant" if len(experiment.seeds) == 1 else "run"  # a run: one variant on one seed
    for i, (name, run, folder) in enumerate(plan, 1):
        echo(f"━━ {noun} {i}/{len(plan)}: {name}")
        try:
            results[name] = run_single(run, host, folder, show_progress=show_progress, echo=echo,
                                       stages_root=output_root / STAGES_DIR, report=write_run_report)
        except HarnessError as err:
            failed[name] = scrub(str(err))
            echo(f"✗ {name} failed: {failed[name]}")
    labels = list(experiment.variants or [""])  # the report's rows: variant by variant, each seed in turn
    rank = {name: (labels.index(run.variant), experiment.seeds.index(run.seed)) for name, run, _ in plan}
    order = [folder for name, _, folder in sorted(plan, key=lambda item: rank[item[0]]) if name in results]
    written = write_report(order, root / REPORT_DIR, host.registry, title=experiment.name,
                           description=experiment.experiment.description, failed=failed)
    summary = {"comparison": experiment.name, "seeds": list(experiment.seeds), "wall_s": time.perf_counter() - start,
               "variants": results, "failed": failed, "report": str(written.report), "statistics": written.statistics}
    atomic_write_json(root / "comparison.json", summary)
    if failed and not results:
        raise HarnessError(f"every {noun} of {experiment.name!r} failed ({written.report} says so); "
                           f"first: {next(iter(failed.values()))}")
    return summary
