"""Judges are registered components: the win rate looks its judge up by name, a plugin's included."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import Field

from harness import hookimpl
from harness._core.building import build_component
from harness._core.cli import build_cli
from harness._core.config import load_experiment
from harness._core.contracts import EvalSamples, Options, Prompt
from harness._core.errors import ConfigError
from harness._core.plugins import get_plugin_manager
from tests.fakes import FakePlugin, make_context

BUILTINS = ("harness_builtins.judges.scored", "harness_builtins.judges.pairwise_llm", "harness_builtins.evaluators.win_rate")


class ShorterOptions(Options):
    margin: int = Field(0, ge=0, description="Characters by which the shorter must win; within it, a tie.")


class Shorter:
    """The shorter response wins."""

    Options = ShorterOptions
    name = "shorter"

    def __init__(self, options):
        self.options = options

    def bind(self, ctx):
        m = self.options.margin
        return lambda triples: [1.0 if len(a) + m < len(b) else 0.0 if len(b) + m < len(a) else 0.5
                                for _, a, b in triples]


class ShorterPlugin(FakePlugin):  # the fakes fill the other slots; the win rate is the real one
    @hookimpl
    def register_evaluators(self, register):
        register("rewards", FakePlugin)

    @hookimpl
    def register_judges(self, register):
        register("shorter", Shorter)


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(builtins=BUILTINS, extra=[ShorterPlugin()], autoload=False)


def _experiment(tmp_path, registry, win_rate: str):
    path = tmp_path / "exp.toml"
    path.write_text(f'[experiment]\nname = "j"\n[evaluation]\nevaluators = ["win_rate"]\n'
                    f'[evaluation.win_rate]\n{win_rate}\n')
    return load_experiment(path, registry)


def test_builtin_judges_are_registered_and_listed(host):
    assert host.registry.names("judge") == ["gold", "llm", "reward", "shorter"]
    listed = CliRunner().invoke(build_cli(host), ["plugins"]).output
    assert "judge" in listed and "shorter" in listed and "pairwise_llm" in listed


def test_an_unknown_judge_is_one_error_listing_the_registered(tmp_path, host):
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate\] judge = 'oracle': no judge of that name is "
                                          r"registered. Registered: gold, llm, reward, shorter"):
        _experiment(tmp_path, host.registry, 'judge = "oracle"')
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate\] unknown key 'oracle'. Allowed keys: judge, llm, gold"):
        _experiment(tmp_path, host.registry, 'judge = "gold"\n[evaluation.win_rate.oracle]\nx = 1')
    with pytest.raises(ConfigError, match=r"judge = 'gol': no judge of that name is registered \(did you mean `gold`\?\)"):
        _experiment(tmp_path, host.registry, 'judge = "gol"')
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate\] unknown key 'judg' \(did you mean `judge`\?\)"):
        _experiment(tmp_path, host.registry, 'judg = "gold"')
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate\] llm must be a table \(\[evaluation.win_rate.llm\]\)"):
        _experiment(tmp_path, host.registry, 'judge = "gold"\nllm = "gpt"')


def test_a_plugin_judge_decides_the_win_rate_with_its_own_options(tmp_path, host):
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate.shorter\] margin = -1"):
        _experiment(tmp_path, host.registry, 'judge = "shorter"\n[evaluation.win_rate.shorter]\nmargin = -1')
    exp = _experiment(tmp_path, host.registry, 'judge = "shorter"\n[evaluation.win_rate.shorter]\nmargin = 2')
    options = exp.evaluators["win_rate"]
    assert options.judge == "shorter" and options.model_extra["shorter"].margin == 2
    assert exp.to_dict()["evaluation"]["win_rate"]["shorter"] == {"margin": 2}
    evaluator = host.registry.get("evaluator", "win_rate").factory(options)
    prompts = tuple(Prompt(id=str(i), kind="k", text="q", answer=None) for i in range(3))
    samples = EvalSamples(prompts=prompts, policy=("ab", "abcdef", "abc"), sft=("abcdef", "ab", "abcd"), kl=(0.0,) * 3)
    ctx = make_context(build=lambda *a: build_component(host.registry, *a))
    result = evaluator.evaluate(ctx, samples)["win_rate_vs_sft"]
    assert result["judge"] == "shorter" and result["rate"] == pytest.approx(1.5 / 3) and result["ties"] == 1
    assert "decided_by" not in result and "judge_stats" not in result


def test_the_gold_judge_needs_no_table_and_the_llm_judge_does(tmp_path, host):
    assert _experiment(tmp_path, host.registry, 'judge = "gold"').evaluators["win_rate"].judge == "gold"
    assert build_component(host.registry, "judge", "reward").name == "reward"
    assert build_component(host.registry, "judge", "gold").options.verdict == "preference"  # table optional
    exp = _experiment(tmp_path, host.registry, 'judge = "gold"\n[evaluation.win_rate.gold]\nverdict = "decisive"')
    assert exp.evaluators["win_rate"].judge_options() == {"verdict": "decisive"}
    with pytest.raises(ConfigError, match="verdict"):
        _experiment(tmp_path, host.registry, 'judge = "gold"\n[evaluation.win_rate.gold]\nverdict = "sometimes"')
    with pytest.raises(ConfigError, match=r"judge = 'llm' needs an \[evaluation.win_rate.llm\] table with at least "
                                          r"base_url and model"):
        _experiment(tmp_path, host.registry, 'judge = "llm"')


def test_a_win_rate_interval_is_wilsons_for_verdicts_and_the_means_for_probabilities():
    from harness._core.stats import rate_interval, wilson_interval

    verdicts = [1.0] * 60 + [0.0] * 30 + [0.5] * 10
    assert rate_interval(verdicts) == wilson_interval(0.65, 100)
    # preferences near ½ vary far less than coin flips: their interval is much narrower than Wilson's
    preferences = [0.55, 0.6, 0.5, 0.65] * 25
    low, high = rate_interval(preferences)
    w_low, w_high = wilson_interval(0.575, 100)
    assert low < 0.575 < high and (high - low) < (w_high - w_low) / 3
    assert rate_interval([0.99] * 3 + [1.0]) [1] <= 1.0
