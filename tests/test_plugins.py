"""The plugin system: factory-built managers, loud failures, blocking, entry points."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pluggy import PluginValidationError

from harness import hookimpl
from harness._core.contracts import StageContext
from harness._core.errors import HarnessError
from harness._core.plugins import get_plugin_manager
from tests.fakes import FakeComponent, FakePlugin, make_experiment, pip_install_into

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_plugin"


def host(*extra, builtins=(), plugins=()):
    return get_plugin_manager(plugins, builtins=builtins, extra=extra, autoload=False)


def test_each_call_builds_an_isolated_manager():
    a, b = host(FakePlugin()), host()
    assert "ppo" in a.registry.names("optimizer")
    assert b.registry.names("optimizer") == []


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_optimisers(self, register):
            pass

    with pytest.raises(PluginValidationError, match="register_optimisers"):
        host(Typo())


def test_duplicate_component_names_both_plugins():
    class Other:
        @hookimpl
        def register_optimizers(self, register):
            register("ppo", FakeComponent)

    with pytest.raises(HarnessError, match=r"optimizer 'ppo' is registered twice: by plugin .* and by plugin "):
        host(FakePlugin(), Other())


def test_block_a_builtin_with_p_no():
    loaded = host(builtins=("harness_builtins.rewards.gold",))
    assert loaded.registry.names("reward_source") == ["gold"]
    blocked = host(builtins=("harness_builtins.rewards.gold",), plugins=("no:gold",))
    assert blocked.registry.names("reward_source") == []
    with pytest.raises(HarnessError, match="part of the core"):
        host(plugins=("no:harness._core.core_hooks",))


def test_p_loads_a_module_and_reports_import_errors():
    loaded = host(plugins=("harness_builtins.rewards.gold",))
    assert "gold" in loaded.registry.names("reward_source")
    with pytest.raises(HarnessError, match="cannot import"):
        host(plugins=("no_such_module_xyz",))


def test_lifecycle_hooks_are_broadcast():
    seen = []

    class Recorder:
        @hookimpl
        def stage_finished(self, experiment, stage, stage_dir, summary):
            seen.append(("stage", stage, summary))

        @hookimpl
        def run_started(self, experiment, run_dir):
            seen.append(("start", run_dir))

        @hookimpl
        def run_finished(self, experiment, run_dir, results):
            seen.append(("end", results))

        @hookimpl
        def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
            seen.append(("metrics", step, metrics))

    h = host(Recorder())
    h.hook.run_started(experiment=None, run_dir="r")
    h.hook.metrics_logged(experiment=None, stage="s", stage_dir=Path("d"), metrics={"a": 1.0}, step=3)
    h.hook.stage_finished(experiment=None, stage="sft", stage_dir=Path("d"), summary={"x": 1})
    h.hook.run_finished(experiment=None, run_dir="r", results={"ok": True})
    assert [s[0] for s in seen] == ["start", "metrics", "stage", "end"]


def _ctx(h):
    return StageContext(experiment=make_experiment(), stage="policy", stage_dir=Path("."), world=None,
                        log=lambda m, s: None, hook=h.hook)


def test_optimizer_step_runs_through_wrappers_and_guards_nan():
    class Timer:
        @hookimpl(wrapper=True)
        def optimizer_step(self, experiment, stage, step, run_step):
            metrics = yield
            return {**metrics, "time/step_s": 0.0}

    ctx = _ctx(host(Timer()))
    assert ctx.step(1, lambda: {"loss": 1.0}) == {"loss": 1.0, "time/step_s": 0.0}
    with pytest.raises(HarnessError, match="non-finite metrics \\['loss'\\]"):
        ctx.step(2, lambda: {"loss": float("nan")})


def test_resolve_model_falls_back_to_path_or_hub_id(tmp_path):
    h = host()
    assert h.hook.resolve_model(base=str(tmp_path), experiment=None) == tmp_path
    assert h.hook.resolve_model(base="org/model", experiment=None) == "org/model"


def test_register_commands_adds_to_the_cli():
    import click

    from harness._core.cli import build_cli

    class Cmd:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(click.Command("hello", callback=lambda: click.echo("hi")))

    cli = build_cli(host(Cmd()))
    assert "hello" in cli.commands


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the out-of-tree example plugin into a private target directory."""
    return pip_install_into(tmp_path_factory.mktemp("site"), EXAMPLE)


@pytest.fixture
def harness_cli(installed_example, monkeypatch, capsys):
    """``harness ARGS`` as the console script runs it (``harness._core.cli.main``: plugins found by entry point
    unless blocked), in this process with the plugin's install directory on ``sys.path``, which is all a second
    Python with it on PYTHONPATH would add; returns (exit code, stdout, stderr)."""
    from harness._core.cli import main

    monkeypatch.syspath_prepend(str(installed_example))

    def run(args, **env):
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            with pytest.raises(SystemExit) as done:
                main(list(args))
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return run


def test_installed_plugin_is_found_through_its_entry_point(harness_cli):
    code, out, err = harness_cli(["plugins", "--json"])
    assert code == 0, err
    rows = json.loads(out)["components"]
    assert {"family": "reward_source", "name": "brevity", "plugin": "brevity"}.items() <= next(
        r for r in rows if r["name"] == "brevity").items()
    _, off, _ = harness_cli(["plugins", "--json"], HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "brevity" not in {r["name"] for r in json.loads(off)["components"]}


def test_installed_plugin_is_usable_by_name_from_toml(harness_cli, tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('[experiment]\nname = "x"\n[reward]\nname = "brevity"\n[reward.brevity]\ntarget_words = 5\n')
    code, out, err = harness_cli(["validate", str(exp), "--show"])
    assert code == 0, err
    assert '"brevity": {\n      "target_words": 5' in out
    code, _, err = harness_cli(["validate", str(exp), "-p", "no:brevity"])
    assert code == 2 and "unknown reward source 'brevity'" in err


def test_every_built_in_plugin_is_listed_under_its_own_name():
    from harness._core.plugins import DEFAULT_PLUGINS, _short_name

    names = [_short_name(m) for m in DEFAULT_PLUGINS]
    assert "embedded" in names and "plugin" not in names and len(set(names)) == len(names)
    h = get_plugin_manager(autoload=False)
    assert h.registry.get("world", "embedded").plugin == "embedded"


def test_optional_capabilities_are_protocols_the_built_ins_declare():
    import torch

    from harness._core.contracts import (ExplainingJudge, GradingJudge, Offloadable, SamplingOptimizer, WithDiagnostics,
                                         WithMemberScores)
    from harness_builtins.optimizers.best_of_n import BestOfN
    from harness_builtins.optimizers.ppo import PPO
    from harness_builtins.judges.pairwise_llm import LLMPairwiseJudge
    from harness_builtins.judges.scored import GoldJudge, RewardJudge
    from harness_builtins.judges.scoring_llm import LLMScoreJudge
    from harness._online.memory import reward_modules
    from harness_builtins.rewards.ensemble import EnsembleReward
    from harness_builtins.rewards.gold import GoldReward
    from harness_builtins.rewards.llm_judge import LLMJudgeReward

    assert all(issubclass(c, WithDiagnostics) for c in (EnsembleReward, LLMJudgeReward, LLMPairwiseJudge, LLMScoreJudge))
    assert not issubclass(GoldReward, WithDiagnostics) and not issubclass(RewardJudge, WithDiagnostics)
    assert issubclass(GoldJudge, ExplainingJudge) and not issubclass(RewardJudge, ExplainingJudge)
    assert isinstance(LLMScoreJudge.__new__(LLMScoreJudge), GradingJudge)
    assert issubclass(BestOfN, SamplingOptimizer) and not issubclass(PPO, SamplingOptimizer)
    assert not isinstance(LLMPairwiseJudge.__new__(LLMPairwiseJudge), GradingJudge)
    assert issubclass(EnsembleReward, WithMemberScores) and not issubclass(LLMJudgeReward, WithMemberScores)

    class Declared:
        def __init__(self):
            self.head, self.spare = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)

        def offloadable_modules(self):
            return [self.head]

    assert isinstance(Declared(), Offloadable)
    declared = Declared()
    assert reward_modules(declared) == [declared.head]  # what it declares, not every module it holds
