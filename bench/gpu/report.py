"""The two reports of bench/gpu/check.sh: the machine it ran on, and the summary of every phase.

    python bench/gpu/report.py env OUT_DIR            # env.json: GPU, driver, torch/CUDA, package versions
    python bench/gpu/report.py summary OUT_DIR WORK   # summary.json: each phase's status + the headline figures

check.sh records one JSON line per phase in WORK/phases.jsonl (name, status, seconds, rc, note);
the summary adds the pytest counts (OUT/tests.xml), and the figures of the smoke run
(OUT/results.json), the memory bench (OUT/memory.json) and the PPO profile (OUT/profile.json)
that ``docs/scaling.md`` asks for. A figure whose phase did not run is left out, never guessed.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PACKAGES = ("torch", "transformers", "accelerate", "peft", "deepspeed", "trl", "datasets", "lm_eval", "pydantic",
            "pydantic_core", "tokenizers", "safetensors", "huggingface_hub", "numpy", "pandas", "pyarrow", "fsspec",
            "typing_extensions", "openai", "pluggy", "click", "triton")
OK = ("ok", "skipped-no-cuda", "skipped-no-wheels")


# --------------------------------------------------------------------------- env
def environment() -> dict:
    """What the figures depend on: GPU and driver, torch and its CUDA, every package the harness imports."""
    import torch

    env = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cuda": torch.cuda.is_available(),
           "dry": os.environ.get("GPU_CHECK_DRY") == "1", "packages": {}}
    for name in PACKAGES:
        try:
            env["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env["packages"][name] = None
    if env["cuda"]:
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30, "sms": props.multi_processor_count,
                "capability": [props.major, props.minor], "bf16": torch.cuda.is_bf16_supported(),
                "nvidia_smi": _nvidia_smi()}
    env["plugins"] = _plugins()
    return env


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _plugins() -> str:
    """Every built-in plugin imports (a missing wheel shows here, before any phase needs it)."""
    try:
        from harness._core.plugins import get_plugin_manager

        registry = get_plugin_manager(autoload=False).registry
        import harness_builtins.evaluators.lm_eval_tax  # noqa: F401 - lm-eval is imported lazily by the evaluator
        import deepspeed  # noqa: F401
        import lm_eval  # noqa: F401
        import trl  # noqa: F401

        return f"ok: {len(registry.names('optimizer'))} optimizers, {len(registry.names('evaluator'))} evaluators"
    except Exception as err:  # noqa: BLE001 - reported, and the phase fails on it
        return f"error: {type(err).__name__}: {err}"


# --------------------------------------------------------------------------- summary
def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_counts(path: Path) -> dict | None:
    """passed / failed / skipped of a pytest junit file, with the reason of each skip."""
    try:
        suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    cases = suite.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = {c.get("name"): c.find("skipped").get("message", "") for c in cases if c.find("skipped") is not None}
    return {"passed": len(cases) - len(failed) - len(skipped), "failed": failed, "skipped": skipped}


def figures(out: Path) -> dict:
    """The headline figures, from whichever phases wrote their files."""
    found: dict = {}
    results = read_json(out / "results.json")
    if results:
        train = results["policy"]["train"]
        found["smoke"] = {"stages_s": {k: v["wall_s"] for k, v in results["stages"].items()},
                          "wall_s": results["wall_s"], "ppo_steps": train["steps"],
                          "ppo_s_per_step": train["s_per_step"], "ppo_generation_share": train["generation_share"]}
    profile = read_json(out / "profile.json")
    if profile:
        p, g = profile["ppo"], profile["generation"]
        found["ppo_step"] = {k: p[k] for k in ("step_s", "generation_s", "scoring_s", "forwards_s", "update_s",
                                               "generation_tokens_per_s", "update_tokens_per_s", "generation_share")}
        found["ppo_step"] |= {"params": profile["params"], "batch_size": profile["batch_size"],
                              "new_tokens": profile["new_tokens"], "cuda_peak_mb": profile["cuda_peak_mb"]}
        found["static_cache"] = {name: {k: v[k] for k in ("s", "first_s", "speedup", "same_tokens")}
                                 for name, v in g.items() if isinstance(v, dict)} | {"compiled": g["compiled"]}
    memory = read_json(out / "memory.json")
    if memory:
        found["rl_memory"] = {"params": memory["params"], "ratio_lean_over_full": memory["ratio_lean_over_full"],
                              **{f"{name}_{k}": row[k] for name, row in memory["rows"].items()
                                 for k in ("cuda_peak_mb", "peak_rss_mb")}}
    return found


def summary(out: Path, work: Path) -> dict:
    phases = [json.loads(line) for line in (work / "phases.jsonl").read_text().splitlines() if line.strip()]
    env = read_json(out / "env.json") or {}
    tests = test_counts(out / "tests.xml")
    return {"ok": all(p["status"] in OK for p in phases), "dry": env.get("dry"), "cuda": env.get("cuda"),
            "gpu": env.get("gpu"), "phases": {p.pop("name"): p for p in phases}, "tests": tests,
            "figures": figures(out)}


def main() -> None:
    what, out = sys.argv[1], Path(sys.argv[2])
    if what == "env":
        env = environment()
        (out / "env.json").write_text(json.dumps(env, indent=2))
        print(json.dumps(env, indent=2))
        sys.exit(0 if env["plugins"].startswith("ok") else 1)
    report = summary(out, Path(sys.argv[3]))
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
