"""The one error type a user can cause, so the CLI can print it without a traceback.

Bad TOML, an unknown plugin name, a missing model, a judge endpoint that is down:
all raise :class:`HarnessError` with a message that names the file/field and the fix.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class HarnessError(Exception):
    """A problem the user can fix; the CLI prints ``str(err)`` and exits with ``exit_code``."""

    exit_code = 1


class ConfigError(HarnessError):
    """An experiment file (or a ``--set`` override) that does not validate."""

    exit_code = 2


class UsageError(HarnessError):
    """How harness was started cannot work: a plugin that does not load, a run folder another run holds."""

    exit_code = 2


class CorruptFileError(HarnessError):
    """A file the harness wrote and reads back (manifest, results, checkpoint metadata) does not parse."""

    exit_code = 2

    def __init__(self, path, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path = path


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the running stage is marked ``interrupted`` and the CLI exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean `init_kl_coef`?)`` when ``word`` is close to one of ``choices``, else ``""``.

    A misspelt key, table or component name is the most common config error; the allowed list that
    follows in the message can be long, so the closest names (difflib's ratio ≥ 0.6) come first.
    """
    close = difflib.get_close_matches(str(word), list(choices), n=3) if isinstance(word, str) else []
    return f" (did you mean {' or '.join(f'`{c}`' for c in close)}?)" if close else ""
