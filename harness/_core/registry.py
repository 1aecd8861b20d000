"""Component registries filled by the registration hooks.

The core owns what every family shares: duplicate names (an error naming both plugins),
the "unknown name" error that lists what is available, and the listing ``harness plugins`` prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness._core.errors import ConfigError, HarnessError, UsageError, did_you_mean
from harness._core.options import NoOptions

# family name -> registration hook that fills it
FAMILIES = {
    "world": "register_worlds",
    "feedback_format": "register_feedback_formats",
    "reward_source": "register_reward_sources",
    "optimizer": "register_optimizers",
    "stage": "register_stages",
    "evaluator": "register_evaluators",
    "judge": "register_judges",
    "logger": "register_loggers",
}


@dataclass(frozen=True)
class Component:
    """A registered factory (usually a class with an ``Options`` model) and who provided it."""

    family: str
    name: str
    factory: Callable[..., Any]
    plugin: str

    @property
    def options_model(self):
        return getattr(self.factory, "Options", NoOptions)

    @property
    def description(self) -> str:
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry:
    """All components of one plugin manager, by family and name."""

    def __init__(self) -> None:
        self._by_family: dict[str, dict[str, Component]] = {f: {} for f in FAMILIES}

    def add(self, family: str, name: str, factory: Callable[..., Any], plugin: str) -> None:
        existing = self._by_family[family].get(name)
        if existing is not None:
            raise UsageError(
                f"{family} {name!r} is registered twice: by plugin {existing.plugin!r} and by plugin "
                f"{plugin!r}. Block one with `-p no:{plugin}` or rename it."
            )
        self._by_family[family][name] = Component(family, name, factory, plugin)

    def get(self, family: str, name: str, where: str = "") -> Component:
        self._family(family, where)
        try:
            return self._by_family[family][name]
        except KeyError:
            available = ", ".join(sorted(self._by_family[family])) or "(none)"
            place = f"{where}: " if where else ""
            raise ConfigError(
                f"{place}unknown {family.replace('_', ' ')} {name!r}{did_you_mean(name, self._by_family[family])}. "
                f"Available: {available}. "
                f"(A third-party one must be installed so its entry point in group 'harness' registers it; "
                f"see `harness plugins`.)"
            ) from None

    def names(self, family: str) -> list[str]:
        self._family(family)
        return sorted(self._by_family[family])

    def _family(self, family: str, where: str = "") -> None:
        """One error listing the families when ``family`` is none of them (a plugin's ``ctx.build("feedback", …)``)."""
        if family not in self._by_family:
            place = f"{where}: " if where else ""
            raise HarnessError(f"{place}no component family {family!r}{did_you_mean(family, self._by_family)}; "
                               f"the families are {', '.join(self._by_family)}.")

    def all(self) -> list[Component]:
        return [c for fam in FAMILIES for c in sorted(self._by_family[fam].values(), key=lambda c: c.name)]
