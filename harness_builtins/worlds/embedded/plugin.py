"""Hook implementations of the embedded world: the world itself, its base models, ``harness world``."""
from __future__ import annotations

from harness.api import hookimpl

PREFIX = "embedded:"


@hookimpl
def register_worlds(register):
    from .world import EmbeddedWorld

    register("embedded", EmbeddedWorld)


@hookimpl
def resolve_model(base, experiment):
    """``embedded:<name>`` -> the cached (built on first use) model directory; anything else: not ours."""
    if not isinstance(base, str) or not base.startswith(PREFIX):
        return None
    from .world import world_for

    return world_for(experiment).base_model(base[len(PREFIX):])


@hookimpl
def register_commands(cli):
    from .cli import world_group

    cli.add_command(world_group)
