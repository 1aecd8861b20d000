"""What ``harness validate`` can check without training: local paths exist and parse.

The core checks ``[model] base``: a local model directory needs a config that parses and names a
``model_type`` this transformers knows, and weights (a ``*.safetensors`` file must be as long as its
header says: a truncated copy is found here, not as a traceback mid-run); a name
that looks like a path (``/…``, ``./…``, ``~/…``, two or more ``/``) but does not exist is
reported as a missing directory, not as a malformed hub id; a hub id is reported as such and,
under ``HF_HUB_OFFLINE=1``, must already be in the local cache (answered at once, no retries).
Plugins add their own checks through the ``check_experiment`` hook (the ``hf_data`` world
reads its local data files: UTF-8, one JSON object per line, the columns it needs, not empty).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from harness._core.errors import CorruptFileError
from harness._core.io import read_json

WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.safetensors.index.json", "*.bin.index.json")


def looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with slashes, or a leading ./ ~ /, is a path."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") >= 2 or "\\" in name


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def in_local_cache(name: str) -> bool:
    """Whether hub id ``name`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def _offline_miss(name: str, where: str) -> str:
    return (f"{where} = {name!r}: a hub id that is not in the local cache, and HF_HUB_OFFLINE is set; "
            f"download it first (or unset HF_HUB_OFFLINE), or give a local directory.")


def model_dir_problem(path: Path, where: str) -> str | None:
    """Why a local directory is not a model ``from_pretrained`` can load, or None."""
    if not path.exists():
        return f"{where} = {str(path)!r}: no such directory; give a directory saved with save_pretrained, a hub id, or 'embedded:<name>'."
    if not path.is_dir():
        return f"{where} = {str(path)!r}: a file, not a model directory (saved with save_pretrained)."
    if not (path / "config.json").is_file():
        return f"{where} = {str(path)!r}: no config.json in it; save the model with save_pretrained."
    if not any(next(path.glob(pattern), None) for pattern in WEIGHTS) and not (path / "adapter_config.json").is_file():
        return f"{where} = {str(path)!r}: no weights (*.safetensors or *.bin) in it; save the model with save_pretrained."
    weights = sorted(path.glob("*.safetensors"))
    problem = config_problem(path / "config.json") or next(filter(None, map(safetensors_problem, weights)), None)
    return f"{where} = {str(path)!r}: {problem}." if problem else None


def config_problem(path: Path) -> str | None:
    """Why a model's ``config.json`` would not load (does not parse, or names an unknown ``model_type``), or None."""
    try:
        config = read_json(path, fix="")
    except CorruptFileError as err:
        return f"config.json: {str(err).removeprefix(f'{path}: ').rstrip('; ')}; save the model again with save_pretrained"
    model_type = config.get("model_type")
    if model_type is None:
        return None  # an adapter's or a custom model's config: from_pretrained decides
    from transformers import __version__
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        return (f"config.json: model_type {model_type!r} is not a model type transformers {__version__} knows; "
                f"fix config.json, or install a transformers that has it")
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why a ``*.safetensors`` file is damaged (shorter or longer than its header says, header unreadable), or None.

    The format is an 8-byte little-endian header length, a JSON header whose ``data_offsets`` locate every
    tensor in the data that follows; reading the header costs nothing, loading the weights would.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length)) if 8 + length <= size else None
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0) if header else 0
    except (struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"{path.name}: not a safetensors file (its header does not parse); copy or save the model again"
    if header is None or 8 + length + end != size:
        expected = 8 + length + end if header else "more"
        return (f"{path.name}: {size} bytes, but its header says {expected} (truncated or damaged); "
                f"copy or save the model again")
    return None


def check_model_name(name: str, where: str) -> tuple[str | None, str | None]:
    """(problem, note) for a model name that no world claimed: a local directory or a hub id."""
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        return model_dir_problem(path, where), None
    if hub_offline():
        if not in_local_cache(name):
            return _offline_miss(name, where), None
        return None, f"{where} = {name!r}: hub id, found in the local cache"
    return None, f"{where} = {name!r}: hub id, not checked here (a run downloads it)"


def hub_model_problem(name: str, where: str, timeout_s: float = 10.0) -> str | None:
    """Why hub id ``name`` cannot be downloaded from here, asked once with a short timeout, or None.

    Without this, ``from_pretrained`` on an unreachable hub retries for most of a minute and then
    fails in a traceback; a model already in the local cache needs no network at all.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    if in_local_cache(name):
        return None
    if hub_offline():
        return _offline_miss(name, where)
    try:
        HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).model_info(name, timeout=timeout_s)
    except RepositoryNotFoundError:
        return f"{where} = {name!r}: no such model on the hub (or it is private: log in with `hf auth login`)."
    except Exception as err:  # noqa: BLE001 - any transport failure means the same thing to the user
        if "connect" in type(err).__name__.lower() or "timeout" in type(err).__name__.lower() or isinstance(err, OSError):
            return (f"{where} = {name!r}: the hub is unreachable from this machine ({type(err).__name__}); "
                    f"download the model where there is a network and give its directory, or set HF_HUB_OFFLINE=1 "
                    f"to use the local cache.")
    return None
