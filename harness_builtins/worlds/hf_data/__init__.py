"""World ``hf_data``: real RLHF data from Hugging Face datasets (a hub id, or local JSONL/Parquet).

Modules, one job each: ``options`` (the ``[world.hf_data]`` table and its column mappings),
``sources`` (reading a table with ``datasets``), ``transcripts`` (Anthropic HH dialogues),
``records`` (rows → Prompts, Demonstrations, feedback records), ``world`` (``HFDataWorld``).
This module holds the plugin's hook; it imports nothing heavy, so validating an experiment
never loads ``datasets`` nor touches the hub.
"""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def register_worlds(register):
    from .world import HFDataWorld

    register("hf_data", HFDataWorld)


@hookimpl
def check_experiment(experiment):
    """Local data files of ``[world.hf_data]``: exist, UTF-8, one JSON object per line, the mapped columns."""
    options = experiment.world_options("hf_data")
    if options is None:
        return None
    from .checks import check_world

    return check_world(options) or None
