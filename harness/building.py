"""Components build components: a plugin builds another registered component by name, with options.

A reward source that wraps ``learned`` (a length penalty on top of the trained RM), an ensemble
of any sources, a judge made of another judge: each names what it wraps, and gets it the way the
runner builds a slot's component — looked up in the registry (unknown names list what is
available), its options validated by its own ``Options`` model (errors name the table and key).
Plugins reach it as ``ctx.build(family, name, options)`` on the :class:`~harness.contracts.StageContext`.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness.config import validate_options
from harness.registry import Registry


def build_component(registry: Registry, family: str, name: str, options: Mapping[str, Any] | None = None, *,
                    source: str = "<plugin>", seed: int | None = None) -> Any:
    """The component ``name`` of ``family`` built from ``options`` (a dict, as its TOML table would hold).

    ``source`` names the experiment file in errors; a world also gets ``seed``.
    """
    component = registry.get(family, name, where=f"{source}: a plugin built {family.replace('_', ' ')} {name!r}")
    validated = validate_options(component.options_model, options or {}, source, f"{family}.{name} (built by a plugin)")
    return component.factory(validated, seed=seed) if family == "world" else component.factory(validated)
