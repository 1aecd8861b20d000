"""DPO (Rafailov et al. 2023): the policy learns straight from preference pairs, no reward model, no sampling.

An *offline* optimizer: the runner passes ``reward=None``. Read top to bottom:
  1. data: the run's feedback records (``ctx.preference_groups()``: what the ``feedback`` stage collected,
     through the feedback format's ``preference_groups``) become weighted (prompt, chosen, rejected) pairs,
     exactly as for the Bradley–Terry loss: a ranking gives its C(K,2) pairs at weight 1/C(K,2) (InstructGPT
     §3.5: one ranking counts as one comparison, not C(K,2)), Likert ratings their derived pairs at 1/n_pairs.
     Every record counts, so two annotators who preferred the same response of the same pair are two votes,
     as in the reward model's loss;
  2. tokens: prompt = ``encode_prompt(chat_text(x))``, chosen/rejected = ``encode_response(y)`` (leading
     space, EOS), the `harness.api`'s text convention SFT was trained with;
  3. loss: per pair, trl's −log σ(β·[(log π_θ(y_w) − log π_SFT(y_w)) − (log π_θ(y_l) − log π_SFT(y_l))])
     with π_SFT a frozen copy of the SFT model; per batch, the weighted mean Σ w·ℓ / Σ w;
  4. save π_θ in HF format at ``stage_dir/model``.

It uses trl 1.16's public API only: ``DPOTrainer``'s documented arguments, ``DPOConfig``, and an override of
``compute_loss`` (transformers' documented ``Trainer`` extension point). Two facts of trl shape it:
- trl tokenizes the dataset's text itself and cannot be told not to: it appends EOS as *text*, tokenizes
  ``prompt + chosen`` as one string (so BPE merges across the boundary move it) and adds a BOS only where the
  tokenizer's post-processor does (the tiny test tokenizer gets none; ``encode_prompt``, and so SFT, puts BOS
  first). So the dataset also carries the harness's token ids (``*_tokens`` columns), and the ``data_collator``
  (a documented argument) builds trl's batch from those with trl's own ``DataCollatorForPreference`` (the
  documented default); ``remove_unused_columns=False`` lets the columns reach it, and trl's tokens of the text
  go unused. Truncation is the collator's (``max_length``, the tail lost); trl's own ``max_length`` stays None,
  since its filter would count trl's tokens: prompts that fill ``max_length`` are dropped here instead.
- trl's loss is the plain mean over the pairs of the batch it is given; it has no per-pair weight. Given one
  pair it is that pair's loss, so ``compute_loss`` returns Σ w·ℓ / Σ w from one trl call per pair. Where
  every pair weighs the same (pairwise feedback, rankings of one K) the weighted mean is trl's mean and the
  batch goes to trl whole. Which of the two is decided once for the data set, never per batch: under several
  processes every process must make the same number of trl calls (each gathers metrics across processes).
  ``dpo/loss`` is the weighted loss; trl's ``rewards/*`` and ``logps/*`` metrics stay plain means over pairs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from pydantic import Field

from harness.api import (HarnessError, Options, PreferenceGroup, Prompt, RewardSource, StageContext, atomic_directory,
                         check_mixed_precision, encode_prompt, encode_response, hookimpl, load_causal_lm, save_model,
                         seed_everything, single_process_defaults, trainer_deepspeed_config)

METRICS = {  # trl's log key -> the harness's metric name
    "loss": "dpo/loss",
    "rewards/margins": "dpo/rewards_margin",
    "rewards/accuracies": "dpo/rewards_accuracy",
    "rewards/chosen": "dpo/rewards_chosen",
    "rewards/rejected": "dpo/rewards_rejected",
    "logps/chosen": "dpo/logps_chosen",
    "logps/rejected": "dpo/logps_rejected",
    "grad_norm": "dpo/grad_norm",
    "learning_rate": "dpo/lr",
}


class DPOOptions(Options):
    """DPO's knobs; the rest of trl's DPOConfig keeps its defaults (CPU, fp32, no checkpoints)."""

    beta: float = Field(0.1, gt=0, description="β: strength of the implicit KL to π_SFT (reward = β·log π_θ/π_SFT).")
    epochs: int = Field(1, ge=1, description="Passes over the preference pairs.")
    lr: float = Field(1e-5, gt=0, description="AdamW learning rate (linear decay, no warmup).")
    batch_size: int = Field(16, ge=1, description="Preference pairs per gradient step.")
    max_length: int = Field(256, ge=2, description="Prompt + response tokens; longer sequences lose their tail.")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "sigmoid_norm"] = Field(
        "sigmoid", description="trl's DPO loss: sigmoid (the paper), hinge (SLiC), ipo, robust, sigmoid_norm.")
    log_every: int = Field(10, ge=1, description="Log the metrics every this many steps.")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")


# --------------------------------------------------------------------------- 1. data
class WeightedPair(NamedTuple):
    """One (prompt, chosen, rejected) comparison and its weight in the loss."""

    prompt: Prompt
    chosen: str
    rejected: str
    weight: float


def preference_pairs(groups: list[PreferenceGroup]) -> list[WeightedPair]:
    """Every (chosen, rejected) pair of every group with its weight, in order; a pair of two identical texts
    (no preference to learn) is left out."""
    return [WeightedPair(group.prompt, group.responses[winner], group.responses[loser], weight)
            for group in groups for winner, loser, weight in group.pairs
            if group.responses[winner] != group.responses[loser]]


def build_dataset(world, tokenizer, pairs: list[WeightedPair], max_length: int):
    """The pairs as trl's text columns (prompt = the world's chat text, chosen/rejected = " " + response) and as
    the harness's tokens (``*_tokens``, see the module docstring), with their ``weight``. A pair whose prompt
    fills ``max_length`` is dropped: truncation would leave it no response token to train on."""
    from datasets import Dataset

    rows: dict[str, list] = {key: [] for key in ("prompt", "chosen", "rejected", "prompt_tokens", "chosen_tokens",
                                                 "rejected_tokens", "weight")}
    for pair in pairs:
        prompt_text = world.chat_text(pair.prompt)
        prompt_tokens = encode_prompt(tokenizer, prompt_text)
        if len(prompt_tokens) >= max_length:
            continue
        for key, value in (("prompt", prompt_text), ("chosen", " " + pair.chosen.strip()),
                           ("rejected", " " + pair.rejected.strip()), ("prompt_tokens", prompt_tokens),
                           ("chosen_tokens", encode_response(tokenizer, pair.chosen)),
                           ("rejected_tokens", encode_response(tokenizer, pair.rejected)), ("weight", pair.weight)):
            rows[key].append(value)
    return Dataset.from_dict(rows)


# --------------------------------------------------------------------------- 2. tokens into trl's batches
def preference_collator(pad_token_id: int, max_length: int):
    """trl's batch (``input_ids`` etc., chosen rows then rejected rows) built from the harness's tokens, cut at
    ``max_length`` (the tail lost), plus the pairs' ``weight``."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collate = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length, truncation_mode="keep_start")

    def collator(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate([{"prompt_ids": e["prompt_tokens"], "chosen_ids": e["chosen_tokens"],
                          "rejected_ids": e["rejected_tokens"]} for e in examples])
        return batch | {"weight": torch.tensor([e["weight"] for e in examples], dtype=torch.float32)}

    return collator


# --------------------------------------------------------------------------- 3. the weighted loss
def one_pair(batch: dict[str, torch.Tensor], i: int, n: int) -> dict[str, torch.Tensor]:
    """Pair ``i`` of a collated batch of ``n`` pairs: its chosen row ``i`` and its rejected row ``n + i``."""
    return {key: value[[i, n + i]] for key, value in batch.items()}


def _trainer_class():
    from trl import DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        """trl's DPOTrainer whose batch loss is the weighted mean of its per-pair losses (training only: it is
        given no evaluation set)."""

        def __init__(self, *args, equal_weights: bool, **kwargs):
            super().__init__(*args, **kwargs)
            self.equal_weights = equal_weights

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs["weight"]
            batch = {key: value for key, value in inputs.items() if key != "weight"}
            trl_loss = super().compute_loss  # the mean of ℓ over the pairs it is given
            if self.equal_weights:  # Σ w·ℓ / Σ w is the plain mean
                return trl_loss(model, batch)
            n = len(weights)
            losses = torch.stack([trl_loss(model, one_pair(batch, i, n)) for i in range(n)])
            return (weights.to(losses.dtype) * losses).sum() / weights.sum()

    return WeightedDPOTrainer


def _forward_logs(ctx: StageContext, history: list[dict[str, float]]):
    """A TrainerCallback that sends trl's training logs to ``ctx.log`` under the ``dpo/`` names."""
    from transformers import TrainerCallback

    class ForwardLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            metrics = {name: float(logs[key]) for key, name in METRICS.items() if key in (logs or {})}
            if "dpo/loss" in metrics:  # training logs only (the end-of-train summary has train_loss instead)
                ctx.log(metrics, state.global_step)
                history.append({"step": state.global_step, **metrics})

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is not None:
                ctx.periodic_evaluation(state.global_step, model)

    return ForwardLogs()


def dpo_config(ctx: StageContext, options: DPOOptions):
    """trl's config from the options and ``[compute]``: GPU when visible (unless backend = "cpu"), its mixed
    precision, and ``deepspeed=`` for backend = "deepspeed" (on CPU too, with launcher variables set). The
    collator truncates and keeps the weights, so trl's ``max_length`` is None and its unused columns stay."""
    from trl import DPOConfig

    compute = ctx.experiment.compute
    on_gpu = compute.uses_gpu
    check_mixed_precision(compute, on_gpu)
    deepspeed = None
    if compute.uses_deepspeed:
        single_process_defaults()
        deepspeed = trainer_deepspeed_config(compute)
    return DPOConfig(
        output_dir=str(ctx.stage_dir / "trainer"), report_to=[], save_strategy="no", disable_tqdm=True,
        use_cpu=not on_gpu, bf16=compute.mixed_precision == "bf16", fp16=compute.mixed_precision == "fp16",
        deepspeed=deepspeed, activation_checkpointing=compute.activation_checkpointing,
        beta=options.beta, loss_type=[options.loss_type], learning_rate=options.lr,
        num_train_epochs=options.epochs, per_device_train_batch_size=options.batch_size,
        max_length=None, remove_unused_columns=False, max_grad_norm=options.max_grad_norm,
        logging_steps=options.log_every, logging_first_step=True, lr_scheduler_type="linear", warmup_steps=0,
        seed=ctx.seed, data_seed=ctx.seed, dataloader_num_workers=0, dataset_num_proc=None,
    )


def _save_policy(trainer, tokenizer, target: Path) -> None:
    """π_θ in HF format; under DeepSpeed the weights are gathered first (a collective: every process calls
    it) and the main process alone writes."""
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    if not trainer.is_deepspeed_enabled:
        save_model(model, tokenizer, target)
        return
    state = accelerator.get_state_dict(trainer.model)
    if accelerator.is_main_process:
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp, state_dict=state)
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


class DPO:
    """Direct Preference Optimization of π_SFT on the run's feedback, with π_SFT as the frozen reference."""

    Options = DPOOptions
    mode = "offline"

    def __init__(self, options: DPOOptions | None = None):
        self.options = options or DPOOptions()

    def train(self, ctx: StageContext, reward: RewardSource | None) -> dict[str, Any]:
        start = time.perf_counter()
        o = self.options
        if "sft" not in ctx.artifacts:
            raise HarnessError("optimizer 'dpo' starts from the SFT model, but no 'sft' artifact was produced.")
        groups = ctx.preference_groups()
        pairs = preference_pairs(groups)
        if not pairs:
            raise HarnessError("optimizer 'dpo': the feedback has no (chosen, rejected) pairs to train on.")
        seed_everything(ctx.seed)
        torch.set_num_threads(ctx.experiment.compute.threads)
        policy, tokenizer = load_causal_lm(ctx.artifacts["sft"], trainable=True)
        reference, _ = load_causal_lm(ctx.artifacts["sft"])  # π_SFT, frozen
        reference.requires_grad_(False)
        dataset = build_dataset(ctx.world, tokenizer, pairs, o.max_length)
        if not len(dataset):
            raise HarnessError(f"optimizer 'dpo': every prompt fills max_length = {o.max_length} tokens, leaving no "
                               f"response token to train on; raise [optimizer.dpo] max_length.")
        history: list[dict[str, float]] = []
        trainer = _trainer_class()(
            model=policy, ref_model=reference, args=dpo_config(ctx, o), train_dataset=dataset,
            data_collator=preference_collator(tokenizer.pad_token_id, o.max_length), processing_class=tokenizer,
            callbacks=[_forward_logs(ctx, history)], equal_weights=len(set(dataset["weight"])) == 1,
        )
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # with disable_tqdm, HF prints every log dict to stdout
        result = trainer.train()
        _remove_if_empty(ctx.stage_dir / "trainer")  # output_dir: nothing is saved there (save_strategy="no")
        _save_policy(trainer, tokenizer, ctx.stage_dir / "model")
        final = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
        return {
            "optimizer": "dpo",
            "steps": int(trainer.state.global_step),
            "pairs": len(dataset),
            "deepspeed": bool(trainer.is_deepspeed_enabled),
            "groups": len(groups),
            "train_loss": float(result.training_loss),
            "final": final,
            "wall_s": time.perf_counter() - start,
            "s_per_step": (time.perf_counter() - start) / max(trainer.state.global_step, 1),
        }


@hookimpl
def register_optimizers(register):
    register("dpo", DPO)
