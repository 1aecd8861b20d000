"""bench/gpu/: the wheel list covers what a GPU machine lacks, and check.sh's CPU dry run goes through every phase.

The GPU check itself only runs where a GPU is lent; its dry run (``GPU_CHECK_DRY=1``, tiny shapes,
fp32, on the CPU) runs here so the script cannot rot between GPU sessions (~3 minutes on 2 busy cores).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "bench" / "gpu" / "wheels.txt"
# What the GPU machine's Python already has, of our dependencies (/work/.library/device/KINDS.md).
GPU_IMAGE = {"torch", "transformers", "accelerate", "peft", "tokenizers", "pluggy", "click", "pandas", "matplotlib",
             "tqdm", "tensorboard", "scipy", "filelock"}
PHASES = ["install", "env", "tests", "model", "smoke", "memory", "profile"]
FINE = {"ok", "skipped-no-cuda", "skipped-no-wheels"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in WHEELS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(\s+# sdist)?", line.strip())
        assert match, f"wheels.txt: not 'name==version [# sdist]': {line!r}"
        name = canonical(match[1])
        assert name not in found, f"wheels.txt pins {name} twice: two versions stop the whole install"
        found[name] = match[2]
    return found


def test_the_wheel_list_pins_every_dependency_the_gpu_image_lacks_once():
    listed = pins()
    needed = {canonical(re.split(r"[<>=!~;\[ ]", d)[0]) for d in
              tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    missing = needed - set(listed) - GPU_IMAGE
    assert not missing, f"dependencies neither on the GPU image nor in wheels.txt: {sorted(missing)}"
    assert not GPU_IMAGE & set(listed), "wheels.txt carries a package the GPU image has (carry one only for a reason)"
    assert {"pydantic-core", "deepspeed", "lm-eval", "trl", "datasets"} <= set(listed)


@pytest.mark.slow
def test_the_dry_run_of_check_sh_goes_through_every_phase(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work"),
           "GPU_CHECK_BUDGET_S": "900"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu" / "check.sh"), str(out)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=1200)
    summary = json.loads((out / "summary.json").read_text())
    statuses = {name: phase["status"] for name, phase in summary["phases"].items()}
    assert list(statuses) == PHASES and set(statuses.values()) <= FINE, (statuses, done.stdout[-4000:])
    assert done.returncode == 0 and summary["ok"] and summary["dry"]
    assert summary["tests"]["failed"] == [] and summary["tests"]["passed"] + len(summary["tests"]["skipped"]) == 4
    assert json.loads((out / "results.json").read_text())["policy"]["train"]["steps"] == 2  # the pipeline finished
    figures = summary["figures"]
    assert {"smoke", "ppo_step", "static_cache", "rl_memory"} <= set(figures)
    assert 0 < figures["ppo_step"]["generation_share"] < 1 and figures["static_cache"]["static"]["s"] > 0
    assert figures["rl_memory"]["ratio_lean_over_full"]["peak_rss"] > 0
    assert len(list(out.iterdir())) <= 8 and (out / "check.log").read_text().count("=== summary") == 1
