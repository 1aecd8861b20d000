"""Stage reuse is honest: the stage hash covers the code that produced it, and plain runs share stages.

A plugin package lives in a temporary directory (as an editable install or a ``PYTHONPATH``
checkout would): its SFT stage counts how often it really ran; its reward-model stage stops
the run, so no model is ever trained here.
"""
from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from harness._core.config import load_experiment
from harness._core.plugins import get_plugin_manager
from harness._core.provenance import code_identity, describe_change
from harness._core.runner import run_experiment

PLUGIN = "harness_test_edited_plugin"

SOURCE = textwrap.dedent('''
    """A plugin whose source the test edits between runs."""
    import json

    from harness import hookimpl
    from harness._core.contracts import NoOptions

    VERSION = "first"


    class World:
        """A world with nothing in it."""
        Options = NoOptions
        name = "empty"

        def __init__(self, options, seed):
            self.seed = seed


    class CountingStage:
        """Writes which code version ran into the stage directory."""
        Options = NoOptions

        def __init__(self, options):
            self.options = options

        def run(self, ctx):
            (ctx.stage_dir / "ran.json").write_text(json.dumps({"version": VERSION}))
            return {"version": VERSION}


    class NoFeedback:
        """Collects nothing."""
        Options = NoOptions

        def __init__(self, options):
            self.options = options

        def collect(self, ctx):
            return []

        def preference_groups(self, records):
            return []

        def agreement(self, records):
            return {}


    class StopStage:
        """Ends the run (the test needs no reward model)."""
        Options = NoOptions

        def __init__(self, options):
            self.options = options

        def run(self, ctx):
            raise RuntimeError("stop after sft")


    @hookimpl
    def register_worlds(register):
        register("empty", World)


    @hookimpl
    def register_feedback_formats(register):
        register("nothing", NoFeedback)


    @hookimpl
    def register_stages(register):
        register("counting", CountingStage)
        register("stop", StopStage)
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin package on ``sys.path``; returns a function that rewrites its source and reloads it."""
    root = tmp_path / "src"
    (root / PLUGIN).mkdir(parents=True)
    init = root / PLUGIN / "__init__.py"
    init.write_text(SOURCE)
    monkeypatch.syspath_prepend(str(root))

    def edit(old: str, new: str):
        init.write_text(init.read_text().replace(old, new))
        return importlib.reload(sys.modules[PLUGIN])

    importlib.import_module(PLUGIN)
    yield edit
    sys.modules.pop(PLUGIN, None)


def _experiment(tmp_path, name: str, host):
    base = tmp_path / "base-model"
    base.mkdir(exist_ok=True)
    toml = tmp_path / f"{name}.toml"
    toml.write_text(f'[experiment]\nname = "{name}"\n[model]\nbase = "{base}"\n[world]\nname = "empty"\n'
                    f'[sft]\nname = "counting"\n[feedback]\nname = "nothing"\n[reward_model]\nname = "stop"\n')
    return load_experiment(toml, host.registry)


def _run(tmp_path, name: str, echo=lambda s: None):
    host = get_plugin_manager(autoload=False, extra=[sys.modules[PLUGIN]])
    with pytest.raises(RuntimeError, match="stop after sft"):
        run_experiment(_experiment(tmp_path, name, host), host, tmp_path / "runs", show_progress=False, echo=echo)
    return tmp_path / "runs" / name / "sft"


def test_code_identity_hashes_source_that_no_wheel_installed(plugin):
    module = sys.modules[PLUGIN]
    before = code_identity([module.CountingStage])
    assert set(before) == {"harness", PLUGIN} and "source" in before[PLUGIN]
    assert "distribution" not in before[PLUGIN]  # on sys.path only: no distribution claims it
    after = code_identity([plugin('VERSION = "first"', 'VERSION = "second"').CountingStage])
    assert after["harness"] == before["harness"] and after[PLUGIN]["source"] != before[PLUGIN]["source"]
    assert describe_change(before, after) == [
        f"{PLUGIN}: source {before[PLUGIN]['source']} → {after[PLUGIN]['source']}"]


def test_code_identity_of_an_installed_package_is_its_version():
    import pluggy

    assert code_identity([pluggy.PluginManager])["pluggy"] == {"distribution": "pluggy", "version": pluggy.__version__}


def test_editing_a_plugin_retrains_its_stage_and_says_why(plugin, tmp_path):
    sft = _run(tmp_path, "edit")
    manifest = json.loads((sft / "manifest.json").read_text())
    assert manifest["status"] == "finished" and "source" in manifest["inputs"]["code"][PLUGIN]
    assert json.loads((sft / "ran.json").read_text()) == {"version": "first"}

    notes: list[str] = []
    _run(tmp_path, "edit", notes.append)  # same code: reused
    assert "· sft: reusing finished stage" in notes[0] and json.loads((sft / "manifest.json").read_text()) == manifest

    plugin('VERSION = "first"', 'VERSION = "second"')  # the author fixes a bug
    notes.clear()
    _run(tmp_path, "edit", notes.append)
    assert json.loads((sft / "ran.json").read_text()) == {"version": "second"}
    why = next(n for n in notes if n.startswith("! sft:"))
    assert f"code changed ({PLUGIN}: source" in why and "retraining" in why and ".stale" in why
    assert json.loads((sft / "manifest.json").read_text())["summary"] == {"version": "second"}


def test_a_plain_run_links_a_matching_stage_of_another_run_under_the_same_root(plugin, tmp_path):
    first = _run(tmp_path, "first")
    notes: list[str] = []
    second = _run(tmp_path, "second", notes.append)
    assert second.is_symlink() and second.resolve() == first.resolve()
    assert any("sft: reusing finished stage" in n for n in notes)
    plugin('VERSION = "first"', 'VERSION = "third"')  # different code: the other run's stage no longer matches
    third = _run(tmp_path, "third")
    assert not third.is_symlink() and json.loads((third / "ran.json").read_text()) == {"version": "third"}

