"""The short table ``harness run`` prints at the end: what it measured, with intervals.

The stages' rows are the core's (SFT and reward-model summaries); every evaluator's numbers come
from the cells it declared (``results["headline"]``, see :class:`harness._core.contracts.Cell`), so a
third-party evaluator shows here exactly as a built-in does.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from harness._core.contracts import Cell

CELL_FIELDS = {f.name for f in dataclasses.fields(Cell)} - {"per_prompt"}  # shown cells need not carry (or check) them


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "—"


def cell_of(data: Mapping[str, Any]) -> Cell:
    """A headline cell as results.json stores it (a dict with its evaluator's name) back as a :class:`Cell`."""
    return Cell(**{k: v for k, v in data.items() if k in CELL_FIELDS})


def components_line(results: Mapping[str, Any]) -> str:
    """``world embedded · feedback ranking · reward learned · optimizer ppo``: the component of every slot."""
    return " · ".join(f"{slot} {name}" for slot, name in results.get("components", {}).items())


def format_summary(results: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers of one run's ``results.json``."""
    sft, rm = results.get("sft", {}), results.get("rm", {})
    rows = [
        ("Components", components_line(results) or "—"),
        ("SFT gold score (base → SFT)", f"{_num(sft.get('base_gold_score'))} → {_num(sft.get('gold_score'))}"),
        ("RM held-out accuracy (annotators / gold)", f"{_num(rm.get('accuracy'))} / {_num(rm.get('gold_accuracy'))}"),
    ]
    for data in results.get("headline", []):
        cell = cell_of(data)
        label = cell.name[:1].upper() + cell.name[1:] + (f" ({cell.note})" if cell.note else "")
        rows.append((label, cell.render()))
    stages = results.get("stages", {})
    times = ", ".join(f"{k} {_num(v.get('wall_s'), '.0f')}s{' (reused)' if v.get('reused') else ''}" for k, v in stages.items())
    rows += [("Wall time", f"{_num(results.get('wall_s'), '.0f')} s ({times})"),
             ("Peak RSS", f"{_num(results.get('peak_rss_mib'), '.0f')} MiB")]
    width = max(len(k) for k, _ in rows)
    seed = f", seed {results['seed']}" if isinstance(results.get("seed"), int) else ""
    title = f"harness results: {results.get('experiment')} ({results.get('components', {}).get('optimizer', '?')}{seed})"
    return "\n".join([title, "-" * len(title), *(f"{k:<{width}}  {v}" for k, v in rows)])
