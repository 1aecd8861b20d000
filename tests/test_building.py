"""Components build components: a reward source that wraps another one, by name, with options."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import hookimpl
from harness._core.building import build_component
from harness._core.contracts import Prompt
from harness._core.errors import ConfigError
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


class Plugin:
    @hookimpl
    def register_reward_sources(self, register):
        register("length_penalized", LengthPenalized)


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
    reward = build_component(host.registry, "reward_source", "length_penalized", {"inner": "nope"})
    with pytest.raises(ConfigError, match=r"x.toml: a plugin built reward source 'nope'.*Available: .*gold.*learned"):
        reward.prepare(_ctx(host))


def test_a_built_components_options_are_validated_like_a_table(host):
    with pytest.raises(ConfigError, match=r"\[reward_source.length_penalized \(built by a plugin\)\] per_word = -1"):
        build_component(host.registry, "reward_source", "length_penalized", {"per_word": -1}, source="x.toml")
