"""The training-loop plumbing both stages share: accelerate, optimizer + schedule, data order, checkpoints.

Everything that touches devices goes through one ``accelerate.Accelerator`` (from
:func:`harness.api.accelerator_for`), so DeepSpeed or several GPUs later are configuration:
``prepare`` wraps model/optimizer/scheduler, ``backward`` scales and syncs, and
``save_state``/``load_state`` write a checkpoint in whatever layout the backend needs.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from harness.api import (Options, StageContext, accelerator_for, adamw, atomic_write_json, checkpoint_directory,
                         enable_activation_checkpointing, latest_intact, read_json, zero_stage_of)

META = "trainer_state.json"


class TrainOptions(Options):
    """Options every training stage has."""

    epochs: int = Field(3, ge=1, description="Passes over the training data (the RM stage may stop earlier).")
    lr: float = Field(3e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(16, ge=1, description="Examples per optimizer step (RM: feedback records per step).")
    warmup: float = Field(0.05, ge=0, lt=1, description="Fraction of all steps spent warming the learning rate up linearly.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the data held out for validation.")
    max_length: int = Field(256, ge=8, description="Longest prompt+response sequence in tokens.")
    log_every: int = Field(10, ge=1, description="Optimizer steps between train-loss log lines.")


def make_accelerator(ctx: StageContext, model=None):
    """The stage's Accelerator; ``model`` gets activation checkpointing when ``[compute]`` asks for it."""
    if model is not None:
        enable_activation_checkpointing(model, ctx.experiment.compute)
    return accelerator_for(ctx.experiment.compute)


def trained_model(accelerator, wrapped, fresh_model):
    """The trained weights as a plain eval-mode module on the main process, None on the others.

    Every process must call it: under ZeRO-3 the parameters are partitioned, so they are gathered
    (``get_state_dict``, collective) into ``fresh_model()``, an untrained copy of the architecture.
    """
    if zero_stage_of(accelerator) == 3:
        state = accelerator.get_state_dict(wrapped)
        if not accelerator.is_main_process:
            return None
        model = fresh_model()
        model.load_state_dict(state)
        return model.eval()
    return accelerator.unwrap_model(wrapped).eval() if accelerator.is_main_process else None


def make_optimizer(model, options: TrainOptions, total_steps: int):
    """AdamW with linear warmup then cosine decay to 10% of the peak (InstructGPT used cosine)."""
    optimizer = adamw(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    warmup = max(1, round(options.warmup * total_steps)) if options.warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) index lists; at least one of each when there are two or more items."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = min(n - 1, max(1, round(val_fraction * n))) if val_fraction > 0 and n >= 2 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def epoch_batches(indices: list[int], batch_size: int, seed: int, epoch: int, accelerator) -> list[list[int]]:
    """This process's share of each batch of one epoch (a fixed shuffle per (seed, epoch)).

    Every batch of ``batch_size`` examples is split across the processes, so an optimizer step sees
    the same examples however many processes there are, and every process takes the same number of
    steps (a last batch too small to give each process one example is dropped).
    """
    order = list(indices)
    random.Random(f"{seed}/{epoch}").shuffle(order)
    n = accelerator.num_processes
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [b[accelerator.process_index :: n] for b in batches if len(b) >= n]


def steps_per_epoch(n: int, batch_size: int, accelerator) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= accelerator.num_processes else 0)


# ----------------------------------------------------------------- checkpoints
def save_checkpoint(accelerator, directory: Path | None, meta: dict[str, Any]) -> None:
    """Model, optimizer, scheduler and RNG states (``accelerator.save_state``) + ``meta``, atomically, with the
    checksums a resume verifies.

    Collective: every process writes its part (DeepSpeed: its ZeRO partitions; all: its RNG state).
    """
    if directory is None:
        return
    with checkpoint_directory(directory) as tmp:
        accelerator.save_state(str(tmp), safe_serialization=False)
        if accelerator.is_main_process:
            atomic_write_json(tmp / META, meta)


def load_checkpoint(accelerator, directory: Path | None, companions: tuple[Path, ...] = ()) -> dict[str, Any] | None:
    """Restore a checkpoint written by :func:`save_checkpoint` (after ``prepare``); its meta, or None.

    A checkpoint that no longer matches its checksums (or whose ``companions``, directories written beside
    it with :func:`harness.api.write_checksums`, do not) is moved aside with one line: the training starts
    afresh rather than resume from a damaged state.
    """
    if directory is None or not (directory / META).exists():
        return None
    if latest_intact([directory], companions) is None:
        return None
    accelerator.load_state(str(directory))
    return read_json(directory / META, fix=f"delete the checkpoint {directory} and rerun (the stage restarts from scratch)")


# ----------------------------------------------------------------- the epoch loop
def train_epoch(ctx, model, optimizer, scheduler, accelerator, batches, loss_of, prefix: str,
                log_every: int, epoch: int, bar) -> list[float]:
    """One pass over ``batches`` (lists of indices): ``loss_of(ids)`` → backward → step; returns the losses.

    Each step runs through ``ctx.step`` (the ``optimizer_step`` hook), so the core's guard stops a stage
    whose loss went non-finite at that step, and timers see SFT and RM steps as they see the policy's.
    Logs ``<prefix>/train_loss`` (mean of the last ``log_every`` steps) and ``<prefix>/lr``.
    """
    model.train()
    losses = []
    for i, ids in enumerate(batches):
        step = epoch * len(batches) + i + 1

        def run_step(ids=ids) -> dict[str, float]:
            loss = loss_of(ids)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            return {f"{prefix}/train_loss": losses[-1]}

        ctx.step(step, run_step)
        if step % log_every == 0 or i == len(batches) - 1:
            ctx.log({f"{prefix}/train_loss": sum(losses[-log_every:]) / len(losses[-log_every:]),
                     f"{prefix}/lr": scheduler.get_last_lr()[0]}, step)
        bar.update(1)
    return losses
