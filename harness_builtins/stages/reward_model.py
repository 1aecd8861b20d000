"""Stage ``bradley_terry``: a reward model from human feedback (InstructGPT step 2).

1. Feedback: the records the ``feedback`` stage collected (``ctx.feedback_records()``), reduced by
   the run's feedback format to :class:`PreferenceGroup`s — weighted (winner, loser) pairs,
   whatever the format.
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
6. Ensembles (``members = N``): member 0 is the model above, in ``model/``; member i ≥ 1 trains
   from seed ``seed + i`` (head init, data order) on a bootstrap resample of the training
   prompts and lands in ``members/<i>/`` with its own offset. Every member is scored on the same
   held-out split, so accuracies compare, and each checkpoints on its own, so a crash in
   member i resumes there without retraining 0..i−1. Reward source ``ensemble`` reads them all.

What is saved (the model directories, their offsets, where members go) and how a reward is read
is the core's reward-model artifact (``harness.api``: ``save_reward_model``, ``load_reward_model``,
``score_texts``, …), the contract this stage shares with every reward source.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from harness.api import (FeedbackRecord, PreferenceGroup, StageContext, TrainingDiverged, encode_prompt,
                         encode_response, group_rewards, hookimpl, is_main_process, load_causal_lm, load_reward_model,
                         load_reward_tokenizer, read_json, read_offset, resolve_base, reward_model_dir, save_reward_model,
                         score_texts, seed_everything, write_checksums, zero_stage_of)
from harness_builtins.stages.common import sample_responses
from harness_builtins.stages.training import (
    META,
    TrainOptions,
    epoch_batches,
    load_checkpoint,
    make_accelerator,
    make_optimizer,
    save_checkpoint,
    steps_per_epoch,
    train_epoch,
)

MEMBERS_DIR = "members"  # checkpoints of members 1..N-1: <checkpoints>/members/<i>/ (as their models)


class BradleyTerryOptions(TrainOptions):
    epochs: int = Field(4, ge=1, description="Most passes over the feedback (early stopping may end sooner).")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    batch_size: int = Field(8, ge=1, description="Feedback records (preference groups) per optimizer step.")
    patience: int = Field(2, ge=1, description="Epochs without better held-out accuracy before stopping.")
    normalization_samples: int = Field(64, ge=1, description="SFT samples (on rm prompts) whose mean reward becomes 0.")
    max_new_tokens: int = Field(32, ge=1, description="Longest SFT sample drawn for the normalization.")
    members: int = Field(1, ge=1, description="Reward models trained (an ensemble for reward source 'ensemble' when ≥ 2).")
    bootstrap: bool = Field(True, description="Members after the first train on a bootstrap resample (by prompt, "
                                              "with replacement) of the training feedback; false: seed differs only.")
    base: str | None = Field(None, description="Start the reward model from this model, not π_SFT (e.g. a smaller "
                                               "one): 'embedded:<name>', a directory or a hub id. It reads text with "
                                               "its own tokenizer, so the policy's need not match.")


class Encoded:
    """A preference group as token ids: its prompt's, one per response, plus its pairs."""

    def __init__(self, group: PreferenceGroup, prompt_ids: list[int], response_ids: list[list[int]]) -> None:
        self.group, self.prompt_ids, self.response_ids, self.pairs = group, prompt_ids, response_ids, group.pairs


def rewards_of(model, groups: list[Encoded], pad_id: int, device, max_length: int) -> torch.Tensor:
    """Every response's reward, groups in order, each group's prompt computed once (``group_rewards``)."""
    return group_rewards(model, [g.prompt_ids for g in groups], [g.response_ids for g in groups], pad_id, device,
                         max_length)


class BradleyTerryRM:
    """Reward model trained with the Bradley–Terry loss on any feedback format's weighted pairs."""

    Options = BradleyTerryOptions

    def __init__(self, options: BradleyTerryOptions | None = None) -> None:
        self.options = options if options is not None else BradleyTerryOptions()

    def run(self, ctx: StageContext) -> dict[str, Any]:
        seed_everything(ctx.seed)
        records = ctx.feedback_records()
        tokenizer = load_reward_tokenizer(self._start(ctx))
        groups = encode_groups(tokenizer, ctx.world, ctx.preference_groups(records))
        train, heldout = split_by_prompt(records, groups, self.options.val_fraction, ctx.seed)
        layouts = [member_layout(ctx, i) for i in range(self.options.members)]
        samples = None if all(m.finished for m in layouts) else self._normalization_samples(ctx, tokenizer)
        results = [self._member(ctx, m, tokenizer, train, heldout, samples) for m in layouts]
        agreement = ctx.components.feedback.agreement(records)
        return stage_summary(ctx.world.gold(), agreement, len(records), train, heldout, results)

    def _member(self, ctx, member: MemberLayout, tokenizer, train, heldout, samples) -> MemberResult:
        """One reward model, trained now or (finished by an earlier attempt) loaded; scored on the held-out split."""
        if member.finished:
            model, offset, fit = self._load_member(ctx, member)
        else:
            model, offset, fit = self._train_member(ctx, member, tokenizer, train, heldout, samples)
        rewards = score_groups(model, heldout, tokenizer.pad_token_id, self.options.batch_size, self.options.max_length)
        return MemberResult(rewards=rewards, offset=offset, **fit)

    def _train_member(self, ctx, member: MemberLayout, tokenizer, train, heldout, samples):
        """Fresh head from the member's seed, BT training (on a bootstrap resample for i ≥ 1), offset, save."""
        seed_everything(member.seed)
        model, _ = load_reward_model(self._start(ctx))
        data = bootstrap_groups(train, member.seed) if member.index and self.options.bootstrap else train
        model, fit = self._train(ctx, model, tokenizer.pad_token_id, data, heldout, member)
        offset = self._normalization_offset(model, tokenizer, ctx.world, samples)
        if not np.isfinite(offset):  # finite weights can still overflow: such a reward model is no result
            raise TrainingDiverged(ctx.stage, member.description(self.options.members),
                                   f"the mean reward of SFT samples is {offset}", ctx.experiment)
        if is_main_process():
            save_reward_model(model, tokenizer, member.model_dir, offset)
        return model, offset, fit

    def _start(self, ctx):
        """The model a reward model starts from: π_SFT, or the ``base`` option resolved as ``[model] base`` is."""
        if self.options.base is None:
            return ctx.artifacts["sft"]
        return resolve_base(ctx.hook, self.options.base, ctx.experiment) if ctx.hook is not None else self.options.base

    @staticmethod
    def _load_member(ctx, member: MemberLayout):
        """A member an earlier attempt saved: its model, offset and fit stats (from its last checkpoint's meta)."""
        model, _ = load_reward_model(member.model_dir)
        meta = read_json(member.checkpoint / META)
        fit = {"best_epoch": meta["best_epoch"], "train_loss": meta["train_loss"]}
        return model.to(make_accelerator(ctx).device), read_offset(member.model_dir), fit

    # ------------------------------------------------------------------ training
    def _train(self, ctx, model, pad_id, train, heldout, member: MemberLayout):
        """Epochs of BT updates with early stopping; returns (best model, eval mode) and fit stats."""
        opts, accelerator = self.options, make_accelerator(ctx, model)
        n_steps = steps_per_epoch(len(train), opts.batch_size, accelerator)
        optimizer, scheduler = make_optimizer(model, opts, n_steps * opts.epochs)
        wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        meta = load_checkpoint(accelerator, member.checkpoint, (member.best_dir,)) or {"epoch": -1, "best_accuracy": -1.0, "best_epoch": -1, "train_loss": None}
        with ctx.progress_bar(n_steps * opts.epochs, member.description(opts.members)) as bar:
            for epoch in range(meta["epoch"] + 1, opts.epochs):
                if epoch - meta["best_epoch"] > opts.patience:
                    break
                loss = self._epoch(ctx, wrapped, optimizer, scheduler, accelerator, pad_id, train, epoch, bar, member)
                rewards = score_groups(wrapped, heldout, pad_id, opts.batch_size, opts.max_length, accelerator.device)
                accuracy = pair_accuracy(heldout, rewards)
                ctx.log({f"{member.prefix}/val_accuracy": accuracy}, (epoch + 1) * n_steps)
                meta = self._after_epoch(accelerator, wrapped, meta, epoch, loss, accuracy, member.best_dir)
                save_checkpoint(accelerator, member.checkpoint, meta)
        # ZeRO-3 leaves only partitions in the wrapped model: the best weights go into a fresh copy
        model = load_reward_model(self._start(ctx))[0] if zero_stage_of(accelerator) == 3 else accelerator.unwrap_model(wrapped)
        if member.best_dir.exists():
            model.load_state_dict(torch.load(member.best_dir / "weights.pt", weights_only=True))
        return model.eval(), {"best_epoch": meta["best_epoch"], "train_loss": meta["train_loss"]}

    def _epoch(self, ctx, model, optimizer, scheduler, accelerator, pad_id, train, epoch, bar, member) -> float:
        def loss_of(ids):
            batch = [train[j] for j in ids]
            return bt_loss(batch, rewards_of(model, batch, pad_id, accelerator.device, self.options.max_length))

        batches = epoch_batches(list(range(len(train))), self.options.batch_size, member.seed, epoch, accelerator)
        losses = train_epoch(ctx, model, optimizer, scheduler, accelerator, batches, loss_of, member.prefix,
                             self.options.log_every, epoch, bar)
        return float(np.mean(losses)) if losses else float("nan")

    @staticmethod
    def _after_epoch(accelerator, model, meta, epoch, loss, accuracy, best_dir) -> dict[str, Any]:
        """Keep the best-so-far weights on disk (so a resumed run still restores the best epoch)."""
        meta = {**meta, "epoch": epoch, "train_loss": loss}
        if accuracy > meta["best_accuracy"] or np.isnan(accuracy):  # no held-out data: keep the latest
            state = accelerator.get_state_dict(model)  # collective: gathers ZeRO-3 partitions onto rank 0
            if accelerator.is_main_process:
                best_dir.mkdir(parents=True, exist_ok=True)
                tmp = best_dir / "weights.pt.tmp"
                try:
                    torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
                except BaseException:  # a full disk: leave no partial file behind
                    tmp.unlink(missing_ok=True)
                    raise
                tmp.replace(best_dir / "weights.pt")
                write_checksums(best_dir)  # a resume checks them with the checkpoint's
            accelerator.wait_for_everyone()
            meta |= {"best_accuracy": accuracy, "best_epoch": epoch}
        return meta

    # ------------------------------------------------------------------ normalization
    def _normalization_samples(self, ctx, tokenizer) -> tuple[list, list[str]]:
        """SFT samples on ``rm`` prompts (drawn once, shared by every member so their offsets compare)."""
        prompts = ctx.world.prompts("rm")[: self.options.normalization_samples]
        policy, policy_tokenizer = load_causal_lm(ctx.artifacts["sft"])  # the RM's tokenizer may differ
        texts = sample_responses(policy, policy_tokenizer, ctx.world, prompts, max_new_tokens=self.options.max_new_tokens,
                                 seed=ctx.seed)
        return prompts, texts

    def _normalization_offset(self, model, tokenizer, world, samples) -> float:
        """Mean reward of the SFT samples: subtracting it centres π_SFT's reward at 0."""
        rewards = score_texts(model, tokenizer, world, *samples, max_length=self.options.max_length,
                              batch_size=self.options.batch_size)
        return float(rewards.mean())


# ----------------------------------------------------------------- ensemble members
@dataclass(frozen=True)
class MemberLayout:
    """Where member ``index`` of the ensemble writes its model and checkpoints, and the seed it trains from."""

    index: int
    seed: int
    model_dir: Path
    checkpoint: Path | None  # accelerate state + trainer meta (None: the run keeps no checkpoints)
    best_dir: Path  # the best epoch's weights so far

    @property
    def prefix(self) -> str:
        """Metric namespace: ``rm/…`` for member 0 (as with one model), ``rm/member<i>/…`` for the others."""
        return "rm" if self.index == 0 else f"rm/member{self.index}"

    @property
    def finished(self) -> bool:
        """Saved by an earlier attempt (the model is written last, atomically, after its final checkpoint)."""
        return (self.model_dir / "config.json").exists() and self.checkpoint is not None and (self.checkpoint / META).exists()

    def description(self, n_members: int) -> str:
        return "reward model" if n_members == 1 else f"reward model {self.index + 1}/{n_members}"


def member_layout(ctx: StageContext, index: int) -> MemberLayout:
    """Member 0 keeps the single-model paths (``model/``, ``checkpoints/rm``); member i uses ``members/<i>/``."""
    sub = Path(MEMBERS_DIR) / str(index) if index else Path()
    checkpoints = ctx.checkpoint_dir or ctx.stage_dir / "checkpoints"
    return MemberLayout(index=index, seed=ctx.seed + index, model_dir=reward_model_dir(ctx.stage_dir, index),
                        checkpoint=ctx.checkpoint_dir / sub / "rm" if ctx.checkpoint_dir else None,
                        best_dir=checkpoints / sub / "rm-best")


@dataclass(frozen=True)
class MemberResult:
    """One member's held-out rewards (raw, one tensor per group) and its fit."""

    rewards: list[torch.Tensor]
    offset: float
    best_epoch: int
    train_loss: float | None


def bootstrap_groups(groups: list[Encoded], seed: int) -> list[Encoded]:
    """A bootstrap resample by prompt: as many prompt draws (with replacement) as there are prompts,
    each bringing all of that prompt's groups, so one item's several raters stay together."""
    by_prompt: dict[str, list[Encoded]] = {}
    for g in groups:
        by_prompt.setdefault(g.group.prompt.id, []).append(g)
    ids = sorted(by_prompt)
    draws = random.Random(f"bootstrap/{seed}").choices(ids, k=len(ids))
    return [g for prompt_id in draws for g in by_prompt[prompt_id]]


def stage_summary(gold, agreement, n_records: int, train, heldout, results: list[MemberResult]) -> dict[str, Any]:
    """Member 0's numbers at the top level (as with one model); with several members, each one's and the ensemble's."""
    first = results[0]
    summary = {**accuracies(gold, heldout, first.rewards), "agreement": agreement, "n_records": n_records,
               "n_train_groups": len(train), "n_heldout_groups": len(heldout), "offset": first.offset,
               "best_epoch": first.best_epoch, "train_loss": first.train_loss}
    return summary | (ensemble_summary(gold, heldout, results) if len(results) > 1 else {})


def ensemble_summary(gold, heldout: list[Encoded], results: list[MemberResult]) -> dict[str, Any]:
    """Per-member fit and accuracy, and the accuracy of the members' mean (offset-corrected) reward."""
    mean = [torch.stack([r.rewards[j] - r.offset for r in results]).mean(0) for j in range(len(heldout))]
    members = [{**accuracies(gold, heldout, r.rewards), "best_epoch": r.best_epoch, "train_loss": r.train_loss,
                "offset": r.offset} for r in results]
    return {"members": members, **{f"ensemble_{k}": v for k, v in accuracies(gold, heldout, mean).items()}}


def accuracies(gold, heldout: list[Encoded], rewards: list[torch.Tensor]) -> dict[str, float]:
    """Held-out pair accuracy against the annotators and (when the world has a gold judge) against gold."""
    found = {"accuracy": pair_accuracy(heldout, rewards)}
    return found if gold is None else found | {"gold_accuracy": gold_accuracy(gold, heldout, rewards)}


# ----------------------------------------------------------------- data
def encode_groups(tokenizer, world, groups: list[PreferenceGroup]) -> list[Encoded]:
    def encode(group: PreferenceGroup) -> Encoded:
        prompt_ids = encode_prompt(tokenizer, world.chat_text(group.prompt))
        return Encoded(group, prompt_ids, [encode_response(tokenizer, r) for r in group.responses])

    return [encode(g) for g in groups]


def split_by_prompt(records: list[FeedbackRecord], groups, val_fraction: float, seed: int):
    """(train, held-out) groups that have pairs, split by prompt so no item (or its other raters' labels) leaks across."""
    ids = sorted({r.prompt.id for r in records})
    random.Random(seed).shuffle(ids)
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids)))) if val_fraction > 0 and len(ids) >= 2 else 0
    heldout_ids = set(ids[:n_val])
    train = [g for r, g in zip(records, groups, strict=True) if r.prompt.id not in heldout_ids and g.pairs]
    heldout = [g for r, g in zip(records, groups, strict=True) if r.prompt.id in heldout_ids and g.pairs]
    return train, heldout


# ----------------------------------------------------------------- loss and metrics
def bt_loss(groups: list[Encoded], rewards: torch.Tensor) -> torch.Tensor:
    """Mean over groups of Σ weight · −log σ(r_w − r_l); ``rewards`` holds the groups' responses in order."""
    total, start = rewards.new_zeros(()), 0
    for g in groups:
        r = rewards[start : start + len(g.response_ids)]
        w, l, weight = (torch.tensor(x, device=r.device) for x in zip(*g.pairs))
        total = total + (weight.to(r.dtype) * F.softplus(-(r[w] - r[l]))).sum()
        start += len(g.response_ids)
    return total / max(1, len(groups))


@torch.no_grad()
def score_groups(model, groups: list[Encoded], pad_id: int, batch_size: int, max_length: int,
                 device=None) -> list[torch.Tensor]:
    """Rewards of every response of every group (no grad), one tensor per group."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    out = []
    for start in range(0, len(groups), batch_size):
        chunk = groups[start : start + batch_size]
        flat = rewards_of(model, chunk, pad_id, device, max_length).cpu()
        out += list(torch.split(flat, [len(g.response_ids) for g in chunk]))
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
