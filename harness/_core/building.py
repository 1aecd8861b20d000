"""Components build components: a plugin builds another registered component by name, with options.

A reward source that wraps ``learned`` (a length penalty on top of the trained RM), an ensemble
of any sources, a judge made of another judge: each names what it wraps, and gets it the way the
runner builds a slot's component — looked up in the registry (unknown names list what is
available), its options validated by its own ``Options`` model (errors name the table and key).
Plugins reach it as ``ctx.build(family, name, options)`` on the :class:`~harness._core.contracts.StageContext`.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness._core.config import validate_options
from harness._core.errors import ConfigError, did_you_mean
from harness._core.registry import Registry
from harness._core.secrets import scrub


def build_component(registry: Registry, family: str, name: str, options: Mapping[str, Any] | None = None, *,
                    source: str = "<plugin>", seed: int | None = None) -> Any:
    """The component ``name`` of ``family`` built from ``options`` (a dict, as its TOML table would hold).

    ``source`` names the experiment file in errors; a world also gets ``seed``.
    """
    component = registry.get(family, name, where=f"{source}: a plugin built {family.replace('_', ' ')} {name!r}")
    validated = validate_options(component.options_model, options or {}, source, f"{family}.{name} (built by a plugin)",
                                 registry)
    return component.factory(validated, seed=seed) if family == "world" else component.factory(validated)


def validate_component_tables(data: Any, context: Mapping[str, Any] | None, *, family: str, selector: str,
                              default: str, fields: Mapping[str, Any]) -> Any:
    """Options that name a component of ``family`` and hold its options in a sub-table named after it.

    ``[evaluation.win_rate] judge = "llm"`` with ``[evaluation.win_rate.llm]``: call it from a
    ``model_validator(mode="before")`` with ``info.context``. When the config layer validates (the
    registry is in the context), the named component must be registered (else one error listing
    those that are), a key that is neither a field nor a registered name is an error, each
    component's sub-table is validated by its own ``Options`` (errors name ``[table.component]``)
    and replaced by the validated options, and a component whose options have required fields
    needs its table. Built directly in Python (no registry), ``data`` passes through unchanged.
    """
    registry = (context or {}).get("registry")
    if registry is None or not isinstance(data, Mapping):
        return data
    source, table = context.get("source", "<experiment>"), context.get("table", "?")
    names, name, out = registry.names(family), data.get(selector, default), dict(data)
    _check_registered(names, family, name, f"{source}: [{table}] {selector}")
    for key, value in data.items():
        if key in names and value is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: [{table}] {key} must be a table ([{table}.{key}]) of the "
                                  f"{family.replace('_', ' ')}'s options.")
            model = registry.get(family, key).options_model
            out[key] = validate_options(model, value, source, f"{table}.{key}", registry)
        elif key not in fields:
            allowed = [*fields, *(n for n in names if n not in fields)]
            raise ConfigError(f"{source}: [{table}] unknown key {key!r}{did_you_mean(key, allowed)}. Allowed keys: "
                              f"{', '.join(allowed)} (a {family.replace('_', ' ')}'s options go in [{table}.<name>]).")
    required = [k for k, f in registry.get(family, name).options_model.model_fields.items() if f.is_required()] \
        if isinstance(name, str) else []
    if required and out.get(name) is None:
        raise ConfigError(f"{source}: [{table}] {selector} = {name!r} needs an [{table}.{name}] table with at least "
                          f"{' and '.join(required)}.")
    return out


def validate_inline_component(data: Any, context: Mapping[str, Any] | None, *, family: str, selector: str,
                              default: str, fields: Mapping[str, Any]) -> Any:
    """Options that name a component of ``family`` and hold its options beside their own keys, in one table.

    ``[reward.llm_judge] judge = "llm_score"`` with the judge's ``base_url``, ``model``, … beside it: call it
    from a ``model_validator(mode="before")`` of a model with ``extra="allow"``. When the config layer
    validates, the named component must be registered, every key that is not one of ``fields`` is validated
    by the component's ``Options`` (errors name ``[table] key``) and replaced by the validated options, every
    default filled. Built directly in Python (no registry), ``data`` passes through unchanged.
    """
    registry = (context or {}).get("registry")
    name = data.get(selector, default) if isinstance(data, Mapping) else None
    if registry is None or not isinstance(name, str):
        return data
    source, table = context.get("source", "<experiment>"), context.get("table", "?")
    _check_registered(registry.names(family), family, name, f"{source}: [{table}] {selector}")
    model = registry.get(family, name).options_model
    unknown = [key for key in data if key not in fields and key not in model.model_fields]
    if unknown:
        allowed = [*fields, *(k for k in model.model_fields if k not in fields)]
        raise ConfigError(f"{source}: [{table}] unknown key {unknown[0]!r}{did_you_mean(unknown[0], allowed)}. "
                          f"Allowed keys: {', '.join(allowed)}.")
    inline = validate_options(model, {k: v for k, v in data.items() if k not in fields}, source, table, registry)
    return {k: v for k, v in data.items() if k in fields} | inline.model_dump()


def _check_registered(names: list[str], family: str, name: Any, where: str) -> None:
    if isinstance(name, str) and name not in names:
        raise ConfigError(f"{where} = {scrub(repr(name))}: no {family.replace('_', ' ')} of that name is registered"
                          f"{did_you_mean(name, names)}. "
                          f"Registered: {', '.join(names) or '(none)'} (a third-party one is installed with its package; "
                          f"see `harness plugins`).")
