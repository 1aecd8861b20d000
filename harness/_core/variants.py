"""The ``[compare]`` table: one experiment file, several variants that share their common stages.

Two ways to name variants, which may be combined:

* **axes** — a dotted key with a list of values; several axes form a grid (every combination)::

      [compare]
      optimizer.name = ["ppo", "a2c", "dpo"]
      "optimizer.ppo.init_kl_coef" = [0.1, 0.03, 0.01, 0.0]   # quoted: a β sweep

* **named variants** — a table of overrides per label (an empty table is the base config)::

      [compare.variants.ppo]
      [compare.variants.ppo-ptx]
      "optimizer.ppo.ptx_coef" = 1.0

Each variant is the base experiment with its overrides applied, validated like any experiment
before anything runs. The runner trains each variant in ``<run>/<label>/``; stages whose config
hash matches a finished stage of another variant (SFT and RM, when only the optimizer differs)
are shared rather than retrained.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any, Mapping

from harness._core.errors import ConfigError
from harness._core.names import RESERVED_LABELS, name_problem
from harness._core.tables import NotATable, set_dotted

Overrides = dict[str, Any]


def expand(compare: Mapping[str, Any], source: str) -> dict[str, Overrides]:
    """``[compare]`` → {label: {dotted.key: value}} in a stable order (grid first, then named variants)."""
    if not isinstance(compare, Mapping):
        raise ConfigError(f"{source}: [compare] must be a table, e.g. [compare] optimizer.name = [\"ppo\", \"dpo\"].")
    table = dict(compare)
    named = table.pop("variants", {})
    if not isinstance(named, Mapping):
        raise ConfigError(f"{source}: [compare] variants must be a table of tables: [compare.variants.<label>].")
    axes = _flatten(table, source, want_lists=True)
    variants: dict[str, Overrides] = {}
    if axes:
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            overrides = dict(zip(keys, combo))
            label = _label(overrides)
            _check_label(label, source, made=True)
            variants[label] = overrides
    for label, overrides in named.items():
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{source}: [compare.variants.{label}] must be a table of overrides.")
        _check_label(label, source)
        if label in variants:
            raise ConfigError(f"{source}: [compare] variant {label!r} is defined twice (axes and variants).")
        variants[label] = _flatten(overrides, source, want_lists=False, where=f"compare.variants.{label}")
    if len(variants) < 1:
        raise ConfigError(f"{source}: [compare] names no variants; give a list (optimizer.name = [\"ppo\", \"dpo\"]) "
                          "or [compare.variants.<label>] tables.")
    return variants


def apply(raw: Mapping[str, Any], overrides: Overrides) -> dict[str, Any]:
    """A deep copy of ``raw`` with every ``dotted.key = value`` set (tables created as needed)."""
    data = copy.deepcopy(dict(raw))
    for key, value in overrides.items():
        try:
            set_dotted(data, key.split("."), value)
        except NotATable as err:
            raise ConfigError(f"[compare] {key}: {err.args[0]!r} is a value, not a table, in the base experiment.") from None
    return data


# --------------------------------------------------------------------------- helpers
def _flatten(table: Mapping[str, Any], source: str, *, want_lists: bool, prefix: str = "",
             where: str = "compare") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, source, want_lists=want_lists, prefix=f"{path}.", where=where))
        elif want_lists:
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{source}: [{where}] {path} = {value!r}: expected a non-empty list of values "
                                  f"to compare, e.g. {path} = [{value!r}, …].")
            out[path] = value
        else:
            out[path] = value
    return out


def _label(overrides: Overrides) -> str:
    """``optimizer.name=ppo`` → ``ppo``; ``optimizer.ppo.init_kl_coef=0.1`` → ``init_kl_coef=0.1``; joined by ``,``."""
    parts = []
    for key, value in overrides.items():
        leaf = key.rsplit(".", 1)[-1]
        parts.append(str(value) if leaf == "name" else f"{leaf}={value}")
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", ",".join(parts))


def _check_label(label: str, source: str, made: bool = False) -> None:
    """A label names the variant's directory ``<output>/<experiment>/<label>/``: a name, not a path (see
    :mod:`harness._core.names`), and not one of the entries the comparison writes beside its variants."""
    shown = label[:40] + ("…" if len(label) > 40 else "")
    bare = label if re.fullmatch(r"[A-Za-z0-9_-]+", label) else json.dumps(shown, ensure_ascii=False)
    where = f"[compare] variant label {bare} (made from the axes' values)" if made else f"[compare.variants.{bare}]"
    fix = ("name the variants yourself with [compare.variants.<label>] tables" if made
           else "use letters, digits and _ . , = + - only")
    if not made and not re.fullmatch(r"[A-Za-z0-9_.,=+-]+", label):
        raise ConfigError(f"{source}: {where}: a variant label names a directory; {fix}.")
    problem = name_problem(label)
    if problem:
        raise ConfigError(f"{source}: {where}: the label {problem}; it names the variant's directory: {fix}.")
    if label in RESERVED_LABELS:
        raise ConfigError(f"{source}: {where}: the comparison writes its own {label} beside the variants; "
                          f"pick another label.")
