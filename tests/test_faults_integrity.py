"""Fault injection, end to end (issue 26, rows 3–6): damaged stage files, a damaged checkpoint, a diverged
stage, a full disk. Each ends in one clear line, exit 1 for a failed run, and nothing lost or silently
wrong: a repaired run reproduces every number of the clean run. One clean run is shared by the module;
each test works on a copy of it. (The same rows unit by unit: tests/test_integrity.py.)"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness._core.cli import build_cli
from harness._core.config import load_experiment
from harness._core.errors import HarnessError
from harness._core.integrity import damaged
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment

from tests.tiny_run import OVERRIDES, ROOT, TINY
from tests.tiny_run import result_values as _values


@pytest.fixture
def clean(clean_tiny_run, tiny_cache, monkeypatch):
    """The session's uninterrupted tiny run: (output root, results); the test runs with its model cache."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", tiny_cache)
    return clean_tiny_run


def _copy(clean, target: Path, without: tuple[str, ...] = ()) -> Path:
    """A copy of the clean run's folder and stage store, less the store entries of the stages ``without``."""
    for part in ("tiny", ".stages"):
        shutil.copytree(clean[0] / part, target / part, symlinks=True)
    for stage in without:
        for entry in (target / ".stages").glob(f"{stage}-*"):
            shutil.rmtree(entry)
    return target


def _run(output: Path, *overrides: str, host=None):
    args = ["run", str(TINY), "--output", str(output), "--no-progress",
            *(a for o in (*OVERRIDES, *overrides) for a in ("--set", o))]
    return CliRunner().invoke(build_cli(host or get_plugin_manager(autoload=False)), args)




def _results(output: Path) -> dict:
    return json.loads((output / "tiny" / "results.json").read_text())


def _manifest(output: Path, stage: str) -> dict:
    return json.loads((output / "tiny" / stage / "manifest.json").read_text())


def _one_line(result) -> str:
    """The error line of a failed run: the last line of its stderr, and no traceback anywhere."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------- row 3
def test_row3_damaged_files_of_finished_stages_are_redone_not_trusted(clean, tmp_path):
    out = _copy(clean, tmp_path)
    feedback = out / "tiny" / "feedback" / "feedback.jsonl"
    feedback.write_text("".join(feedback.read_text().splitlines(keepends=True)[:5]))  # 5 of 96 lines left
    policy = out / "tiny" / "policy" / "model" / "model.safetensors"
    os.truncate(policy, 100_000)

    result = _run(out)
    assert result.exit_code == 0, result.output[-3000:]
    notes = [line for line in result.stdout.splitlines() if line.startswith("! ")]
    assert len(notes) == 2, notes
    assert notes[0].startswith("! feedback: ") and "feedback.jsonl is damaged (" in notes[0]
    assert notes[1].startswith("! policy: ") and "model/model.safetensors is damaged (100000 bytes, " in notes[1]
    assert all("moved the stage to" in n and "redoing it" in n for n in notes)
    assert _values(_results(out)) == _values(json.loads(json.dumps(clean[1])))  # every number the clean run's
    assert _results(out)["rm"]["n_records"] == clean[1]["feedback"]["n_records"]
    assert len(list((out / ".stages" / ".stale").iterdir())) == 2  # the damaged entries are kept, aside


# ----------------------------------------------------------------- row 4
class CrashAtPolicyStep3:
    """A run that dies after the policy's checkpoint of step 2 (as a kill would leave it)."""

    @hookimpl(wrapper=True)
    def optimizer_step(self, experiment, stage, step, run_step):
        if stage == "policy" and step == 3:
            raise HarnessError("simulated crash")
        return (yield)


@pytest.mark.parametrize("damage", ["random_states_0.pkl", "optimizer.bin"])
def test_row4_a_damaged_checkpoint_is_never_resumed_from(clean, tmp_path, damage):
    out = _copy(clean, tmp_path, without=("policy", "evaluation"))
    crashing = get_plugin_manager(extra=[CrashAtPolicyStep3()], autoload=False)
    with pytest.raises(HarnessError, match="simulated crash"):
        run_experiment(load_experiment(TINY, crashing.registry, OVERRIDES), crashing, out, show_progress=False,
                       echo=lambda s: None)
    checkpoint = out / "tiny" / "policy" / "checkpoints" / "step-000002"
    os.truncate(checkpoint / damage, 0 if damage == "optimizer.bin" else 5000)

    result = _run(out)
    assert result.exit_code == 0, result.output[-3000:]
    written = os.path.getsize(clean[0] / "tiny" / "policy" / "checkpoints" / "step-000002" / damage)
    moved = next(checkpoint.parent.glob(".step-000002.damaged-*"))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {checkpoint / damage} is damaged ({os.path.getsize(moved / damage)} bytes, "
                        f"{written} when it was written); moved the checkpoint to {moved}, starting this training afresh"]
    assert _values(_results(out)) == _values(json.loads(json.dumps(clean[1])))  # not the numbers of a bad resume


# ----------------------------------------------------------------- row 5
@pytest.mark.parametrize("option, line", [
    ("reward_model.bradley_terry.lr=1e30",
     "error: reward_model step 2: non-finite metrics ['rm/train_loss']: training diverged; is the learning rate "
     "1e+30 ([reward_model.bradley_terry] lr) too large? Lower it and rerun."),
    ("sft.next_token.lr=1e30",
     "error: sft step 3: non-finite metrics ['sft/train_loss']: training diverged; is the learning rate 1e+30 "
     "([sft.next_token] lr) too large? Lower it and rerun."),
])
def test_row5_a_diverged_stage_fails_and_is_never_finished(clean, tmp_path, option, line):
    out = _copy(clean, tmp_path)
    result = _run(out, option)
    assert result.exit_code == 1 and _one_line(result) == line
    stage = line.split()[1]
    assert _manifest(out, stage)["status"] == "failed" and "training diverged" in _manifest(out, stage)["error"]
    assert _results(out)["status"] == "failed" and "training diverged" in _results(out)["error"]
    for name in ("sft", "feedback", "reward_model", "policy"):  # the clean run's stages stay as they were
        entry = next((out / ".stages").glob(f"{name}-{clean[1]['stage_hashes'][name]}"))
        assert damaged(entry, json.loads((entry / "manifest.json").read_text())["files"]) is None


# ----------------------------------------------------------------- row 6
def test_row6_a_file_size_limit_ends_in_one_line_and_damages_nothing(clean, tmp_path):
    """``ulimit -f`` (1 MB): the RM's checkpoint (an optimizer.bin of 1.3 MB) cannot be written."""
    out = _copy(clean, tmp_path)
    env = {**os.environ, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))  # noqa: E731
    proc = subprocess.run([sys.executable, "-m", "harness._core.cli", "run", str(TINY), "--output", str(out),
                           "--no-progress", *(a for o in (*OVERRIDES, "reward_model.bradley_terry.lr=2e-4")
                                              for a in ("--set", o))],
                          capture_output=True, text=True, cwd=ROOT, env=env, preexec_fn=limit)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    entry = (out / "tiny" / "reward_model").resolve()
    assert line.startswith(f"error: {entry}: a file grew past the file-size limit (EFBIG, ulimit -f) while the "
                           f"reward_model stage wrote there; the limit is 1.0 MB"), line
    assert "Raise it (ulimit -f unlimited) and rerun" in line
    assert _results(out)["status"] == "failed" and "EFBIG" in _results(out)["error"]
    _assert_nothing_damaged(out, clean)


def _assert_nothing_damaged(out: Path, clean) -> None:
    """Every finished stage verifies, and no temporary file is left anywhere."""
    for manifest in (out / ".stages").glob("*/manifest.json"):
        found = json.loads(manifest.read_text())
        if found["status"] == "finished":
            assert damaged(manifest.parent, found["files"]) is None, manifest
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".tmp.old"))]


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs (needs root; skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_row6_a_full_disk_ends_in_one_line_and_a_rerun_with_room_completes(clean, tmpfs):
    result = _run(tmpfs)
    assert result.exit_code == 1
    line = _one_line(result)
    assert line.startswith(f"error: {tmpfs}/.stages/") and ": no space left on the device (ENOSPC) while the " in line
    assert " free there, and a stage of this model needs about " in line and "choose another --output" in line
    assert _results(tmpfs)["status"] == "failed" and "ENOSPC" in _results(tmpfs)["error"]
    _assert_nothing_damaged(tmpfs, clean)

    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    again = _run(tmpfs)
    assert again.exit_code == 0, again.output[-3000:]
    assert _values(_results(tmpfs)) == _values(json.loads(json.dumps(clean[1])))


def test_row6_a_read_only_output_is_one_line_before_any_work(tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = _run(tmpfs)
    assert result.exit_code == 2  # the output is the user's to change, before any work: a usage error
    assert _one_line(result) == (f"error: {tmpfs / 'tiny'}: not writable (Read-only file system); a run writes its stages and "
                                 f"results there: choose another --output.")
