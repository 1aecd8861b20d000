"""What each stage's code identity holds: the code that trains it, not the code that reports on it.

The identity (:mod:`harness._core.provenance`) is the import closure of the stage driver and the
stage's components. These tests edit a module's AST as the identity reads it, never the repository's
file: an edit is a copy of the module with one statement added, read in place of the original.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from harness._core import provenance
from harness._core.config import load_experiment
from harness._core.plugins import get_plugin_manager
from harness._core.provenance import CORE_ROOT, code_identity
from harness._core.runstore import RunStore
from harness._core.stage_driver import STAGE_INPUTS, Run

DEFAULT = Path(__file__).resolve().parents[1] / "experiments" / "instructgpt.toml"
# what runs around the stages or after them: the run's files, the report, comparisons, seed statistics
AROUND_THE_STAGES = ("pipeline", "runner", "comparison", "python_api", "results", "run_loggers", "run_report",
                     "report", "report_tables", "summary", "seed_cells", "seed_plots", "seed_report")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default experiment's run, for the factories each of its stages uses."""
    host = get_plugin_manager(autoload=False)
    experiment = load_experiment(DEFAULT, host.registry)
    return Run(experiment, host, RunStore(tmp_path_factory.mktemp("run") / experiment.name))


def _identities(run: Run) -> dict[str, dict]:
    return {stage: code_identity(run.factories(stage)) for stage in STAGE_INPUTS}


def _edit(monkeypatch, tmp_path: Path, module: str) -> None:
    """From now on the identity reads ``module`` with one more statement: its AST changed."""
    original = Path(importlib.util.find_spec(module).origin)
    edited = tmp_path / f"{module}.py"
    edited.write_text(original.read_text(encoding="utf-8") + "\n_EDITED = 1\n", encoding="utf-8")
    read = provenance._facts
    monkeypatch.setattr(provenance, "_facts", lambda name, path: read(name, edited if name == module else path))


def _rerun(run: Run, before: dict[str, dict]) -> set[str]:
    """The stages whose code identity differs from ``before``: those an edit retrains."""
    return {stage for stage, identity in _identities(run).items() if identity != before[stage]}


@pytest.mark.parametrize("name", AROUND_THE_STAGES)
def test_editing_what_runs_around_or_after_the_stages_reruns_no_stage(default_run, monkeypatch, tmp_path, name):
    before = _identities(default_run)
    _edit(monkeypatch, tmp_path, f"harness._core.{name}")
    assert _rerun(default_run, before) == set()


@pytest.mark.parametrize("name", ("config", "stage_driver", "runstore", "core_hooks"))
def test_editing_what_builds_and_runs_every_stage_reruns_every_stage(default_run, monkeypatch, tmp_path, name):
    before = _identities(default_run)
    _edit(monkeypatch, tmp_path, f"harness._core.{name}")
    assert _rerun(default_run, before) == set(STAGE_INPUTS)


def test_every_stage_shares_the_stage_driver_and_no_report(default_run):
    closures = {stage: set(identity["modules"]) for stage, identity in _identities(default_run).items()}
    shared = set.intersection(*closures.values())
    assert {CORE_ROOT, "harness._core.config", "harness._core.core_hooks", "harness"} <= shared
    assert not {f"harness._core.{name}" for name in AROUND_THE_STAGES} & set.union(*closures.values())


def _package(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    """``tmp_path`` on sys.path; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_package_above_a_module_counts_with_what_its_init_runs(on_path):
    """``harness``'s PEP 562 ``__getattr__`` imports the Python API only when asked for one of its names; a
    function its ``__init__`` calls, or decorates, runs on import and counts."""
    _package(on_path, {
        "lazy_pkg/__init__.py": "def __getattr__(name):\n    if name != 'RUN':\n        raise AttributeError(name)\n"
                                "    from lazy_pkg.api import RUN\n    return RUN\n\n\n"
                                "def _load():\n    from lazy_pkg import loaded\n\n\n_load()\n",
        "lazy_pkg/api.py": "RUN = 1\n",
        "lazy_pkg/loaded.py": "",
        "lazy_pkg/stage.py": "def factory():\n    return 1\n",
        "whole.py": "import lazy_pkg\n\n\ndef factory():\n    return lazy_pkg.RUN\n",
    })
    stage = importlib.import_module("lazy_pkg.stage")
    modules = code_identity([stage.factory])["modules"]
    assert {"lazy_pkg", "lazy_pkg.stage", "lazy_pkg.loaded"} <= set(modules) and "lazy_pkg.api" not in modules
    whole = importlib.import_module("whole")  # imports the package itself, so its __getattr__ counts
    assert "lazy_pkg.api" in code_identity([whole.factory])["modules"]


def _rewrite(path: Path, text: str) -> None:
    """New source with a new mtime, however coarse the file system's clock."""
    mtime = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(mtime + 2_000_000_000, mtime + 2_000_000_000))


def test_an_edit_during_a_command_changes_no_identity_until_the_module_is_imported_again(on_path):
    """A long command runs the code it imported: its later stages keep that identity; a reload (``importlib.reload``,
    IPython's autoreload) gives the module a new ``__spec__`` and the edit counts from then on."""
    _package(on_path, {"live_plugin.py": "VALUE = 1\n\n\ndef factory():\n    return VALUE\n"})
    module = importlib.import_module("live_plugin")
    before = code_identity([module.factory])
    _rewrite(on_path / "live_plugin.py", "VALUE = 2\n\n\ndef factory():\n    return VALUE\n")
    assert code_identity([module.factory]) == before and module.VALUE == 1
    reloaded = importlib.reload(module)
    assert reloaded.VALUE == 2
    assert code_identity([reloaded.factory])["modules"]["live_plugin"] != before["modules"]["live_plugin"]


def test_a_module_not_imported_yet_is_read_again_when_its_file_changes(on_path):
    _package(on_path, {"user_plugin.py": "def factory():\n    from lazy_helper import VALUE\n    return VALUE\n",
                       "lazy_helper.py": "VALUE = 1\n"})
    module = importlib.import_module("user_plugin")
    before = code_identity([module.factory])
    assert "lazy_helper" in before["modules"] and "lazy_helper" not in sys.modules
    _rewrite(on_path / "lazy_helper.py", "VALUE = 2\n")
    assert code_identity([module.factory])["modules"]["lazy_helper"] != before["modules"]["lazy_helper"]
