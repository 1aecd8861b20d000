"""The one error type a user can cause, so the CLI can print it without a traceback.

Bad TOML, an unknown plugin name, a missing model, a judge endpoint that is down:
all raise :class:`HarnessError` with a message that names the file/field and the fix.
"""
from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix; the CLI prints ``str(err)`` and exits with ``exit_code``."""

    exit_code = 1


class ConfigError(HarnessError):
    """An experiment file (or a ``--set`` override) that does not validate."""

    exit_code = 2
