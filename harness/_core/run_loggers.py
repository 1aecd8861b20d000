"""The loggers of one run: built from ``[loggers]`` (:mod:`harness._core.loggers`) and registered as
plugins for that run only. The run's own report they may ask for is :mod:`harness._core.run_report`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def attached(experiment, host, main: bool) -> Iterator[list[Any]]:
    """The experiment's loggers, built from their options and registered as plugins while the block runs.

    Only the main process logs (the lifecycle hooks are rank 0's), so the others get none. A logger whose
    package is missing fails here, before the run writes anything."""
    registered: list[Any] = []
    try:
        for name in experiment.loggers.names if main else ():
            logger = host.registry.get("logger", name).factory(experiment.logger_options[name])
            host.pm.register(logger, name=f"logger {name!r} of run {experiment.name}/{experiment.variant}")
            registered.append(logger)
        host.pm.check_pending()  # a misspelt hook method of a logger fails loudly
        yield registered
    finally:
        for logger in registered:
            host.pm.unregister(logger)
