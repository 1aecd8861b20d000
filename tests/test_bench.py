"""bench/: the profile a user runs to see where a pipeline's time goes (and its floor), the README's comparison block,
and the install's compile step."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_profile_counts_each_stage_and_writes_its_table_between_the_markers(tmp_path, tiny_cache):
    doc = tmp_path / "performance.md"
    doc.write_text("# before\n<!-- profile:floor -->\nold\n<!-- /profile:floor -->\n# after\n")
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, "bench/pipeline_profile.py", "tests/data/tiny.toml", "--flops",
                           "--json", str(out), "--doc", str(doc), "--label", "floor", "--output", str(tmp_path / "runs")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"HARNESS_CACHE_DIR": tiny_cache, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    profile = json.loads(out.read_text())
    stages = profile["stages"]
    assert list(stages) == ["sft", "feedback", "reward_model", "policy", "evaluation"]
    for row in stages.values():  # the phases split the stage's wall time, nothing counted twice
        assert abs(sum(row["phases_s"].values()) - row["wall_s"]) < 1e-6 * max(1.0, row["wall_s"]) + 1e-3
    assert stages["sft"]["phases_s"]["backward"] > 0 and stages["policy"]["phases_s"]["generation"] > 0
    assert stages["sft"]["flops"] > 0 and stages["reward_model"]["flops"] > 0 and profile["machine"]["peak_flops"] > 0
    assert profile["total"]["flops"] == sum(row["flops"] for row in stages.values())
    text = doc.read_text()
    assert text.startswith("# before\n<!-- profile:floor -->\n| stage | GFLOP | floor s") and text.endswith("# after\n")
    assert "old" not in text and "--flops" in text and "| reward_model |" in text


def test_the_comparison_block_counts_a_shared_stage_once_and_names_its_seeds():
    """The README's comparison block says the compute the comparison cost: a stage two variants share (same
    hash) counts once, at the time it took to train."""
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT / "bench"))
    from comparison_block import block, stage_seconds

    def run(seed, optimizer, policy_s):
        return SimpleNamespace(path=Path(f"runs/x/seed-{seed}/{optimizer}"), results={
            "seed": seed, "stage_hashes": {"sft": f"s{seed}", "policy": f"{optimizer}{seed}"},
            "stages": {"sft": {"wall_s": 60.0, "reused": optimizer != "ppo"}, "policy": {"wall_s": policy_s}}})

    runs = {f"seed-{s}/{o}": run(s, o, t) for s in (0, 1) for o, t in (("ppo", 30.0), ("dpo", 6.0))}
    comparison = SimpleNamespace(runs=runs, path=Path("runs/x"), statistics="Ranking by win rate vs SFT\n1  ppo  0.6")
    seconds = stage_seconds(comparison)
    assert len(seconds) == 6 and sum(seconds.values()) == 2 * 60 + 2 * 30 + 2 * 6
    text = block("experiments/x.toml", comparison, seconds)
    assert text.startswith("```console\n$ harness run experiments/x.toml") and "1  ppo  0.6" in text
    assert "4 runs (2 variants × seeds 0, 1); 6 distinct stages, 3 min of stage time" in text


def test_the_install_step_writes_bytecode_even_where_the_environment_forbids_it(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "leaf.py").write_text("VALUE = 1\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "compile_imports.py"), "pkg.leaf", "pkg.absent"],
                          capture_output=True, text=True, env=env, check=True)
    assert "not installed: pkg.absent" in done.stdout
    assert list((package / "__pycache__").glob("leaf.*.pyc")), "no bytecode written for an imported module"
    # any later process, in the same environment, loads the module from that bytecode instead of compiling it
    later = subprocess.run([sys.executable, "-v", "-c", "import pkg.leaf"], capture_output=True, text=True, env=env,
                           check=True)
    assert re.search(r"code object from '[^']*pkg/__pycache__/leaf\.[^']*\.pyc'", later.stderr), later.stderr[-2000:]


def test_every_module_the_install_compiles_is_there_to_import():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import compile_imports
    finally:
        sys.path.remove(str(ROOT / "bench"))
    absent = [name for name in compile_imports.MODULES if importlib.util.find_spec(name) is None]
    assert not absent, f"bench/compile_imports.py names modules this install does not have: {absent}"


def test_starting_harness_leaves_out_the_packages_only_some_commands_use():
    # every process pays for what the CLI, harness.api and the plugins import at start: scipy's statistics
    # (seed comparisons), datasets (DPO, hf_data), lm-eval, DeepSpeed and trl load when a command uses them
    probe = ("import sys, harness.api, harness._core.cli, harness_builtins\n"
             "from harness._core.python_api import quiet_libraries\n"
             "quiet_libraries()\n"
             "print(sorted(m for m in ('scipy', 'datasets', 'pandas', 'lm_eval', 'deepspeed', 'trl') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout
