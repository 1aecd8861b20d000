"""Operations on raw TOML tables (nested dicts) that config loading, ``[compare]`` and results share."""
from __future__ import annotations

from typing import Any, Sequence


class NotATable(ValueError):
    """A dotted path runs through a value; ``args[0]`` is the name of that key."""


def set_dotted(data: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    """``data[k0][k1]…[kn] = value``, creating tables on the way; NotATable if a key on the way holds a value."""
    *tables, leaf = keys
    node = data
    for key in tables:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise NotATable(key)
    node[leaf] = value


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Merge ``new`` into ``into`` in place: tables key by key (recursively), any other value replaces."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
