"""Building the plugin manager: built-ins and third-party plugins take the same path.

Built-ins are the modules in ``DEFAULT_PLUGINS``; third-party plugins are entry points in the
group ``harness``. Both are registered by :func:`get_plugin_manager`, a factory (never run at
import time) so every test can build an isolated manager.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Iterable

import pluggy

from harness._core import core_hooks, hookspecs
from harness._core.errors import UsageError
from harness._core.registry import FAMILIES, Registry

ENTRY_POINT_GROUP = "harness"
DISABLE_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"

# The core's own fallbacks (model resolution, the optimizer step and its NaN guard); always registered. Imported
# by name (not only by string) so that, run in every stage, they are in every stage's code identity.
CORE_PLUGIN = core_hooks.__name__
DEFAULT_PLUGINS: tuple[str, ...] = (
    "harness_builtins.loggers.jsonl",
    "harness_builtins.loggers.tensorboard",
    "harness_builtins.loggers.wandb",
    "harness_builtins.loggers.mlflow",
    "harness_builtins.worlds.embedded.plugin",
    "harness_builtins.worlds.hf_data",
    "harness_builtins.feedback.pairwise",
    "harness_builtins.feedback.ranking",
    "harness_builtins.feedback.likert",
    "harness_builtins.stages.sft",
    "harness_builtins.stages.reward_model",
    "harness_builtins.rewards.learned",
    "harness_builtins.rewards.ensemble",
    "harness_builtins.rewards.gold",
    "harness_builtins.rewards.llm_judge",
    "harness_builtins.judges.scored",
    "harness_builtins.judges.pairwise_llm",
    "harness_builtins.judges.scoring_llm",
    "harness_builtins.optimizers.ppo",
    "harness_builtins.optimizers.a2c",
    "harness_builtins.optimizers.dpo",
    "harness_builtins.optimizers.grpo",
    "harness_builtins.optimizers.rloo",
    "harness_builtins.optimizers.best_of_n",
    "harness_builtins.evaluators.rewards",
    "harness_builtins.evaluators.win_rate",
    "harness_builtins.evaluators.lm_eval_tax",
    "harness_builtins.evaluators.overoptimization",
    "harness_builtins.evaluators.diversity",
)


@dataclass
class PluginHost:
    """A plugin manager with its component registry filled."""

    pm: pluggy.PluginManager
    registry: Registry

    @property
    def hook(self):
        return self.pm.hook


def _short_name(module_name: str) -> str:
    """``harness_builtins.optimizers.ppo`` -> ``ppo``: the name ``-p no:ppo`` blocks and ``harness plugins`` lists.

    A plugin that is a package's ``plugin`` module is named for its package
    (``harness_builtins.worlds.embedded.plugin`` -> ``embedded``), so every listed name is the plugin's own.
    """
    if not module_name.startswith("harness_builtins."):
        return module_name
    parts = module_name.split(".")
    return parts[-2] if parts[-1] == "plugin" else parts[-1]


def parse_plugin_args(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``-p`` values into (modules to load, names to block)."""
    load, block = [], []
    for arg in args:
        (block if arg.startswith("no:") else load).append(arg.removeprefix("no:"))
    return load, block


def get_plugin_manager(
    plugins: Iterable[str] = (),
    *,
    autoload: bool | None = None,
    builtins: Iterable[str] = DEFAULT_PLUGINS,
    extra: Iterable[object] = (),
) -> PluginHost:
    """Build a fresh manager: specs, built-ins, entry points, ``-p`` modules; then fill the registry.

    ``plugins`` are ``-p`` values: a module path to load, or ``no:NAME`` to block a built-in
    (by its short name, ``no:ppo``) or an entry point (by its entry-point name). ``builtins`` and
    ``extra`` (plugin objects) let tests build a manager with exactly the plugins they need.
    """
    load, block = parse_plugin_args(plugins)
    blocked = set(block)
    if CORE_PLUGIN in blocked:
        raise UsageError(f"plugin {CORE_PLUGIN!r} is part of the core and cannot be blocked.")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    for module_name in (CORE_PLUGIN, *builtins):
        short = _short_name(module_name)
        if short in blocked or module_name in blocked:
            continue
        pm.register(importlib.import_module(module_name), name=short)
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
    if autoload:
        _load_entry_points(pm, blocked)
    for plugin in extra:
        pm.register(plugin)
    for module_name in load:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(f"-p {module_name}: cannot import it ({err}).") from None
        except Exception as err:  # noqa: BLE001 - the plugin's own bug, said in one line with where it is
            raise UsageError(f"-p {module_name}: importing it failed: {type(err).__name__}: {err}{_where(err)}. "
                             f"Fix the plugin, or leave out -p {module_name}.") from None
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
    pm.check_pending()
    return PluginHost(pm, _fill_registry(pm))


def _load_entry_points(pm: pluggy.PluginManager, blocked: set[str]) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as err:  # a broken third-party package must say who it is
            raise UsageError(
                f"plugin {ep.name!r} (entry point {ep.value!r} in group 'harness') failed to load: {err}. "
                f"Fix or uninstall it, or block it with `-p no:{ep.name}` / {DISABLE_AUTOLOAD_ENV}=1."
            ) from err
        pm.register(plugin, name=ep.name)


def _where(err: BaseException) -> str:
    """`` (at file.py:12)``: the innermost frame of a plugin's import error."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _fill_registry(pm: pluggy.PluginManager) -> Registry:
    registry = Registry()
    for family, hook_name in FAMILIES.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            def register(name, factory, _family=family, _plugin=impl.plugin_name):
                registry.add(_family, name, factory, _plugin)

            impl.function(register=register)
    return registry


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of every registered plugin (for ``harness plugins``)."""
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is not None)
