"""Run store: manifests, reuse of finished stages, resume of interrupted ones, atomic writes."""
from __future__ import annotations

import pytest

from harness._core.io import atomic_directory, atomic_write_json, read_json
from harness._core.runstore import RunStore


def test_finished_stage_with_same_hash_is_reused(tmp_path):
    store = RunStore(tmp_path)
    rec = store.begin("sft", "h1", seed=0)
    assert not rec.reused and not rec.resumed and rec.manifest["status"] == "running"
    store.finish(rec, {"loss": 1.0}, wall_s=2.0)
    again = store.begin("sft", "h1", seed=0)
    assert again.reused and again.manifest["summary"] == {"loss": 1.0}
    assert {"torch", "transformers", "pluggy"} <= set(again.manifest["packages"])


def test_interrupted_stage_resumes_and_keeps_its_checkpoints(tmp_path):
    store = RunStore(tmp_path)
    rec = store.begin("policy", "h1", seed=0)
    rec.checkpoint_dir.mkdir(parents=True)
    (rec.checkpoint_dir / "step-10").write_text("ckpt")
    again = store.begin("policy", "h1", seed=0)  # the process was killed: status still "running"
    assert again.resumed and not again.reused and again.manifest["attempts"] == 2
    assert (again.checkpoint_dir / "step-10").read_text() == "ckpt"


def test_changed_config_moves_the_old_stage_aside(tmp_path):
    store = RunStore(tmp_path)
    rec = store.begin("sft", "old", seed=0)
    (rec.dir / "model.bin").write_text("weights")
    store.finish(rec, {}, 1.0)
    new = store.begin("sft", "new", seed=0)
    assert not new.reused and not (new.dir / "model.bin").exists()
    stale = list((tmp_path / ".stale").iterdir())
    assert len(stale) == 1 and (stale[0] / "model.bin").read_text() == "weights"


def test_failed_stage_records_the_error(tmp_path):
    store = RunStore(tmp_path)
    rec = store.begin("rm", "h", seed=0)
    store.fail(rec, ValueError("boom"))
    assert store.manifest("rm")["status"] == "failed" and "boom" in store.manifest("rm")["error"]


def test_atomic_json_never_leaves_partial_files(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {1j: 2})  # a key JSON cannot hold
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "w").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("killed")
    assert (target / "w").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
