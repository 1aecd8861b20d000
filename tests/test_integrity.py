"""Nothing silently wrong, unit by unit (issue 26, rows 3–6): damaged files found, damaged checkpoints never
resumed from, diverged stages never finished, a full disk one line and no partial file.
The end-to-end runs of the same rows are in tests/test_faults_integrity.py."""
from __future__ import annotations

import errno
import json
import resource
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness._core import integrity
from harness._core.config import load_experiment
from harness._core.contracts import StageContext
from harness._core.disk import DiskError, disk_error
from harness._core.distributed import shared_directory
from harness._core.divergence import TrainingDiverged, check_saved_weights
from harness._core.io import atomic_write_text
from harness._core.plugins import get_plugin_manager
from harness._core.results import check_current, mark_ended, mark_started
from harness._core.runstore import RunStore
from harness._core.stage_driver import Run
from harness_builtins.stages.training import load_checkpoint, save_checkpoint

TINY = Path(__file__).resolve().parent / "data" / "tiny.toml"


# ----------------------------------------------------------------- row 3: a finished stage's files
def _finished(tmp_path):
    store = RunStore(tmp_path / "run")
    rec = store.begin("feedback", "h1", seed=0)
    (rec.dir / "feedback.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(960)))
    (rec.dir / "model").mkdir()
    (rec.dir / "model" / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (rec.dir / "checkpoints").mkdir()
    (rec.dir / "checkpoints" / "scratch.bin").write_bytes(b"x")  # checked at resume, not at reuse
    store.finish(rec, {}, 1.0)
    return store, rec


@pytest.mark.parametrize("damage, said", [
    (lambda d: (d / "feedback.jsonl").write_text('{"id": 0}\n' * 100), "feedback.jsonl is damaged (1000 bytes, "),
    (lambda d: (d / "model" / "model.safetensors").write_bytes(bytes(10240)), "contents changed since it was written"),
    (lambda d: (d / "model" / "model.safetensors").unlink(), "model.safetensors is missing"),
])
def test_a_finished_stage_with_a_damaged_file_is_moved_aside_and_redone(tmp_path, damage, said):
    store, rec = _finished(tmp_path)
    entry = rec.dir.resolve()
    (rec.dir / "checkpoints" / "scratch.bin").write_bytes(b"yy")  # not handed on: no reason to redo
    assert store.begin("feedback", "h1", seed=0).reused
    damage(rec.dir)
    again = store.begin("feedback", "h1", seed=0)
    assert not again.reused and again.manifest["status"] == "running" and not (entry / "feedback.jsonl").exists()
    assert len(store.notes) == 1 and said in store.notes[0] and "moved the stage to" in store.notes[0]
    stale = list((tmp_path / ".stages" / ".stale").iterdir())
    assert [p.name.startswith("feedback-damaged-") for p in stale] == [True]  # kept, never deleted


def test_the_manifest_records_size_and_hash_of_what_the_stage_hands_on(tmp_path):
    _, rec = _finished(tmp_path)
    files = json.loads((rec.dir / "manifest.json").read_text())["files"]
    assert sorted(files) == ["feedback.jsonl", "model/model.safetensors"]
    assert files["model/model.safetensors"]["size"] == 10240 and len(files["feedback.jsonl"]["sha256"]) == 64


def test_compare_does_not_trust_a_run_whose_stage_files_are_damaged(tmp_path):
    store, rec = _finished(tmp_path)
    results = {"status": "complete", "stage_hashes": {"feedback": "h1"}}
    assert check_current(store.run_dir, results) is None
    (rec.dir / "feedback.jsonl").write_text("")
    assert check_current(store.run_dir, results).startswith(
        f"stage 'feedback': {rec.dir / 'feedback.jsonl'} is damaged (0 bytes, 11410 when it was written); rerun it")


# ----------------------------------------------------------------- row 4: checkpoints
def _checkpoints(tmp_path, n):
    found = []
    for step in range(1, n + 1):
        with integrity.checkpoint_directory(tmp_path / f"step-{step:06d}") as tmp:
            (tmp / "random_states_0.pkl").write_bytes(bytes([step]) * 1000)
        found.append(tmp_path / f"step-{step:06d}")
    return found


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path, capsys):
    found = _checkpoints(tmp_path, 3)
    assert not list(tmp_path.glob(".*.tmp"))  # swapped into place
    (found[2] / "random_states_0.pkl").write_bytes(b"short")
    assert integrity.latest_intact(found) == found[1]
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"warning: {found[2] / 'random_states_0.pkl'} is damaged (5 bytes, 1000 when it was written)")
    assert line.endswith("resuming from step-000002 instead") and "\n" not in line
    assert not found[2].exists() and len(list(tmp_path.glob(".step-000003.damaged-*"))) == 1


def test_no_intact_checkpoint_means_a_fresh_start(tmp_path, capsys):
    found = _checkpoints(tmp_path, 1)
    (found[0] / integrity.CHECKSUMS).write_text("{")
    assert integrity.latest_intact(found) is None
    assert "starting this training afresh" in capsys.readouterr().err


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 64)


def _accelerated(seed=0):
    from accelerate import Accelerator

    torch.manual_seed(seed)
    model = _Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    return accelerator, *accelerator.prepare(model, optimizer)


@pytest.mark.parametrize("damage", [
    lambda d: (d / "random_states_0.pkl").write_bytes((d / "random_states_0.pkl").read_bytes()[:5000]),
    lambda d: (d / "optimizer.bin").write_bytes(b""),
    lambda d: (d / "pytorch_model.bin").write_bytes((d / "pytorch_model.bin").read_bytes()[:-100]),
])
def test_sft_and_rm_checkpoints_are_verified_before_load_state(tmp_path, capsys, damage):
    accelerator, model, optimizer = _accelerated()
    model.layer.weight.sum().backward()
    optimizer.step()
    save_checkpoint(accelerator, tmp_path / "sft", {"epoch": 0})
    accelerator, fresh, _ = _accelerated(seed=1)
    assert load_checkpoint(accelerator, tmp_path / "sft") == {"epoch": 0}  # intact: restored
    assert torch.equal(fresh.layer.weight, model.layer.weight)
    damage(tmp_path / "sft")
    accelerator, fresh, _ = _accelerated(seed=1)
    before = fresh.layer.weight.detach().clone()
    assert load_checkpoint(accelerator, tmp_path / "sft") is None  # damaged: the training starts afresh
    assert torch.equal(fresh.layer.weight, before) and not (tmp_path / "sft").exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is damaged" in err and "starting this training afresh" in err


def test_a_damaged_companion_of_a_checkpoint_counts_as_damage(tmp_path, capsys):
    accelerator, model, optimizer = _accelerated()
    save_checkpoint(accelerator, tmp_path / "rm", {"epoch": 0})
    best = tmp_path / "rm-best"
    best.mkdir()
    (best / "weights.pt").write_bytes(b"best weights")
    integrity.write_checksums(best)
    (best / "weights.pt").write_bytes(b"best")
    assert load_checkpoint(accelerator, tmp_path / "rm", (best,)) is None
    assert "rm-best/weights.pt is damaged" in capsys.readouterr().err


# ----------------------------------------------------------------- row 5: divergence
@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


def test_the_guard_names_the_stage_the_step_and_the_learning_rate(host):
    experiment = load_experiment(TINY, host.registry, ["reward_model.bradley_terry.lr=1e30"])
    ctx = StageContext(experiment=experiment, stage="reward_model", stage_dir=None, world=None,
                       log=lambda m, s: None, hook=host.hook)
    with pytest.raises(TrainingDiverged) as err:
        ctx.step(7, lambda: {"rm/train_loss": float("nan")})
    assert str(err.value) == ("reward_model step 7: non-finite metrics ['rm/train_loss']: training diverged; is the "
                              "learning rate 1e+30 ([reward_model.bradley_terry] lr) too large? Lower it and rerun.")
    assert err.value.exit_code == 1


def test_a_stage_that_saved_non_finite_weights_is_failed_not_finished(tmp_path, host):
    experiment = load_experiment(TINY, host.registry)
    run = Run(experiment, host, RunStore(tmp_path / "tiny"), show_progress=False, echo=lambda s: None)

    def work(ctx):
        (ctx.stage_dir / "model").mkdir()
        save_file({"w": torch.tensor([1.0, float("inf")]), "b": torch.zeros(2)}, ctx.stage_dir / "model" / "model.safetensors")
        return {"train_loss": 0.5}  # a plausible summary

    with pytest.raises(TrainingDiverged, match=r"^sft saved model: model/model.safetensors has non-finite weights \(w\)"):
        run.stage("sft", work)
    assert json.loads((tmp_path / "tiny" / "sft" / "manifest.json").read_text())["status"] == "failed"
    check_saved_weights(tmp_path / "nothing", "sft")  # no model: nothing to check


# ----------------------------------------------------------------- row 6: a full disk
def test_disk_errors_are_found_in_the_chain_and_told_in_one_line(tmp_path):
    def raised(outer, inner):
        try:
            try:
                raise inner
            except BaseException:
                raise outer
        except BaseException as err:
            return err

    full = raised(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5184 vs 5076"),
                  OSError(errno.ENOSPC, "No space left on device"))
    found = disk_error(full, tmp_path, model_bytes=2 << 20, doing="the sft stage wrote there")
    assert isinstance(found, DiskError) and found.exit_code == 1 and "\n" not in str(found)
    assert str(found).startswith(f"{tmp_path}: no space left on the device (ENOSPC) while the sft stage wrote there; ")
    assert "a stage of this model needs about 16.0 MB" in str(found) and "--output" in str(found)
    rust = Exception('Error while serializing: IoError(Os { code: 122, kind: FilesystemQuotaExceeded })')
    assert "disk quota is exceeded" in str(disk_error(rust, tmp_path))
    named = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "results.json"))
    assert str(disk_error(named, tmp_path)).startswith(f"{tmp_path / 'results.json'}: the file system is read-only")
    assert disk_error(ValueError("boom"), tmp_path) is None and disk_error(OSError(errno.ENOENT, "x"), tmp_path) is None
    assert disk_error(RuntimeError("unexpected pos 1 vs 2 (inline_container.cc)"), tmp_path) is None  # room enough


def test_a_torch_writer_error_under_a_file_size_limit_is_efbig(tmp_path, monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, resource.RLIM_INFINITY))
    found = disk_error(RuntimeError("basic_ios::clear: iostream error"), tmp_path, model_bytes=600 << 10)
    assert "file-size limit (EFBIG, ulimit -f)" in str(found) and "the limit is 1.0 MB" in str(found)


def test_results_say_failed_even_when_the_disk_has_no_room_for_a_new_file(tmp_path, monkeypatch):
    mark_started(tmp_path, "tiny", "abc")

    def no_room(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("harness._core.results.atomic_write_json", no_room)
    mark_ended(tmp_path, "tiny", "abc", DiskError("x: no space left on the device"))
    marker = json.loads((tmp_path / "results.json").read_text())
    assert marker["status"] == "failed" and marker["error"] == "DiskError: x: no space left on the device"


def test_failed_writes_leave_no_temporary_file(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "results.json", "{}")
    with pytest.raises(OSError):
        with shared_directory(tmp_path / "step-000001") as tmp:
            (tmp / "optimizer.bin").write_bytes(b"partial")
            full()
    assert list(tmp_path.iterdir()) == []



def test_the_cli_tells_a_full_disk_in_one_line_whatever_the_command(tmp_path, host):
    from click.testing import CliRunner

    from harness._core.cli import build_cli

    cli = build_cli(host)

    @cli.command("fill")
    def fill():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report" / "report.md"))

    result = CliRunner().invoke(cli, ["fill"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {tmp_path / 'report' / 'report.md'}: no space left on the device (ENOSPC)")
    assert result.stderr.count("\n") == 1
