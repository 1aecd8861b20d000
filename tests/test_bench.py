"""bench/pipeline_profile.py: the profile a user runs to see where a pipeline's time goes (and its floor)."""
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
