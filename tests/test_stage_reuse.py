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


def _experiment(tmp_path, name: str, host, seed: int = 0):
    base = tmp_path / "base-model"
    base.mkdir(exist_ok=True)
    toml = tmp_path / f"{name}.toml"
    toml.write_text(f'[experiment]\nname = "{name}"\nseed = {seed}\n[model]\nbase = "{base}"\n[world]\nname = "empty"\n'
                    f'[sft]\nname = "counting"\n[feedback]\nname = "nothing"\n[reward_model]\nname = "stop"\n')
    return load_experiment(toml, host.registry)


def _run(tmp_path, name: str, echo=lambda s: None, seed: int = 0):
    host = get_plugin_manager(autoload=False, extra=[sys.modules[PLUGIN]])
    with pytest.raises(RuntimeError, match="stop after sft"):
        run_experiment(_experiment(tmp_path, name, host, seed), host, tmp_path / "runs", show_progress=False, echo=echo)
    return tmp_path / "runs" / name / "sft"


def test_code_identity_hashes_the_ast_of_source_that_no_wheel_installed(plugin):
    module = sys.modules[PLUGIN]
    before = code_identity([module.CountingStage])
    assert PLUGIN in before["modules"] and "harness._core.stage_driver" in before["modules"]  # the core drives every stage
    assert PLUGIN not in before["distributions"]  # on sys.path only: no distribution claims it
    after = code_identity([plugin('VERSION = "first"', 'VERSION = "second"').CountingStage])
    assert after["modules"][PLUGIN] != before["modules"][PLUGIN]
    assert describe_change(before, after) == [f"{PLUGIN} changed"]


def test_docstrings_comments_and_layout_change_no_identity(plugin):
    before = code_identity([sys.modules[PLUGIN].CountingStage])
    plugin('"""Writes which code version ran into the stage directory."""', '"""Reworded."""  # and a comment')
    after = code_identity([plugin('VERSION = "first"', 'VERSION  =  (\n    "first"\n)').CountingStage])
    assert after == before


def test_code_identity_of_an_installed_package_is_its_version():
    import pluggy

    identity = code_identity([pluggy.PluginManager])
    assert identity["distributions"]["pluggy"] == pluggy.__version__
    assert not any(m.startswith("pluggy") for m in identity["modules"])


def test_a_stage_depends_on_the_modules_its_components_import_and_no_others():
    from harness._core.plugins import get_plugin_manager

    registry = get_plugin_manager(autoload=False).registry
    closure = {name: set(code_identity([registry.get(family, name).factory])["modules"])
               for family, name in (("stage", "next_token"), ("feedback_format", "ranking"), ("stage", "bradley_terry"),
                                    ("optimizer", "ppo"), ("evaluator", "win_rate"))}
    ppo, win_rate = "harness_builtins.optimizers.ppo", "harness_builtins.evaluators.win_rate"
    assert ppo in closure["ppo"] and not any(ppo in closure[s] for s in closure if s != "ppo")
    assert win_rate in closure["win_rate"] and not any(win_rate in closure[s] for s in closure if s != "win_rate")
    toolkit = {m for m in closure["ppo"] if m.startswith("harness._online")}
    assert toolkit and not toolkit & (closure["next_token"] | closure["bradley_terry"] | closure["win_rate"])
    core = set.intersection(*closure.values())  # what every stage runs on: an edit there reruns everything
    assert {"harness._core.stage_driver", "harness._core.config", "harness._core.runstore"} <= core
    assert "harness._core.pipeline" not in core  # the run around the stages (results.json, the report) trains nothing
    assert "harness.api" not in core  # a re-exporting facade ties nothing: names are followed to their modules


def test_an_egg_info_on_sys_path_does_not_hide_an_edit(tmp_path, monkeypatch):
    """The repro: with a repository root on sys.path, importlib.metadata reads the in-tree egg-info, whose file
    list claimed every source file as installed, so an edit changed no identity and every stage was reused."""
    package = tmp_path / "eggy_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 1\n\n\ndef factory():\n    return VALUE\n")
    egg = tmp_path / "eggy_plugin.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: eggy-plugin\nVersion: 0.1\n")
    (egg / "SOURCES.txt").write_text("eggy_plugin/__init__.py\n")
    (egg / "top_level.txt").write_text("eggy_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("eggy_plugin")
    try:
        before = code_identity([module.factory])
        (package / "__init__.py").write_text("VALUE = 2\n\n\ndef factory():\n    return VALUE\n")
        after = code_identity([importlib.reload(module).factory])
        assert "eggy_plugin" in before["modules"] and after["modules"]["eggy_plugin"] != before["modules"]["eggy_plugin"]
    finally:
        sys.modules.pop("eggy_plugin", None)


def test_the_identity_is_the_same_however_python_was_started(tmp_path):
    """Installed (the editable install's finder) or from the repository root on PYTHONPATH: one identity."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import json; from harness._core.plugins import get_plugin_manager; "
              "from harness._core.provenance import code_identity; "
              "r = get_plugin_manager(autoload=False).registry; "
              "print(json.dumps(code_identity([r.get('optimizer', 'ppo').factory])))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    from_root = subprocess.run([sys.executable, "-c", script], cwd=root, env={**env, "PYTHONPATH": str(root)},
                               capture_output=True, text=True)
    assert installed.returncode == 0 and from_root.returncode == 0, installed.stderr + from_root.stderr
    assert json.loads(installed.stdout) == json.loads(from_root.stdout)


def test_editing_a_plugin_retrains_its_stage_and_says_why(plugin, tmp_path):
    sft = _run(tmp_path, "edit")
    manifest = json.loads((sft / "manifest.json").read_text())
    assert manifest["status"] == "finished" and PLUGIN in manifest["inputs"]["code"]["modules"]
    assert json.loads((sft / "ran.json").read_text()) == {"version": "first"}

    notes: list[str] = []
    _run(tmp_path, "edit", notes.append)  # same code: reused
    assert "· sft: reusing finished stage" in notes[0] and json.loads((sft / "manifest.json").read_text()) == manifest

    plugin('VERSION = "first"', 'VERSION = "second"')  # the author fixes a bug
    notes.clear()
    _run(tmp_path, "edit", notes.append)
    assert json.loads((sft / "ran.json").read_text()) == {"version": "second"}
    why = next(n for n in notes if n.startswith("! sft:"))
    assert f"code changed ({PLUGIN} changed)" in why and "retraining" in why and "stays in the store" in why
    assert json.loads((sft / "manifest.json").read_text())["summary"] == {"version": "second"}


def test_a_run_reads_every_stages_code_before_its_first_stage(plugin, tmp_path, monkeypatch):
    """A module is hashed once per import, when an identity first reads it; reading every stage's as the run starts
    means a file edited while SFT trains (the optimizer's, say) counts from the next run, not for this one's policy."""
    from harness._core import stage_driver

    reads: list[object] = []
    read, run_stage = stage_driver.code_identity, stage_driver.Run.stage
    monkeypatch.setattr(stage_driver, "code_identity", lambda factories: reads.append(factories) or read(factories))
    read_before: dict[str, int] = {}

    def stage(run, name, work, **kwargs):
        read_before.setdefault(name, len(reads))
        return run_stage(run, name, work, **kwargs)

    monkeypatch.setattr(stage_driver.Run, "stage", stage)
    _run(tmp_path, "early")
    assert read_before["sft"] == len(stage_driver.STAGE_INPUTS) == len(reads)


def test_a_plain_run_links_a_matching_stage_of_another_run_under_the_same_root(plugin, tmp_path):
    first = _run(tmp_path, "first")
    notes: list[str] = []
    second = _run(tmp_path, "second", notes.append)
    assert second.is_symlink() and second.resolve() == first.resolve()
    assert any("sft: reusing finished stage" in n for n in notes)
    plugin('VERSION = "first"', 'VERSION = "third"')  # different code: the other run's stage no longer matches
    third = _run(tmp_path, "third")
    assert third.resolve() != first.resolve() and json.loads((third / "ran.json").read_text()) == {"version": "third"}
    assert json.loads((first / "ran.json").read_text()) == {"version": "first"}  # the others keep theirs


def test_rerunning_one_experiment_with_a_changed_config_leaves_the_other_comparable(plugin, tmp_path):
    from harness._core.results import CONFIG, check_current, config_hash

    first, second = _run(tmp_path, "first"), _run(tmp_path, "second")
    hashes = {"sft": json.loads((second / "manifest.json").read_text())["config_hash"]}
    _run(tmp_path, "first", seed=7)  # the same experiment, another seed: a new SFT entry for it alone
    assert first.resolve() != second.resolve()
    config = json.loads((tmp_path / "runs" / "second" / CONFIG).read_text())
    assert check_current(tmp_path / "runs" / "second", {"stage_hashes": hashes, "config_hash": config_hash(config)}) is None
