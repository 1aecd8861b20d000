"""Checkpoint, resume and save of an online run.

A checkpoint (``checkpoint_dir/step-NNNNNN``) holds the prepared models and optimizer, every
process's RNG state, β and the reward moments (accelerate's ``save_state``) and the metric history,
written atomically; a resumed run continues exactly where it stopped. The final policy is saved in
HF format at ``stage_dir/model`` (LoRA adapters merged in).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from harness._core.integrity import checkpoint_directory, latest_intact  # checksums written; verified at resume
from harness._core.io import atomic_directory, atomic_write_json, read_json
from harness._online.memory import save_merged
from harness._online.run_state import RLRun


def _checkpoints(root: Path | None) -> list[Path]:
    """Finished checkpoints, oldest first (temp dirs start with '.' and are ignored)."""
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "trainer_state.json").is_file())


def save_checkpoint(run: RLRun, step: int) -> None:
    """Models, optimizer, RNG states, β and reward moments, written atomically; older checkpoints removed.

    Collective: every process writes its part (its RNG state; under DeepSpeed its ZeRO partitions).
    """
    root = run.ctx.checkpoint_dir
    if root is None:
        return
    with checkpoint_directory(root / f"step-{step:06d}") as tmp:  # shared_directory + checksums
        run.accelerator.save_state(str(tmp), safe_serialization=False)
        if run.accelerator.is_main_process:
            atomic_write_json(tmp / "trainer_state.json",
                              {"step": step, "history": run.history, "seconds": dict(run.seconds)})
    if run.accelerator.is_main_process:
        for old in _checkpoints(root)[:-1]:
            shutil.rmtree(old, ignore_errors=True)


def resume(run: RLRun) -> int:
    """Restore the latest intact checkpoint, if any; returns the step it was taken after (0 for a fresh run)."""
    latest = latest_intact(_checkpoints(run.ctx.checkpoint_dir))  # a damaged one is moved aside, with one line
    if latest is None:
        return 0
    run.accelerator.load_state(str(latest))
    state = read_json(latest / "trainer_state.json", fix=f"delete the checkpoint directory {latest.name} "
                      "and rerun (the stage resumes from an earlier checkpoint or restarts)")
    run.history = list(state["history"])
    run.seconds.update(state["seconds"])
    return int(state["step"])


def save_policy(run: RLRun) -> Path:
    """π_θ in HF format (``save_pretrained`` + tokenizer) at ``stage_dir/model``, atomically.

    A LoRA policy is saved with its adapters merged in: a plain causal LM, no peft needed to load it.
    """
    target = run.ctx.stage_dir / "model"
    # collective: under ZeRO-3 every process sends its partitions, rank 0 gets the whole state
    state = None if run.options.lora else run.accelerator.get_state_dict(run.model)
    if run.accelerator.is_main_process:
        with atomic_directory(target) as tmp:
            if run.options.lora:
                save_merged(run.accelerator.unwrap_model(run.policy), tmp)
            else:
                policy_state = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
                run.policy.save_pretrained(tmp, state_dict=policy_state)
            run.tokenizer.save_pretrained(tmp)
    run.accelerator.wait_for_everyone()
    return target
