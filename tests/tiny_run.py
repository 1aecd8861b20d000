"""One uninterrupted tiny run that the fault tests compare against, and how they compare.

Training the tiny pipeline is the costly part of the fault tests; every module that needs a clean
reference run takes the session's one (``clean_tiny_run`` in conftest.py) and works on copies of it.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"
OVERRIDES = ["evaluation.evaluators=['rewards', 'win_rate']"]
TIMING = ("wall_s", "compute_s", "peak_rss_mib", "generation_s", "reward_s", "generation_share", "s_per_step",
          "seconds", "phase_s")


def result_values(results, path: str = "") -> dict[str, object]:
    """Flattened non-timing values of a results.json (and nothing that says whether a stage was reused or resumed)."""
    if isinstance(results, dict):
        return {k: v for key, value in results.items() if key not in ("stages", "resumed_from", *TIMING)
                for k, v in result_values(value, f"{path}.{key}").items()}
    if isinstance(results, list):
        return {k: v for i, item in enumerate(results) for k, v in result_values(item, f"{path}[{i}]").items()}
    return {path: results}
