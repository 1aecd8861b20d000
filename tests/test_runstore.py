"""Run store: manifests, reuse of finished stages, resume of interrupted ones, atomic writes."""
from __future__ import annotations

import pytest

from harness._core.io import atomic_directory, atomic_write_json, read_json
from harness._core.runstore import RunStore


def test_finished_stage_with_same_hash_is_reused(tmp_path):
    store = RunStore(tmp_path / "run")
    rec = store.begin("sft", "h1", seed=0)
    assert not rec.reused and not rec.resumed and rec.manifest["status"] == "running"
    store.finish(rec, {"loss": 1.0}, wall_s=2.0)
    again = store.begin("sft", "h1", seed=0)
    assert again.reused and again.manifest["summary"] == {"loss": 1.0}
    assert {"torch", "transformers", "pluggy"} <= set(again.manifest["packages"])


def test_interrupted_stage_resumes_and_keeps_its_checkpoints(tmp_path):
    store = RunStore(tmp_path / "run")
    rec = store.begin("policy", "h1", seed=0)
    rec.checkpoint_dir.mkdir(parents=True)
    (rec.checkpoint_dir / "step-10").write_text("ckpt")
    again = store.begin("policy", "h1", seed=0)  # the process was killed: status still "running"
    assert again.resumed and not again.reused and again.manifest["attempts"] == 2
    assert (again.checkpoint_dir / "step-10").read_text() == "ckpt"


def test_changed_config_adds_an_entry_and_keeps_the_old_stage_for_other_runs(tmp_path):
    store = RunStore(tmp_path / "run")
    rec = store.begin("sft", "old", seed=0, inputs={"config": {"sft": {"lr": 1}}})
    (rec.dir / "model.bin").write_text("weights")
    store.finish(rec, {}, 1.0)
    new = store.begin("sft", "new", seed=0, inputs={"config": {"sft": {"lr": 2}}})
    assert not new.reused and not (new.dir / "model.bin").exists()
    assert (tmp_path / ".stages" / "sft-old" / "model.bin").read_text() == "weights"  # untouched
    assert (tmp_path / "run" / "sft").resolve() == (tmp_path / ".stages" / "sft-new").resolve()
    assert store.notes == [f"config changed (sft.lr 1 → 2): retraining (the earlier stage stays in the store, "
                           f"{tmp_path / '.stages' / 'sft-old'}, for every run that uses it)"]


def test_runs_under_one_root_share_a_finished_stage_and_a_rerun_never_breaks_the_other(tmp_path):
    first, second = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    first.finish(first.begin("sft", "h1", seed=0), {"loss": 1.0}, wall_s=5.0)
    shared = second.begin("sft", "h1", seed=0)
    assert shared.reused and shared.manifest["wall_s"] == 5.0  # the time it took when it was trained
    assert (tmp_path / "b" / "sft").resolve() == (tmp_path / "a" / "sft").resolve()
    first.finish(first.begin("sft", "h2", seed=0), {"loss": 2.0}, wall_s=1.0)  # run a changes its config
    assert second.manifest("sft")["config_hash"] == "h1" and second.manifest("sft")["summary"] == {"loss": 1.0}


def test_a_stage_directory_of_the_older_layout_joins_the_store(tmp_path):
    old = tmp_path / "run" / "sft"
    old.mkdir(parents=True)
    (old / "model.bin").write_text("weights")
    atomic_write_json(old / "manifest.json", {"status": "finished", "config_hash": "h1", "summary": {}})
    again = RunStore(tmp_path / "run").begin("sft", "h1", seed=0)
    assert again.reused and (tmp_path / "run" / "sft").is_symlink()
    assert (tmp_path / ".stages" / "sft-h1" / "model.bin").read_text() == "weights"


def test_failed_stage_records_the_error(tmp_path):
    store = RunStore(tmp_path / "run")
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
