"""Running the validation: one comparison per seed, the per-seed measurements, the table on disk.

Kept apart from :mod:`validation` (which only turns measurements into rows) so the rows can be
tested on hand-made results without training anything.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.api import atomic_write_json, atomic_write_text

from .validation import ANNOTATION_FILE, SFT_VS_BASE_FILE, build_rows, cached, render, seeds_note, sft_vs_base


def machine() -> dict[str, Any]:
    """What the numbers ran on (they are bit-identical only on the same machine and library versions)."""
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def model_identity(path: Path) -> str:
    """What a cached measurement of a model is keyed by: its weights' sha256 (its path when it has none)."""
    from .model import file_sha256

    weights = Path(path) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else str(path)


def run_seed(host, experiment_file: str, seed: int, output: str, overrides: Sequence[str], *,
             show_progress: bool, echo: Callable[[str], None]) -> dict[str, Any]:
    """Train and evaluate every variant of one seed (resuming what finished), then its extra measurements."""
    from harness.api import load_experiment
    from harness.api import run_experiment

    from .stats import annotation_stats
    from .world import world_for

    name = f"world-validation-s{seed}"
    experiment = load_experiment(experiment_file, host.registry,
                                 [f"experiment.seed={seed}", f"experiment.name={name}", *overrides])
    if not experiment.variants:
        from harness.api import HarnessError

        raise HarnessError(f"{experiment_file}: the validation needs a [compare] experiment whose variants are named "
                           f"like experiments/world-validation.toml's (ppo, ppo-gold, ppo-small-beta, dpo, a2c, ppo-ptx).")
    echo(f"══ seed {seed}: {Path(output) / name}")
    summary = run_experiment(experiment, host, output, show_progress=show_progress, echo=echo)
    root = Path(output) / name
    world = world_for(experiment)
    finished = next(iter(summary["variants"]), None)  # any finished variant: they share one SFT model
    measured: dict[str, Any] = {"seed": seed, "design": world.options.design, "variants": summary["variants"],
                                "failed": summary.get("failed", {})}
    world_key = {"seed": seed, "world": world.options.model_dump(mode="json")}
    measured["annotation"] = cached(root / ANNOTATION_FILE, world_key | {"n_pairs": 2000},
                                    lambda: annotation_stats(world, n_pairs=2000))
    if finished is not None:
        sft_dir = root / finished / "sft" / "model"
        base_dir = world.base_model(str(experiment.model.base).removeprefix("embedded:"))
        options = experiment.evaluation
        key = world_key | {"sft": model_identity(sft_dir), "base": model_identity(base_dir), "prompts": options.prompts,
                           "max_new_tokens": options.max_new_tokens}
        measured["sft_vs_base"] = cached(root / SFT_VS_BASE_FILE, key, lambda: sft_vs_base(
            world, sft_dir, base_dir, options.prompts, seed, options.max_new_tokens))
    return measured


def validate(host, experiment_file: str, seeds: Sequence[int], output: str, overrides: Sequence[str] = (), *,
             show_progress: bool = True, echo: Callable[[str], None] = print) -> str:
    """Every seed, then rows V1–V9; writes ``validation.md`` and ``validation.json`` under ``output``."""
    start = time.perf_counter()
    measured = [run_seed(host, experiment_file, s, output, overrides, show_progress=show_progress, echo=echo)
                for s in seeds]
    rows = build_rows(measured)
    table = render(rows, seeds)
    designs = sorted({m["design"] for m in measured})
    info = machine() | {"seeds": list(seeds), "designs": designs, "wall_s": time.perf_counter() - start}
    header = (f"World validation, design {', '.join(map(str, designs))}, seeds {', '.join(map(str, seeds))}; "
              f"{info['cpus']} CPUs, {info['processor']}, torch {info['torch']}, Python {info['python']}. "
              f"{seeds_note(seeds)}")
    out = Path(output) / "world-validation"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "validation.md", header + "\n\n" + table + "\n")
    atomic_write_json(out / "validation.json", {"machine": info, "rows": [r.__dict__ | {"ok": r.ok} for r in rows],
                                                "seeds": measured})
    return header + "\n\n" + table


BEGIN, END = "<!-- world-validation:begin -->", "<!-- world-validation:end -->"


def write_between_markers(path: str | Path, table: str) -> None:
    """Replace what stands between the world-validation markers of ``path`` with ``table`` (atomically)."""
    from harness.api import HarnessError

    text = Path(path).read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise HarnessError(f"{path}: no '{BEGIN}' … '{END}' markers to write the validation table between; add them.")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(Path(path), f"{head}{BEGIN}\n{table}\n{END}{tail}")
