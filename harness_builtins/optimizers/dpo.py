"""DPO (Rafailov et al. 2023): the policy learns straight from preference pairs, no reward model, no sampling.

An *offline* optimizer: the runner passes ``reward=None``. Read top to bottom:
  1. data: the run's feedback records (``ctx.preference_groups()``: what the ``feedback`` stage collected,
     through the feedback format's ``preference_groups``) become (prompt, chosen, rejected) pairs — rankings
     and Likert ratings become pairs there, exactly as for the Bradley–Terry loss;
  2. tokens: prompt = ``encode_prompt(chat_text(x))``, chosen/rejected = ``encode_response(y)`` (leading
     space, EOS), the `harness.api`'s text convention SFT was trained with;
  3. loss: trl's ``DPOTrainer``, −log σ(β·[(log π_θ(y_w) − log π_SFT(y_w)) − (log π_θ(y_l) − log π_SFT(y_l))])
     with π_SFT a frozen copy of the SFT model;
  4. save π_θ in HF format at ``stage_dir/model``.

Two trl 1.16 details this module works around:
- trl appends EOS as *text* (``chosen + eos_token``), tokenizes ``prompt + chosen`` as one string (the prompt
  is the common prefix of the two tokenizations, so BPE merges across the boundary move it) and adds a BOS only
  where the tokenizer's post-processor does — the tiny test tokenizer gets none, while ``encode_prompt`` (and so
  SFT) puts BOS first. ``_HarnessDPOTrainer`` therefore replaces trl's dataset tokenization with
  `harness.api`'s text's (the text columns stay in the dataset; EOS is added once, as a token id).
- trl's loss is the plain mean over pairs; it has no per-example weight. So the groups' pair weights
  (1/C(K,2) for rankings) are dropped, and identical (prompt, chosen, rejected) triples are kept once — which
  also means repeated votes for the same pair by several annotators count once.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from harness.api import (HarnessError, Options, PreferenceGroup, RewardSource, StageContext, atomic_directory,
                         encode_prompt, encode_response, hookimpl, load_causal_lm, single_process_defaults)
from harness_builtins.stages.common import save_model, seed_everything

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
def preference_pairs(groups: list[PreferenceGroup]) -> list[tuple[Any, str, str]]:
    """(prompt, chosen, rejected) for every pair, weights dropped, identical triples once, first-seen order."""
    seen: set[tuple[str, str, str]] = set()
    pairs = []
    for group in groups:
        for winner, loser, _weight in group.pairs:
            chosen, rejected = group.responses[winner], group.responses[loser]
            key = (group.prompt.id, chosen, rejected)
            if chosen == rejected or key in seen:
                continue
            seen.add(key)
            pairs.append((group.prompt, chosen, rejected))
    return pairs


def build_dataset(world, pairs: list[tuple[Any, str, str]]):
    """The pairs as text: prompt = the world's chat text, chosen/rejected = " " + response (EOS added at tokenization)."""
    from datasets import Dataset

    return Dataset.from_dict({
        "prompt": [world.chat_text(p) for p, _, _ in pairs],
        "chosen": [" " + c.strip() for _, c, _ in pairs],
        "rejected": [" " + r.strip() for _, _, r in pairs],
    })


# --------------------------------------------------------------------------- 2–3. trl
def _trainer_class():
    from trl import DPOTrainer

    class _HarnessDPOTrainer(DPOTrainer):
        """DPOTrainer whose dataset tokenization is the `harness.api`'s text convention (see the module docstring)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            tokenizer = getattr(processing_class, "tokenizer", processing_class)

            def tokenize(example):
                return {"prompt_ids": encode_prompt(tokenizer, example["prompt"]),
                        "chosen_ids": encode_response(tokenizer, example["chosen"]),
                        "rejected_ids": encode_response(tokenizer, example["rejected"])}

            dataset = dataset.map(tokenize)
            if args.max_length is not None:  # a prompt that fills max_length leaves no response token to train on
                dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
            return dataset

    return _HarnessDPOTrainer


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
            if model is not None and hasattr(ctx, "periodic_evaluation"):
                ctx.periodic_evaluation(state.global_step, model)

    return ForwardLogs()


def dpo_config(ctx: StageContext, options: DPOOptions):
    """trl's config from the options and ``[compute]``: GPU when visible (unless backend = "cpu"), its mixed
    precision, and ``deepspeed=`` for backend = "deepspeed" (on CPU too, with launcher variables set)."""
    from trl import DPOConfig

    from harness.api import ComputeOptions, check_mixed_precision, trainer_deepspeed_config

    compute = getattr(ctx.experiment, "compute", None) or ComputeOptions()
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
        max_length=options.max_length, truncation_mode="keep_start", max_grad_norm=options.max_grad_norm,
        logging_steps=options.log_every, logging_first_step=True, lr_scheduler_type="linear", warmup_steps=0,
        seed=ctx.seed, data_seed=ctx.seed, dataloader_num_workers=0, dataset_num_proc=None,
    )


def _save_policy(trainer, tokenizer, target: Path) -> None:
    """π_θ in HF format; under DeepSpeed the weights are gathered first (a collective: every process calls
    it) and the main process alone writes."""
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    if not getattr(trainer, "is_deepspeed_enabled", False):
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
        if getattr(getattr(ctx.experiment, "compute", None), "threads", None):
            torch.set_num_threads(ctx.experiment.compute.threads)
        policy, tokenizer = load_causal_lm(ctx.artifacts["sft"], trainable=True)
        reference, _ = load_causal_lm(ctx.artifacts["sft"])  # π_SFT, frozen
        reference.requires_grad_(False)
        history: list[dict[str, float]] = []
        trainer = _trainer_class()(
            model=policy, ref_model=reference, args=dpo_config(ctx, o),
            train_dataset=build_dataset(ctx.world, pairs), processing_class=tokenizer,
            callbacks=[_forward_logs(ctx, history)],
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
            "pairs": len(pairs),
            "deepspeed": bool(getattr(trainer, "is_deepspeed_enabled", False)),
            "groups": len(groups),
            "train_loss": float(result.training_loss),
            "final": final,
            "wall_s": time.perf_counter() - start,
            "s_per_step": (time.perf_counter() - start) / max(trainer.state.global_step, 1),
        }


@hookimpl
def register_optimizers(register):
    register("dpo", DPO)
