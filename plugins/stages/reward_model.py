"""Stage ``bradley_terry``: a reward model from human feedback (InstructGPT step 2).

1. Feedback: the run's feedback format collects records on the ``rm`` prompts from the
   world's annotators (``feedback.jsonl``, reused when present) and reduces them to
   :class:`PreferenceGroup`s — weighted (winner, loser) pairs, whatever the format.
2. Model: the SFT model with a scalar head (``AutoModelForSequenceClassification``,
   ``num_labels=1``); the reward is read at the last token of prompt + response.
3. Loss: Σ weight · −log σ(r_w − r_l) over a group's pairs, every response of a group scored
   in one forward pass, so a K-wise ranking costs K forwards rather than C(K,2)·2 (§3.5).
4. Early stopping on held-out accuracy; the best epoch's weights are kept.
5. Normalization: the reward is shifted so SFT samples average 0 (InstructGPT normalizes
   the RM the same way, so PPO starts at reward ≈ 0). The shift is stored beside the model in
   ``reward_normalization.json`` because Llama-style score heads are ``Linear(bias=False)``:
   there is no bias parameter to fold it into, and a side file keeps the HF directory
   loadable by any HF tool unchanged.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from harness import hookimpl
from harness.contracts import PreferenceGroup, StageContext
from harness.io import atomic_write_text
from harness.models import load_causal_lm
from harness.text import encode_prompt, encode_response
from plugins.stages.common import (
    prepare_reward_model,
    reward_sequence,
    sample_responses,
    save_model,
    score_texts,
    seed_everything,
    sequence_rewards,
)
from plugins.stages.training import (
    TrainOptions,
    epoch_batches,
    load_checkpoint,
    make_accelerator,
    make_optimizer,
    save_checkpoint,
    steps_per_epoch,
    train_epoch,
)

NORMALIZATION_FILE = "reward_normalization.json"


class BradleyTerryOptions(TrainOptions):
    epochs: int = Field(4, ge=1, description="Most passes over the feedback (early stopping may end sooner).")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    batch_size: int = Field(8, ge=1, description="Feedback records (preference groups) per optimizer step.")
    patience: int = Field(2, ge=1, description="Epochs without better held-out accuracy before stopping.")
    normalization_samples: int = Field(64, ge=1, description="SFT samples (on rm prompts) whose mean reward becomes 0.")
    max_new_tokens: int = Field(32, ge=1, description="Longest SFT sample drawn for the normalization.")


class Encoded:
    """A preference group as token ids: one sequence per response, plus its pairs."""

    def __init__(self, group: PreferenceGroup, seqs: list[list[int]]) -> None:
        self.group, self.seqs, self.pairs = group, seqs, group.pairs


class BradleyTerryRM:
    """Reward model trained with the Bradley–Terry loss on any feedback format's weighted pairs."""

    Options = BradleyTerryOptions

    def __init__(self, options: BradleyTerryOptions | None = None) -> None:
        self.options = options if options is not None else BradleyTerryOptions()

    def run(self, ctx: StageContext) -> dict[str, Any]:
        seed_everything(ctx.seed)
        feedback = ctx.components["feedback"]
        records = load_or_collect_feedback(ctx, feedback)
        model, tokenizer = load_reward_model(ctx.artifacts["sft"])
        groups = encode_groups(tokenizer, ctx.world, feedback.preference_groups(records), self.options.max_length)
        train, heldout = split_by_prompt(records, groups, self.options.val_fraction, ctx.seed)
        model, fit = self._train(ctx, model, tokenizer.pad_token_id, train, heldout)
        offset = self._normalization_offset(ctx, model, tokenizer)
        save_model(model, tokenizer, ctx.stage_dir / "model", {NORMALIZATION_FILE: json.dumps({"offset": offset}) + "\n"})
        rewards = score_groups(model, heldout, tokenizer.pad_token_id, self.options.batch_size)
        return {"accuracy": pair_accuracy(heldout, rewards),
                "gold_accuracy": gold_accuracy(ctx.world.gold(), heldout, rewards),
                "agreement": feedback.agreement(records), "n_records": len(records),
                "n_train_groups": len(train), "n_heldout_groups": len(heldout), "offset": offset, **fit}

    # ------------------------------------------------------------------ training
    def _train(self, ctx, model, pad_id, train, heldout):
        """Epochs of BT updates with early stopping; returns (best model, eval mode) and fit stats."""
        opts, accelerator = self.options, make_accelerator(ctx)
        n_steps = steps_per_epoch(len(train), opts.batch_size, accelerator)
        optimizer, scheduler = make_optimizer(model, opts, n_steps * opts.epochs)
        wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        checkpoint = ctx.checkpoint_dir / "rm" if ctx.checkpoint_dir else None
        best_dir = (ctx.checkpoint_dir or ctx.stage_dir / "checkpoints") / "rm-best"
        meta = load_checkpoint(accelerator, checkpoint) or {"epoch": -1, "best_accuracy": -1.0, "best_epoch": -1, "train_loss": None}
        with ctx.progress_bar(n_steps * opts.epochs, "reward model") as bar:
            for epoch in range(meta["epoch"] + 1, opts.epochs):
                if epoch - meta["best_epoch"] > opts.patience:
                    break
                loss = self._epoch(ctx, wrapped, optimizer, scheduler, accelerator, pad_id, train, epoch, bar)
                accuracy = pair_accuracy(heldout, score_groups(wrapped, heldout, pad_id, opts.batch_size, accelerator.device))
                ctx.log({"rm/val_accuracy": accuracy}, (epoch + 1) * n_steps)
                meta = self._after_epoch(accelerator, wrapped, meta, epoch, loss, accuracy, best_dir)
                save_checkpoint(accelerator, checkpoint, meta)
        model = accelerator.unwrap_model(wrapped)
        if best_dir.exists():
            model.load_state_dict(torch.load(best_dir / "weights.pt", weights_only=True))
        return model.eval(), {"best_epoch": meta["best_epoch"], "train_loss": meta["train_loss"]}

    def _epoch(self, ctx, model, optimizer, scheduler, accelerator, pad_id, train, epoch, bar) -> float:
        def loss_of(ids):
            batch = [train[j] for j in ids]
            return bt_loss(batch, sequence_rewards(model, [s for g in batch for s in g.seqs], pad_id, accelerator.device))

        batches = epoch_batches(list(range(len(train))), self.options.batch_size, ctx.seed, epoch, accelerator)
        losses = train_epoch(ctx, model, optimizer, scheduler, accelerator, batches, loss_of, "rm",
                             self.options.log_every, epoch, bar)
        return float(np.mean(losses)) if losses else float("nan")

    @staticmethod
    def _after_epoch(accelerator, model, meta, epoch, loss, accuracy, best_dir) -> dict[str, Any]:
        """Keep the best-so-far weights on disk (so a resumed run still restores the best epoch)."""
        meta = {**meta, "epoch": epoch, "train_loss": loss}
        if accuracy > meta["best_accuracy"] or np.isnan(accuracy):  # no held-out data: keep the latest
            best_dir.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            tmp = best_dir / "weights.pt.tmp"
            torch.save(state, tmp)
            tmp.replace(best_dir / "weights.pt")
            meta |= {"best_accuracy": accuracy, "best_epoch": epoch}
        return meta

    # ------------------------------------------------------------------ normalization
    def _normalization_offset(self, ctx, model, tokenizer) -> float:
        """Mean reward of SFT samples on ``rm`` prompts: subtracting it centres π_SFT's reward at 0."""
        prompts = ctx.world.prompts("rm")[: self.options.normalization_samples]
        policy, _ = load_causal_lm(ctx.artifacts["sft"])
        texts = sample_responses(policy, tokenizer, ctx.world, prompts, max_new_tokens=self.options.max_new_tokens,
                                 seed=ctx.seed)
        rewards = score_texts(model, tokenizer, ctx.world, prompts, texts, max_length=self.options.max_length,
                              batch_size=self.options.batch_size)
        return float(rewards.mean())


# ----------------------------------------------------------------- data
def load_or_collect_feedback(ctx: StageContext, feedback) -> list[dict[str, Any]]:
    """Records from ``feedback.jsonl`` if an earlier attempt wrote it, else collected now (and written atomically)."""
    path = ctx.stage_dir / "feedback.jsonl"
    if path.exists():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = feedback.collect(ctx.world, ctx.world.prompts("rm"), random.Random(ctx.seed))
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def read_offset(model_dir) -> float:
    """The normalization offset saved beside a reward model (0 when absent, e.g. an RM trained elsewhere)."""
    path = Path(model_dir) / NORMALIZATION_FILE
    return float(json.loads(path.read_text(encoding="utf-8"))["offset"]) if path.exists() else 0.0


def load_reward_model(sft_dir):
    """The SFT model with a fresh scalar head (``num_labels=1``) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(sft_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(sft_dir), num_labels=1)
    prepare_reward_model(model, tokenizer)
    return model, tokenizer


def encode_groups(tokenizer, world, groups: list[PreferenceGroup], max_length: int) -> list[Encoded]:
    def encode(group: PreferenceGroup) -> Encoded:
        prompt_ids = encode_prompt(tokenizer, world.chat_text(group.prompt))
        return Encoded(group, [reward_sequence(prompt_ids, encode_response(tokenizer, r), max_length) for r in group.responses])

    return [encode(g) for g in groups]


def split_by_prompt(records, groups, val_fraction: float, seed: int):
    """(train, held-out) groups that have pairs, split by prompt so no item (or its other raters' labels) leaks across."""
    ids = sorted({r["prompt_id"] for r in records})
    random.Random(seed).shuffle(ids)
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids)))) if val_fraction > 0 and len(ids) >= 2 else 0
    heldout_ids = set(ids[:n_val])
    train = [g for r, g in zip(records, groups) if r["prompt_id"] not in heldout_ids and g.pairs]
    heldout = [g for r, g in zip(records, groups) if r["prompt_id"] in heldout_ids and g.pairs]
    return train, heldout


# ----------------------------------------------------------------- loss and metrics
def bt_loss(groups: list[Encoded], rewards: torch.Tensor) -> torch.Tensor:
    """Mean over groups of Σ weight · −log σ(r_w − r_l); ``rewards`` holds the groups' responses in order."""
    total, start = rewards.new_zeros(()), 0
    for g in groups:
        r = rewards[start : start + len(g.seqs)]
        w, l, weight = (torch.tensor(x, device=r.device) for x in zip(*g.pairs))
        total = total + (weight.to(r.dtype) * F.softplus(-(r[w] - r[l]))).sum()
        start += len(g.seqs)
    return total / max(1, len(groups))


@torch.no_grad()
def score_groups(model, groups: list[Encoded], pad_id: int, batch_size: int, device=None) -> list[torch.Tensor]:
    """Rewards of every response of every group (no grad), one tensor per group."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    out = []
    for start in range(0, len(groups), batch_size):
        chunk = groups[start : start + batch_size]
        flat = sequence_rewards(model, [s for g in chunk for s in g.seqs], pad_id, device).cpu()
        out += list(torch.split(flat, [len(g.seqs) for g in chunk]))
    return out


def pair_accuracy(groups: list[Encoded], rewards: list[torch.Tensor]) -> float:
    """Weighted fraction of (winner, loser) pairs the reward orders as the annotator did."""
    hits = [(weight, float(r[w] > r[l])) for g, r in zip(groups, rewards) for w, l, weight in g.pairs]
    return _weighted_mean(hits)


def gold_accuracy(gold, groups: list[Encoded], rewards: list[torch.Tensor]) -> float:
    """Same pairs and weights, judged by the gold judge instead of the annotator (gold ties left out)."""
    hits = []
    for g, r in zip(groups, rewards):
        for w, l, weight in g.pairs:
            verdict = gold.compare(g.group.prompt, g.group.responses[w], g.group.responses[l])
            if verdict != 0.5:
                hits.append((weight, float((r[w] > r[l]).item() == (verdict > 0.5))))
    return _weighted_mean(hits)


def _weighted_mean(hits: list[tuple[float, float]]) -> float:
    total = sum(w for w, _ in hits)
    return sum(w * h for w, h in hits) / total if total else float("nan")


@hookimpl
def register_stages(register):
    register("bradley_terry", BradleyTerryRM)
