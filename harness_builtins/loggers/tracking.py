"""What the tracker loggers (``wandb``, ``mlflow``) share: their optional package, the run's name, and the
config and headline results as the flat keys a tracker's run table shows.

The trackers are extras (``pip install "harness[wandb]"``), so the default install stays lean: their
modules import without the package, and enabling one without it is one line naming the install.
"""
from __future__ import annotations

import importlib
import re
from typing import Any

from harness.api import HarnessError, scrub


def require(extra: str, modules: tuple[str, ...]) -> Any:
    """The tracker's package (the first of ``modules``, all of which its extra installs), or one
    :class:`HarnessError` naming the ``pip install`` that fixes it."""
    problem = missing(extra, modules)
    if problem:
        raise HarnessError(problem)
    return importlib.import_module(modules[0])


def missing(extra: str, modules: tuple[str, ...], source: str = "") -> str | None:
    """Why ``[loggers] names`` cannot have this tracker here (a package of its extra does not import), or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            where = f"{source}: " if source else ""
            return (f"{where}[loggers] names has {extra!r}, but the {module} package is not installed "
                    f"({scrub(str(err))}): pip install \"harness[{extra}]\"")
    return None


def extra_problems(experiment, extra: str, modules: tuple[str, ...]) -> list[str] | None:
    """What a tracker's ``check_experiment`` says: the missing-package line when the experiment names it, else None."""
    if extra not in experiment.loggers.names:
        return None
    problem = missing(extra, modules, experiment.source)
    return [problem] if problem else None


def run_name(experiment) -> str:
    """``<experiment>``, or ``<experiment>/<variant>`` for a variant of a comparison."""
    return f"{experiment.name}/{experiment.variant}" if experiment.variant else experiment.name


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (``optimizer.ppo.kl_coef``) → its scalar values (lists kept whole)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def slug(name: str) -> str:
    """A cell's name as a key every tracker accepts: ``proxy (SFT → policy)`` → ``proxy_SFT_policy``."""
    return re.sub(r"[^0-9A-Za-z_.\-]+", "_", name).strip("_") or "_"


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The run's headline cells (``results["headline"]``, what the report's table shows) as
    ``results/<evaluator>/<cell>`` → value, with ``/before`` (the SFT value), ``/low`` and ``/high`` (its
    interval) where it has them; a cell that is text, not a number, keeps its text. Plus the run's wall time."""
    out: dict[str, Any] = {}
    for cell in results.get("headline", []):
        key = f"results/{slug(str(cell.get('evaluator')))}/{slug(str(cell.get('name')))}"
        if isinstance(cell.get("value"), (int, float)):
            out[key] = cell["value"]
        elif cell.get("text"):
            out[key] = str(cell["text"])
        for part in ("before", "low", "high"):
            if isinstance(cell.get(part), (int, float)):
                out[f"{key}/{part}"] = cell[part]
    for part in ("wall_s", "compute_s"):
        if isinstance(results.get(part), (int, float)):
            out[f"results/{part}"] = results[part]
    return out
