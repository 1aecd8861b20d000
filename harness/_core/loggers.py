"""``[loggers]``: which loggers a run writes to, their options, and their life during one run.

A logger is a component (``register_loggers``) an experiment picks by name, its options in a
sub-table named after it, as evaluators are picked in ``[evaluation]``::

    [loggers]
    names = ["jsonl", "tensorboard", "wandb"]   # default: ["jsonl", "tensorboard"] (those registered)

    [loggers.wandb]
    project = "rlhf"

For each run the core builds the picked loggers from their options and registers each object as
a plugin for that run only (:mod:`harness._core.run_loggers`), so a logger is a handful of lifecycle hooks
(``run_started``, ``metrics_logged``, ``stage_finished``, ``report_written``, ``run_finished``,
``run_failed``) with its own state, and a comparison's variants each get fresh ones.

A logger's table never holds a credential: a tracker reads its key from the environment (W&B's
``WANDB_API_KEY``, MLflow's ``MLFLOW_TRACKING_TOKEN``), as the LLM judge does, because the config is
copied into the run directory and sent to the tracker itself. A key-named field, a key-shaped value or
a URL with a password in ``[loggers.<name>]`` is refused at validation, naming where it goes instead.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from pydantic import Field

from harness._core.errors import ConfigError, did_you_mean
from harness._core.options import Options
from harness._core.registry import Registry
from harness._core.secrets import is_secret_field, scrub
from harness._core.validation import validate_options

DEFAULT_LOGGERS = ("jsonl", "tensorboard")
_HEX_KEY = re.compile(r"\b[0-9a-f]{40,}\b")  # a classic W&B API key: 40 hex digits (no other config value looks so)
_URL_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")  # https://user:password@host


class LoggersTable(Options):
    """The ``[loggers]`` table (each logger's options live in ``[loggers.<name>]``)."""

    names: tuple[str, ...] = Field(DEFAULT_LOGGERS, description="Loggers the run writes its config, metrics and "
                                                                "results to (e.g. [\"jsonl\", \"tensorboard\", \"wandb\"]).")


def resolve_loggers(table: Mapping[str, Any], registry: Registry, source: str) -> tuple[LoggersTable, dict[str, Options]]:
    """``[loggers]`` and the options of each logger it names; every ``[loggers.<name>]`` present is checked, used or not."""
    table = dict(table)
    sub = {k: table.pop(k) for k in list(table) if isinstance(table[k], dict)}
    known = registry.names("logger")
    if "names" not in table:  # the default loggers that are registered: `-p no:tensorboard` leaves that one out
        table["names"] = [name for name in DEFAULT_LOGGERS if name in known]
    loggers = validate_options(LoggersTable, table, source, "loggers")
    for key, values in sub.items():
        if key not in known:
            raise ConfigError(f"{source}: [loggers.{key}] is not a registered logger{did_you_mean(key, known)}. "
                              f"Available: {', '.join(known)}.")
        refuse_credentials(values, source, f"loggers.{key}", registry.get("logger", key).factory)
    repeated = sorted({n for n in loggers.names if loggers.names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{source}: [loggers] names lists {', '.join(map(repr, repeated))} twice; list each logger once.")
    for key, values in sub.items():  # a typo in the table of a logger not (yet) enabled is found now too
        validate_options(registry.get("logger", key).options_model, values, source, f"loggers.{key}", registry)
    options = {}
    for name in loggers.names:
        model = registry.get("logger", name, where=f"{source}: [loggers] names").options_model
        options[name] = validate_options(model, sub.get(name, {}), source, f"loggers.{name}", registry)
    return loggers, options


def refuse_credentials(values: Any, source: str, table: str, factory: Any, key: str = "") -> None:
    """One ConfigError when a logger's table holds a credential (the value is never echoed).

    The logger class may name where its credential goes in a ``CREDENTIALS`` attribute (``"WANDB_API_KEY"``)."""
    if isinstance(values, dict):
        for k, v in values.items():
            refuse_credentials(v, source, table, factory, f"{key}.{k}" if key else str(k))
        return
    if isinstance(values, (list, tuple)):
        for v in values:
            refuse_credentials(v, source, table, factory, key)
        return
    field = key.rsplit(".", 1)[-1]
    if isinstance(values, str) and values and (is_secret_field(field) or scrub(values) != values
                                               or _HEX_KEY.search(values) or _URL_PASSWORD.search(values)):
        where = getattr(factory, "CREDENTIALS", "") or "the variable its documentation names"
        raise CredentialInConfig(f"{source}: [{table}] {key}: holds a credential (not shown), and a credential never goes in "
                          f"an experiment file (it is copied into the run directory and sent to the tracker): "
                          f"remove it and set it in the environment instead ({where}).")


class CredentialInConfig(ConfigError):
    """A logger's table holds a credential: the message never shows it, nor does the ``--set`` blamed for it."""
