"""bench/: the profile a user runs to see where a pipeline's time goes (and its floor), and the README's comparison block."""
from __future__ import annotations

import json
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
