"""Finished runs as Python objects and pandas frames: what ``harness.load_run`` / ``load_runs`` return.

A notebook should not parse ``results.json`` and ``metrics.jsonl`` by hand. A :class:`RunResult` is one
run directory read once (its results trusted by the same rule ``harness compare`` applies:
:func:`harness._core.results.load_current`); its metrics stream and evaluation samples are read when asked.
:func:`runs_frame` puts many runs in one DataFrame, a row each, with every headline cell the runs'
evaluators declared and its interval, so runs compare with ordinary pandas.

A path is a run directory (``results.json`` and a folder per stage) or a comparison's (``comparison.json``
and a folder per variant), which stands for its finished variants; anything else is one error naming it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Union

from harness._core.errors import HarnessError
from harness._core.io import read_json, read_jsonl
from harness._core.records import Cell
from harness._core.results import CONFIG, RESULTS, load_current
from harness._core.summary import cell_of, components_line

if TYPE_CHECKING:
    import pandas as pd

COMPARISON = "comparison.json"
REPORT = Path("report") / "report.md"
HOLDS = ("a run directory holds results.json, resolved_config.json and a folder per stage (sft/, feedback/, "
         "reward_model/, policy/, evaluation/); a comparison's holds comparison.json and a folder per variant")
_FIX = "rerun the experiment to rewrite it"


@dataclass(frozen=True, eq=False)
class RunResult:
    """One finished run: its directory and its ``results.json``; metrics and samples are read on demand."""

    path: Path
    results: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        """The experiment's name (``[experiment] name``)."""
        return str(self.results.get("experiment", self.path.name))

    @property
    def variant(self) -> str:
        """The variant's label inside a comparison; ``""`` for a plain run."""
        return str(self.results.get("variant") or "")

    @property
    def headline(self) -> tuple[Cell, ...]:
        """The cells the run's evaluators declared, in order (a value, its 95% interval, the SFT value …)."""
        return tuple(cell_of(data) for data in self.results.get("headline", []))

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Per stage: ``wall_s`` (its own time, when it was trained), ``reused`` and ``peak_rss_mib``."""
        return dict(self.results.get("stages", {}))

    def metrics(self, stage: str | None = None) -> "pd.DataFrame":
        """The metrics stream, wide: a row per logged line (``stage``, ``step``, ``time``, then a column per
        metric name, NaN where a line did not log it), the stages in run order, or one ``stage`` alone."""
        import pandas as pd

        known = list(self.stages)
        if stage is not None and stage not in known:
            raise HarnessError(f"{self.path}: no stage {stage!r}; its stages are {', '.join(known)}.")
        rows = []
        for name in [stage] if stage else known:
            path = self.path / name / "metrics.jsonl"
            if path.is_file():
                rows += [{"stage": name, **row} for row in read_jsonl(path, fix=_FIX)]
        frame = pd.DataFrame(rows, columns=None if rows else ["stage", "step", "time"])
        first = [c for c in ("stage", "step", "time") if c in frame.columns]
        return frame[first + [c for c in frame.columns if c not in first]]

    def samples(self) -> "pd.DataFrame":
        """The evaluation samples: a row per held-out prompt (``prompt``, ``kind``, ``policy``, ``sft``, ``kl``)."""
        import pandas as pd

        path = self.path / "evaluation" / "samples.json"
        if not path.is_file():
            raise HarnessError(f"{path}: no evaluation samples (the evaluation stage writes them); rerun the run.")
        return pd.DataFrame(read_json(path, fix=_FIX, expect=list))

    def summary_line(self) -> str:
        """``tiny (variant ppo) · optimizer ppo · compute 6 s · runs/tiny``: what this run is, in one line."""
        label = f"{self.name} (variant {self.variant})" if self.variant else self.name
        optimizer = self.results.get("components", {}).get("optimizer", "?")
        compute = self.results.get("compute_s")
        seconds = f" · compute {compute:.0f} s" if isinstance(compute, (int, float)) else ""
        return f"{label} · optimizer {optimizer}{seconds} · {self.path}"

    def __repr__(self) -> str:
        cells = self.headline
        width = max((len(c.name) for c in cells), default=0)
        return "\n".join([f"RunResult: {self.summary_line()}", *(f"  {c.name:<{width}}  {c.render()}" for c in cells)])


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """A ``[compare]`` experiment's variants (``runs``, by label), the ones that failed, and its report."""

    path: Path
    name: str
    runs: Mapping[str, RunResult]
    failed: Mapping[str, str] = field(default_factory=dict)
    statistics: str = ""  # across seeds: the ranking, pairs and sentences ``harness run`` prints (seed_report)

    @property
    def report(self) -> Path:
        """The comparison's ``report.md`` (with report.html, report.csv and the plots beside it)."""
        return self.path / REPORT

    def table(self) -> "pd.DataFrame":
        """The report's table (``report.csv``): a row per finished variant, as ``harness.compare`` returns it."""
        from harness._core.report import load_runs, table

        return table(load_runs([run.path for run in self.runs.values()]))

    def __repr__(self) -> str:
        failed = f"; failed: {', '.join(self.failed)}" if self.failed else ""
        lines = [f"ComparisonResult: {self.name} · {len(self.runs)} variants{failed} · report {self.report}"]
        return "\n".join(lines + [f"  {label}: {components_line(run.results)}" for label, run in self.runs.items()])


PathLike = Union[str, "os.PathLike[str]", RunResult, ComparisonResult]


def load(path: PathLike) -> RunResult | ComparisonResult:
    """A run directory as a :class:`RunResult`, a comparison's as a :class:`ComparisonResult`."""
    path = _path(path)
    if _kind(path) == "comparison":
        summary = read_json(path / COMPARISON, fix=_FIX)
        runs = {label: RunResult(path / label, load_current(path / label)) for label in summary.get("variants", {})}
        return ComparisonResult(path, str(summary.get("comparison", path.name)), runs, dict(summary.get("failed", {})),
                                summary.get("statistics", ""))
    return RunResult(path, load_current(path))


def run_dirs(paths: Iterable[PathLike]) -> list[Path]:
    """The run directories ``paths`` stand for: a comparison's finished variants in its order, a run as itself."""
    if isinstance(paths, (str, os.PathLike, RunResult, ComparisonResult)):
        paths = [paths]  # one path given alone, not a string's characters
    found: list[Path] = []
    for item in paths:
        path = _path(item)
        if _kind(path) == "run":
            found.append(path)
            continue
        summary = read_json(path / COMPARISON, fix=_FIX)
        if not summary.get("variants"):
            raise HarnessError(f"{path}: a comparison none of whose variants finished "
                               f"({', '.join(summary.get('failed', {})) or 'none listed'}); rerun it.")
        found += [path / label for label in summary["variants"]]
    if not found:
        raise HarnessError("no runs given: pass run directories (or comparison directories).")
    return found


def runs_frame(runs: Iterable[Mapping[str, Any]]) -> "pd.DataFrame":
    """The frame of :func:`harness.load_runs` (its docstring lists the columns) from ``report.load_runs``' dicts.
    A cell name that two evaluators declare is qualified as ``<evaluator>:<cell>``."""
    import pandas as pd

    runs = list(runs)
    cells = [data for run in runs for data in run["results"].get("headline", [])]
    owners: dict[str, set] = {}
    for data in cells:
        owners.setdefault(data.get("name"), set()).add(data.get("evaluator"))
    rows = []
    for run in runs:
        r = run["results"]
        row = {"run": run["label"], "path": str(run["dir"]), "experiment": r.get("experiment"),
               "variant": r.get("variant") or "", "seed": r.get("seed"), **r.get("components", {})}
        for data in r.get("headline", []):
            name = data.get("name")
            key = name if len(owners[name]) == 1 else f"{data.get('evaluator')}:{name}"
            row[key] = data.get("text") if data.get("text") is not None else data.get("value")
            row.update({f"{key}_{f}": data[f] for f in ("low", "high", "before") if data.get(f) is not None})
        row.update({k: r.get(k) for k in ("wall_s", "compute_s", "peak_rss_mib")})
        row.update({f"{stage}_s": t.get("wall_s") for stage, t in r.get("stages", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _path(item: PathLike) -> Path:
    return item.path if isinstance(item, (RunResult, ComparisonResult)) else Path(item)


def _kind(path: Path) -> str:
    """``run`` or ``comparison``; anything else is one error naming the path and what a run directory holds."""
    if not path.exists():
        raise HarnessError(f"{path}: no such directory; {HOLDS}.")
    if not path.is_dir():
        raise HarnessError(f"{path}: a file, not a run directory; {HOLDS}.")
    if (path / RESULTS).is_file():
        return "run"
    if (path / COMPARISON).is_file():
        return "comparison"
    if (path / CONFIG).is_file():
        raise HarnessError(f"{path}: no {RESULTS}: the run did not finish; rerun it.")
    raise HarnessError(f"{path}: not a run directory; {HOLDS}.")
