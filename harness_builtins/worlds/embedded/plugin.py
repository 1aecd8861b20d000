"""Hook implementations of the embedded world: the world itself, its base models, ``harness world``."""
from __future__ import annotations

from harness.api import hookimpl

PREFIX = "embedded:"


@hookimpl
def register_worlds(register):
    from .world import EmbeddedWorld

    register("embedded", EmbeddedWorld)


def world_for(experiment):
    """The embedded world an experiment describes (its seed; its options when it uses this world)."""
    from .world import EmbeddedWorld

    if experiment is None:
        return EmbeddedWorld()
    options = experiment.world_options("embedded")
    if options is not None and not isinstance(options, EmbeddedWorld.Options):
        options = None  # another world's options under our name: keep the defaults
    return EmbeddedWorld(options, seed=experiment.seed)


@hookimpl
def resolve_model(base, experiment):
    """``embedded:<name>`` -> the cached (built on first use) model directory; anything else: not ours."""
    if not isinstance(base, str) or not base.startswith(PREFIX):
        return None
    return world_for(experiment).base_model(base[len(PREFIX):])


@hookimpl
def register_commands(cli):
    from .cli import world_group

    cli.add_command(world_group)
