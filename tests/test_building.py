"""Components build components: a reward source that wraps another one, by name, with options."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import Field

from harness import hookimpl
from harness._core.building import build_component
from harness._core.contracts import Prompt, StageContext
from harness._core.config import load_experiment
from harness._core.errors import ConfigError
from harness._core.options import Options
from harness._core.plugins import get_plugin_manager
from tests.fakes import make_context


def _tutorial_module(name: str):
    """A module of the tutorial package (tests/tutorial_plugin), loaded from its file."""
    path = Path(__file__).resolve().parent / "tutorial_plugin" / "harness_tutorial" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LengthPenalized = _tutorial_module("length_penalized").LengthPenalized  # the tutorial's wrapping reward source


class ConstantOptions(Options):
    value: float = Field(1.0, description="The reward of every response.")


class Constant:
    """Every response scores ``value`` (an inner source whose option the wrapper must pass on)."""

    Options = ConstantOptions

    def __init__(self, options):
        self.options = options

    def prepare(self, ctx):
        """Nothing to load."""

    def score(self, prompts, responses):
        return torch.full((len(responses),), self.options.value)


class Plugin:
    @hookimpl
    def register_reward_sources(self, register):
        register("length_penalized", LengthPenalized)
        register("constant", Constant)


class Gold:
    def score(self, prompt, response):
        return 1.0 if "yes" in response else 0.0


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False, extra=[Plugin()])


def _ctx(host):
    world = SimpleNamespace(name="w", gold=lambda: Gold())
    return make_context("prepare", world=world, build=lambda family, name, options=None: build_component(
        host.registry, family, name, options, source="x.toml"))


def test_a_reward_source_wraps_a_built_in_by_name(host):
    reward = build_component(host.registry, "reward_source", "length_penalized", {"inner": "gold", "per_word": 0.25})
    reward.prepare(_ctx(host))
    prompt = Prompt("p", "qa", "?")
    assert reward.score([prompt, prompt], ["yes", "no no no no"]).tolist() == [0.75, -1.0]


def test_building_an_unknown_component_lists_what_is_available(host):
    # Built in Python (no registry to check ``inner`` against), the name fails when prepare builds it.
    reward = LengthPenalized(LengthPenalized.Options(inner="nope"))
    with pytest.raises(ConfigError, match=r"x.toml: a plugin built reward source 'nope'.*Available: .*gold.*learned"):
        reward.prepare(_ctx(host))


def test_a_built_components_options_are_validated_like_a_table(host):
    with pytest.raises(ConfigError, match=r"\[reward_source.length_penalized \(built by a plugin\)\] per_word = -1"):
        build_component(host.registry, "reward_source", "length_penalized", {"per_word": -1}, source="x.toml")


# ----------------------------------------------------------------- the wrapped source's options, inline
def test_the_inner_sources_options_sit_in_the_wrappers_table_and_reach_it(host):
    reward = build_component(host.registry, "reward_source", "length_penalized",
                             {"inner": "constant", "value": 2.0, "per_word": 0.5})
    assert reward.options.model_extra == {"value": 2.0}  # validated by Constant's Options, defaults filled
    reward.prepare(_ctx(host))
    prompt = Prompt("p", "qa", "?")
    assert reward.score([prompt, prompt], ["one", "one two three"]).tolist() == [1.5, 0.5]


def _experiment(tmp_path, table: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(f'[experiment]\nname = "t"\n\n[reward]\nname = "length_penalized"\n\n'
                    f'[reward.length_penalized]\n{table}\n')
    return path


def test_harness_validate_checks_the_inner_sources_options(host, tmp_path):
    exp = load_experiment(_experiment(tmp_path, 'inner = "learned"\nbatch_size = 8'), host.registry)
    assert exp.choice("reward").options.model_extra == {"batch_size": 8, "max_length": 256}
    with pytest.raises(ConfigError, match=r"exp.toml: \[reward.length_penalized\] batch_size = 0"):
        load_experiment(_experiment(tmp_path, 'inner = "learned"\nbatch_size = 0'), host.registry)
    with pytest.raises(ConfigError, match=r"\[reward.length_penalized\] unknown key 'batchsize' \(did you mean `batch_size`\?\). Allowed keys: inner, "
                                          r"per_word, batch_size, max_length"):
        load_experiment(_experiment(tmp_path, 'inner = "learned"\nbatchsize = 8'), host.registry)
    with pytest.raises(ConfigError, match=r"\[reward.length_penalized\] inner = 'nope': no reward source of that "
                                          r"name is registered. Registered: .*constant.*learned"):
        load_experiment(_experiment(tmp_path, 'inner = "nope"'), host.registry)
