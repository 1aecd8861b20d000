"""The Python API: ``harness.run``, ``load_run``, ``load_runs`` and ``compare``, for notebooks and scripts.

These are the functions the command line calls (``harness run`` and ``harness compare`` are a thin
layer of options and printing over :func:`run_with` and :func:`write_comparison`), so a run started
here has the CLI's stages, validation, stage reuse and resume, and writes the same run directory.
``harness/__init__.py`` re-exports the public names lazily: ``import harness`` stays cheap, and torch
and pandas load on the first call.

An experiment is a TOML file or a dict of the same tables (``{"experiment": {"name": …}, "optimizer":
{…}}``), validated alike; a dict's errors name ``<dict>`` where a file's name the file. Overrides are
``--set`` strings (``"optimizer.ppo.init_kl_coef=0.1"``) or a dict of dotted keys (or nested tables)
to Python values.
"""
from __future__ import annotations

import datetime
import json
import numbers
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, Union

from harness._core.errors import ConfigError
from harness._core.run_result import ComparisonResult, PathLike, RunResult, load, run_dirs, runs_frame
from harness._core.secrets import scrub

if TYPE_CHECKING:
    import pandas as pd

    from harness._core.config import Experiment
    from harness._core.plugins import PluginHost
    from harness._core.registry import Registry
    from harness._core.report import WrittenReport

__all__ = ["ComparisonResult", "RunResult", "compare", "load_run", "load_runs", "run"]

Overrides = Union[str, Sequence[str], Mapping[str, Any], None]
DICT_SOURCE = "<dict>"


# --------------------------------------------------------------------------- the public functions
def run(experiment: str | os.PathLike[str] | Mapping[str, Any], overrides: Overrides = None,
        output: str | os.PathLike[str] | None = None, *, progress: bool = True,
        echo: Callable[[str], None] | None = print, wait: bool = False, seeds: str | Sequence[int] | None = None,
        plugins: Sequence[str] = ()) -> RunResult | ComparisonResult | None:
    """Run an experiment (a TOML path or a dict of its tables) as ``harness run`` does; return its results.

    ``output`` is the run store's root (default ``[experiment] output``); a finished stage with the same
    hash is reused and an interrupted one resumed. ``echo`` gets the stage lines (None: silent), warnings
    go to stderr, ``progress`` shows tqdm bars (widgets in a notebook); ``wait`` waits for another run
    holding the experiment's folder; ``seeds`` (``[0, 1, 2]`` or ``"0,1,2"``, as ``--seeds``) replaces the
    experiment's seed or seeds; ``plugins`` are ``-p`` values. A ``[compare]`` or multi-seed experiment returns a
    :class:`ComparisonResult`; a process other than rank 0 of a multi-process launch returns None.
    """
    from harness._core.plugins import get_plugin_manager

    return run_with(get_plugin_manager(plugins), experiment, overrides, output, progress=progress,
                    echo=echo, wait=wait, seeds=seeds)


def load_run(path: PathLike) -> RunResult | ComparisonResult:
    """A finished run directory as a :class:`RunResult` (a comparison's directory: a :class:`ComparisonResult`);
    results that are not the current, complete results of the run's config are refused, as by ``harness compare``."""
    return load(path)


def load_runs(paths: Iterable[PathLike]) -> "pd.DataFrame":
    """A DataFrame with a row per run (a comparison's directory stands for its finished variants): ``run`` (the
    variant's label or the folder's name), ``path``, ``experiment``, ``variant``, ``seed``, a column per component
    slot (``optimizer``, ``reward``, ``feedback`` …), each headline cell as ``<cell>`` with ``<cell>_low`` and
    ``<cell>_high`` (its 95% interval) and ``<cell>_before`` (the SFT model's value) where it has them, then
    ``wall_s``, ``compute_s``, ``peak_rss_mib`` and ``<stage>_s`` (each stage's own time)."""
    from harness._core.report import load_runs as read_runs

    return runs_frame(read_runs(run_dirs(paths)))


def compare(paths: Iterable[PathLike], out: str | os.PathLike[str] | None = None, *, title: str | None = None,
            plugins: Sequence[str] = ()) -> "pd.DataFrame":
    """Write the ``harness compare`` report of these runs into ``out`` (default ``<common parent>/report``)
    and return its table (``report.csv``: a row per run, indexed by variant); ``.attrs["report"]`` is report.md."""
    from harness._core.plugins import get_plugin_manager
    from harness._core.report import table

    done = write_comparison(get_plugin_manager(plugins).registry, paths, out, title)
    frame = table(done.runs)
    frame.attrs["report"] = str(done.report)
    return frame


# --------------------------------------------------------------------------- what the CLI shares
def run_with(host: "PluginHost", experiment: str | os.PathLike[str] | Mapping[str, Any], overrides: Overrides,
             output: str | os.PathLike[str] | None, *, progress: bool = True,
             echo: Callable[[str], None] | None = print, warn: Callable[[str], None] | None = None,
             wait: bool = False, seeds: str | Sequence[int] | None = None) -> RunResult | ComparisonResult | None:
    """:func:`run` with a plugin host already built (the CLI's, from its ``-p`` options)."""
    from harness._core import distributed
    from harness._core.preflight import preflight
    from harness._core.runner import run_experiment

    resolved = load_experiment_from(experiment, host.registry, overrides, seeds)
    for line in preflight(resolved, host):  # what validate checks, before any training
        (warn or _stderr_warning)(line)
    quiet_libraries()
    results = run_experiment(resolved, host, output, show_progress=progress, echo=echo or _silent, wait=wait)
    distributed.shutdown()
    if not results:  # a process other than rank 0 of a multi-process launch: rank 0 reports
        return None
    root = Path(output or resolved.experiment.output) / resolved.name
    if "variants" in results:
        runs = {label: RunResult(root / label, r) for label, r in results["variants"].items()}
        return ComparisonResult(root, results["comparison"], runs, dict(results["failed"]), results.get("statistics", ""))
    return RunResult(root, results)


def write_comparison(registry: "Registry", paths: Iterable[PathLike], out: str | os.PathLike[str] | None = None,
                     title: str | None = None) -> "WrittenReport":
    """The report of ``paths`` (runs, or comparisons standing for their variants) written into ``out``
    (default: the given paths' common parent's ``report/``, else ``./report``), titled ``title``
    (default: that parent's name)."""
    from harness._core.report import report_home, write_report

    given = [p.path if isinstance(p, (RunResult, ComparisonResult)) else Path(p) for p in _listed(paths)]
    dirs = run_dirs(given)
    parent = report_home(given)
    return write_report(dirs, Path(out) if out else parent / "report", registry, title=title or parent.name)


def load_experiment_from(experiment: str | os.PathLike[str] | Mapping[str, Any], registry: "Registry",
                         overrides: Overrides = None, seeds: str | Sequence[int] | None = None) -> "Experiment":
    """An experiment file, or a dict of its tables, validated and resolved with ``overrides`` applied."""
    from harness._core.config import experiment_from_tables, load_experiment, read_with_bases
    from harness._core.tables import deep_merge

    sets = override_strings(overrides)
    if seeds is not None and not isinstance(seeds, str):
        seeds = ",".join(str(seed) for seed in seeds)
    if not isinstance(experiment, Mapping):
        return load_experiment(experiment, registry, sets, seeds)
    raw = plain_tables(experiment, "")
    extends = raw.get("experiment", {}).get("extends") if isinstance(raw.get("experiment"), dict) else None
    if extends:  # a dict has no folder of its own: its base file is found from the working directory
        if not isinstance(extends, str):
            raise ConfigError(f"{DICT_SOURCE}: [experiment] extends must be a path to an experiment file.")
        base = read_with_bases(Path(extends))
        deep_merge(base, raw)
        raw = base
    return experiment_from_tables(raw, registry, sets, DICT_SOURCE, seeds)


def override_strings(overrides: Overrides) -> list[str]:
    """``--set`` strings from a string, a list of them, or a dict of dotted keys (or nested tables) to values."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return [str(item) for item in overrides]
    flat: dict[str, Any] = {}
    _flatten(plain_tables(overrides, "", where="overrides"), "", flat)
    return [f"{key}={_toml(value)}" for key, value in flat.items()]


def plain_tables(value: Any, key: str, where: str = DICT_SOURCE) -> Any:
    """A copy of a dict of tables as TOML would parse it (tuples as lists, paths and numpy scalars as
    str/int/float), or one :class:`ConfigError` naming the dotted key of a value TOML cannot hold."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: key {k!r}{f' in {key}' if key else ''}: keys are strings.")
            out[k] = plain_tables(v, f"{key}.{k}" if key else k, where)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_tables(v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if isinstance(value, (str, bool, datetime.date, datetime.time)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    why = "TOML has no null: leave the key out" if value is None else \
        "expected a string, number, boolean, date, list or table"
    raise ConfigError(f"{where}: {key} = {scrub(repr(value))[:80]}: {why}.")


def quiet_libraries() -> None:
    """Keep a run's output to its own lines: no load reports or per-call bars from transformers/datasets."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # trl's per-dataset Map/Filter bars. datasets reads this when it is imported; importing it here only to
    # call its disable_progress_bars() cost every process 0.6 s, though most runs never load a dataset.
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)  # trl → transformers


# --------------------------------------------------------------------------- helpers
def _listed(paths: Iterable[PathLike]) -> list[PathLike]:
    return [paths] if isinstance(paths, (str, os.PathLike, RunResult, ComparisonResult)) else list(paths)


def _flatten(table: Mapping[str, Any], prefix: str, into: dict[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", into)
        else:
            into[f"{prefix}{key}"] = value


def _toml(value: Any) -> str:
    """A plain value as a TOML inline value (what ``--set`` parses back to the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return value.isoformat()


def _stderr_warning(line: str) -> None:
    print(f"warning: {scrub(line)}", file=sys.stderr)


def _silent(text: str) -> None:
    """Where the stage lines go with ``echo=None``."""

