"""What can be checked before any training: ``harness validate`` runs it, and so does ``harness run`` first.

A run that trains SFT and the reward model and then fails at evaluation because a key is not
exported has wasted its time; one whose batch cannot fit in memory ends in the kernel's OOM kill,
with no word at all. So, over the tables this experiment (and each of its variants) will use:

- every ``api_key_env`` (the convention every LLM judge follows: the NAME of the variable holding
  the key) names a variable that is set;
- every ``…batch_size`` fits a rough memory estimate: at least 4 KiB per token (fp32 activations or
  logits of even a tiny model) × the table's token length (``max_new_tokens``, ``max_length`` …; 1 if it
  has none) × the batch size, against the memory this machine has free: a refusal above it, a warning
  above half of it. It is a floor, so a batch it refuses cannot fit;
- every plugin's ``check_experiment`` problems (local model directories and data files).

A table of a component that is not in use (``[evaluation.win_rate.llm]`` while ``judge = "gold"``) is
not checked: a sub-table named after a registered component counts only when a sibling value names it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from harness._core.errors import ConfigError
from harness._core.registry import FAMILIES, Registry

BYTES_PER_TOKEN = 4096
TOKEN_FIELDS = ("max_new_tokens", "max_length", "max_seq_length", "max_seq_len", "max_prompt_length")


def preflight(experiment, host) -> list[str]:
    """Raise one :class:`ConfigError` (the first problem, and how many more) for the experiment and each of its
    variants; return the warnings (a batch above half the free memory) for the caller to print."""
    problems, warnings = [], []
    for exp in (experiment, *experiment.variants.values()):
        problems += [p for found in host.hook.check_experiment(experiment=exp) for p in found or ()]
        tables = list(used_tables(exp, host.registry))
        problems += unset_keys(exp.source, tables)
        refused, warned = memory_problems(exp.source, tables, free_memory())
        problems += refused
        warnings += [w for w in warned if w not in warnings]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); fix this one and validate again)"
        raise ConfigError(problems[0] + (more if len(problems) > 1 else ""))
    return warnings


def used_tables(experiment, registry: Registry) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted table, values) of every options table the experiment uses, nested ones included."""
    data = experiment.to_dict()
    for slot, choice in experiment.slots.items():
        yield from _walk(f"{slot}.{choice.name}", data[slot][choice.name], registry)
    evaluation = data["evaluation"]
    yield "evaluation", {k: v for k, v in evaluation.items() if k not in experiment.evaluators}
    for name in experiment.evaluators:
        yield from _walk(f"evaluation.{name}", evaluation[name], registry)


def _walk(where: str, table: Any, registry: Registry) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(table, list):
        for i, item in enumerate(table):
            yield from _walk(f"{where}[{i}]", item, registry)
        return
    if not isinstance(table, Mapping):
        return
    yield where, table
    chosen = {v for v in table.values() if isinstance(v, str)}
    for key, value in table.items():
        if isinstance(value, (Mapping, list)) and not _unchosen(str(key), chosen, registry):
            yield from _walk(f"{where}.{key}", value, registry)


def _unchosen(key: str, chosen: set[str], registry: Registry) -> bool:
    """A sub-table named after a component of a family whose chosen member (a sibling value) is another one."""
    for family in FAMILIES:
        names = registry.names(family)
        if key in names and chosen & set(names) and key not in chosen:
            return True
    return False


def unset_keys(source: str, tables: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One line per ``api_key_env`` naming a variable that is not set (or empty)."""
    return [f"{source}: [{where}] api_key_env = {name!r}: the environment variable {name} is not set; export it "
            f"with the API key before the run (export {name}=…), or set api_key_env = \"\" for an endpoint "
            f"that needs none."
            for where, table in tables
            if isinstance(name := table.get("api_key_env"), str) and name and not os.environ.get(name)]


def memory_problems(source: str, tables: list[tuple[str, Mapping[str, Any]]],
                    free: int | None) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for batch sizes whose memory floor exceeds all, or half, of ``free`` bytes."""
    refused, warned = [], []
    if not free:
        return refused, warned
    for where, table in tables:
        tokens = max([v for k, v in table.items() if k in TOKEN_FIELDS and isinstance(v, int)] or [1])
        for key, size in table.items():
            if not key.endswith("batch_size") or not isinstance(size, int) or isinstance(size, bool):
                continue
            need = size * tokens * BYTES_PER_TOKEN
            line = (f"{source}: [{where}] {key} = {size}: one batch needs at least {_size(need)} ({size} × {tokens} "
                    f"tokens × {BYTES_PER_TOKEN // 1024} KiB), and this machine has {_size(free)} free")
            if need > free:
                refused.append(f"{line}; lower {key}.")
            elif need > free / 2:
                warned.append(f"{line}; the run may be killed for memory.")
    return refused, warned


def free_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil, else /proc/meminfo's MemAvailable), None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
