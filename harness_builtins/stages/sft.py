"""Stage ``next_token``: supervised fine-tuning on the world's demonstrations (InstructGPT step 1).

Next-token cross-entropy on the demonstrator's response only: prompt positions carry label
−100, so the model learns to answer, not to write prompts. Its own loop (rather than trl's
SFTTrainer) keeps that mask exactly on the `harness.api`'s text prompt/response boundary and is
a page long. Each epoch ends with a validation loss and a checkpoint; a killed run resumes
from the last finished epoch. Afterwards the stage samples the base and the SFT model on
held-out prompts and asks the gold judge, so the summary shows what SFT bought.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from harness.api import (StageContext, TrainingDiverged, ensure_pad, hookimpl, load_causal_lm, save_model,
                         seed_everything)
from harness_builtins.stages.common import encode_pair, lm_batch, sample_responses, token_loss_sum
from harness_builtins.stages.training import (
    TrainOptions,
    epoch_batches,
    load_checkpoint,
    make_accelerator,
    make_optimizer,
    save_checkpoint,
    split_indices,
    steps_per_epoch,
    train_epoch,
    trained_model,
)


class NextTokenOptions(TrainOptions):
    eval_samples: int = Field(64, ge=0, description="Held-out prompts sampled (base vs SFT) for the gold score; 0 skips it.")
    max_new_tokens: int = Field(32, ge=1, description="Longest sampled response in that comparison.")


class NextTokenSFT:
    """Supervised fine-tuning: next-token loss on demonstrations, prompt tokens masked."""

    Options = NextTokenOptions

    def __init__(self, options: NextTokenOptions | None = None) -> None:
        self.options = options if options is not None else NextTokenOptions()

    def run(self, ctx: StageContext) -> dict[str, Any]:
        opts = self.options
        seed_everything(ctx.seed)
        model, tokenizer = load_causal_lm(ctx.artifacts["base"], trainable=True)
        ensure_pad(tokenizer)
        demos = ctx.world.demonstrations()
        examples = [encode_pair(tokenizer, ctx.world, d.prompt, d.response) for d in demos]
        train, val = split_indices(len(examples), opts.val_fraction, ctx.seed)
        model, history = self._train(ctx, model, tokenizer, examples, train, val)
        if model is None:  # not the main process: rank 0 saves and evaluates, the runner shares its summary
            return {}
        save_model(model, tokenizer, ctx.stage_dir / "model")
        summary = {"train_loss": history[-1]["train_loss"], "val_loss": history[-1]["val_loss"],
                   "n_demonstrations": len(demos)}
        return summary | self._gold_comparison(ctx, model, tokenizer)

    # ------------------------------------------------------------------ training
    def _train(self, ctx, model, tokenizer, examples, train, val):
        """Train (resuming from the last epoch checkpoint); returns (trained model in eval mode, history).

        The model is None on processes other than the main one (see :func:`trained_model`).
        """
        opts = self.options
        accelerator = make_accelerator(ctx, model)
        n_steps = steps_per_epoch(len(train), opts.batch_size, accelerator)
        optimizer, scheduler = make_optimizer(model, opts, n_steps * opts.epochs)
        wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        checkpoint = ctx.checkpoint_dir / "sft" if ctx.checkpoint_dir else None
        meta = load_checkpoint(accelerator, checkpoint) or {"epoch": -1, "history": []}

        def batch(ids: list[int]) -> dict[str, torch.Tensor]:
            tensors = lm_batch([examples[i] for i in ids], tokenizer.pad_token_id, opts.max_length)
            return {k: v.to(accelerator.device) for k, v in tensors.items()}

        with ctx.progress_bar(n_steps * opts.epochs, "sft") as bar:
            bar.update(n_steps * (meta["epoch"] + 1))
            for epoch in range(meta["epoch"] + 1, opts.epochs):
                losses = self._epoch(ctx, wrapped, optimizer, scheduler, accelerator, train, epoch, batch, bar)
                val_loss = _mean_token_loss(wrapped, val, batch, opts.batch_size)
                if val and not np.isfinite(val_loss):  # the last step's update can diverge after its loss was read
                    raise TrainingDiverged(ctx.stage, f"epoch {epoch + 1}", f"validation loss {val_loss}", ctx.experiment)
                ctx.log({"sft/val_loss": val_loss}, (epoch + 1) * n_steps)
                meta = {"epoch": epoch, "history": meta["history"] + [{"train_loss": float(np.mean(losses)), "val_loss": val_loss}]}
                save_checkpoint(accelerator, checkpoint, meta)
        fresh = lambda: load_causal_lm(ctx.artifacts["base"])[0]  # noqa: E731 - the architecture, for ZeRO-3
        return trained_model(accelerator, wrapped, fresh), meta["history"]

    def _epoch(self, ctx, model, optimizer, scheduler, accelerator, train, epoch, batch, bar) -> list[float]:
        """One pass in a fixed shuffled order; returns the batch losses."""
        def loss_of(ids):
            loss_sum, n_tokens = token_loss_sum(model, batch(ids))
            return loss_sum / max(1, n_tokens)

        batches = epoch_batches(train, self.options.batch_size, ctx.seed, epoch, accelerator)
        return train_epoch(ctx, model, optimizer, scheduler, accelerator, batches, loss_of, "sft",
                           self.options.log_every, epoch, bar)

    # ------------------------------------------------------------------ evaluation
    def _gold_comparison(self, ctx, sft_model, tokenizer) -> dict[str, float]:
        """Mean gold score of one sample per held-out prompt, from the base and from the SFT model."""
        if ctx.world.gold() is None:  # a world of real data has no gold judge: nothing to report
            return {}
        prompts = ctx.world.prompts("eval")[: self.options.eval_samples]
        if not prompts:
            return {"gold_score": float("nan"), "base_gold_score": float("nan")}
        base, _ = load_causal_lm(ctx.artifacts["base"])
        return {"gold_score": self._gold(ctx, sft_model, tokenizer, prompts),
                "base_gold_score": self._gold(ctx, base, tokenizer, prompts)}

    def _gold(self, ctx, model, tokenizer, prompts) -> float:
        texts = sample_responses(model, tokenizer, ctx.world, prompts, max_new_tokens=self.options.max_new_tokens,
                                 seed=ctx.seed)
        gold = ctx.world.gold()
        return float(np.mean([gold.score(p, t) for p, t in zip(prompts, texts)]))


@torch.no_grad()
def _mean_token_loss(model, indices: list[int], batch, batch_size: int) -> float:
    """Token-weighted mean loss over ``indices`` (nan when there is no validation data)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(indices), batch_size):
        loss_sum, n = token_loss_sum(model, batch(indices[start : start + batch_size]))
        total, count = total + loss_sum.item(), count + n
    return total / count if count else float("nan")


@hookimpl
def register_stages(register):
    register("next_token", NextTokenSFT)
