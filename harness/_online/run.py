"""One online run: its state (:class:`RLRun`) and its setup from π_SFT (:func:`setup`).

:func:`setup` builds what the options ask for: the critic their ``critic()`` names (none for GRPO
and RLOO), and the reference only where ``needs_reference()`` (GRPO and RLOO with β = 0 load none,
as trl does). The trainable parts (policy + critic as one :class:`ActorCritic`) are handed to
accelerate, so DeepSpeed (ZeRO, offload), LoRA, activation checkpointing and a multi-process launch
are configuration, not code an optimizer writes. User errors are said before any model is loaded.
Every piece of a step (rollout, update, checkpoint) takes the run as its first argument.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness._core import distributed
from harness._core.compute import accelerator_for, adamw, enable_activation_checkpointing, zero_stage_of
from harness._core.contracts import RewardSource, StageContext
from harness._core.errors import HarnessError
from harness._core.generation import response_forward
from harness._core.models import load_causal_lm
from harness._online.memory import (AdapterOffReference, frozen_on_device, lora_policy, offloading,
                                    reward_modules)
from harness._online.objectives import PretrainingBatches, RunningMoments, kl_controller
from harness._online.options import RolloutOptions
from harness._online.value import build_critic


@dataclass
class RLRun:
    """The state of one online run: models, optimizer, controllers, and what has been measured."""

    ctx: StageContext
    options: RolloutOptions
    name: str
    reward: RewardSource
    accelerator: Any
    tokenizer: Any
    policy: torch.nn.Module
    reference: torch.nn.Module | None  # None when the options need none (GRPO, RLOO with β = 0)
    critic: torch.nn.Module  # a NoCritic (no parameters, values 0) for a critic-free optimizer
    optimizer: torch.optim.Optimizer
    kl_ctl: Any  # AdaptiveKLController | FixedKLController: β is kl_ctl.value
    ptx: PretrainingBatches | None
    prompts: list  # the world's "rl" prompts
    gold: Any  # the world's gold judge: measured every step, never optimized
    model: Any = None  # policy + critic as one prepared module (a DeepSpeed engine, DDP, or the module itself)
    processes: int = 1  # processes of the launch; each holds batch_size / processes responses
    score_moments: RunningMoments = field(default_factory=RunningMoments)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def shared_critic(self) -> bool:
        return self.options.critic() == "shared"

    @property
    def offloading(self) -> bool:
        """Whether the frozen models visit the accelerator only for their forward (``offload_frozen``, not on CPU)."""
        return offloading(self.options, self.accelerator.device)

    def frozen_modules(self) -> list[torch.nn.Module]:
        """The models ``offload_frozen`` moves: the reference's and the reward source's."""
        return self._reference_modules() + reward_modules(self.reward)

    def reward_on_device(self):
        """The reward model on the accelerator for the block (with ``offload_frozen``; else where it is)."""
        return frozen_on_device(reward_modules(self.reward), self.accelerator.device, self.offloading)

    def reference_on_device(self):
        """A full-copy reference on the accelerator for the block (with ``offload_frozen``; else where it is)."""
        return frozen_on_device(self._reference_modules(), self.accelerator.device, self.offloading)

    def _reference_modules(self) -> list[torch.nn.Module]:
        """The reference as a module to move; none for an adapter-off reference (it is the policy) or no reference."""
        return [self.reference] if isinstance(self.reference, torch.nn.Module) else []

    @contextmanager
    def generation_policy(self):
        """π_θ ready for ``generate``: under ZeRO-3 its partitions are gathered once for the whole call
        (as trl does) instead of layer by layer for every new token."""
        if zero_stage_of(self.accelerator) != 3:
            yield self.policy
            return
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(self.model.parameters())):
            remove_hooks(self.model)  # the per-layer gather hooks would fetch what is already here
            try:
                yield self.policy
            finally:
                add_hooks(self.model)

    @contextmanager
    def timed(self, key: str):
        """Add the block's wall time to ``seconds[key]`` (generation's share is reported in the summary)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start


# --------------------------------------------------------------------------- models from π_SFT
def load_models(sft_dir: Path, options: RolloutOptions):
    """(policy, frozen reference or None, critic, tokenizer), all from π_SFT; dropout off so log-prob ratios are exact.

    With ``lora`` the policy is π_SFT + LoRA adapters and the reference is that same model with the
    adapters disabled: one copy of the base weights serves both. Options that need no reference get None.
    """
    policy, tokenizer = load_causal_lm(sft_dir)
    if options.lora:
        policy = lora_policy(policy, options)
    reference = load_reference(sft_dir, options, policy)
    critic = build_critic(options.critic(), sft_dir, policy.config.hidden_size)
    return policy, reference, critic, tokenizer


def load_reference(sft_dir: Path, options: RolloutOptions, policy):
    """π_SFT, frozen: the adapter-off policy under LoRA, a second copy otherwise, or None when not needed."""
    if not options.needs_reference():
        return None
    if options.lora:
        return AdapterOffReference(policy)
    reference, _ = load_causal_lm(sft_dir)
    return reference.requires_grad_(False)


class ActorCritic(torch.nn.Module):
    """Policy and critic as one module: DeepSpeed builds one engine per prepared model + optimizer, and
    DDP wants one forward per backward. ``forward`` is the update's forward: π_θ's logits at the
    response positions and V(s_t), the critic reading the policy's hidden states when it shares them."""

    def __init__(self, policy: torch.nn.Module, critic: torch.nn.Module):
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, query_ids, query_mask, response_ids, response_mask):
        shared = getattr(self.critic, "shares_trunk", False)
        logits, hidden = response_forward(self.policy, query_ids, response_ids, response_mask, query_mask,
                                          hidden=shared)
        return logits, self.critic(query_ids, query_mask, response_ids, response_mask, hidden)


# --------------------------------------------------------------------------- setup
def setup(ctx: StageContext, options: RolloutOptions, reward: RewardSource, name: str) -> RLRun:
    """Build everything a run needs and hand the trainable parts to accelerate (so DeepSpeed is configuration)."""
    from accelerate.utils import set_seed

    _check_inputs(ctx, reward, name)
    processes = _check_processes(ctx, options, name)
    set_seed(ctx.seed)
    accelerator = accelerator_for(ctx.experiment.compute, gradient_clipping=options.max_grad_norm)
    policy, reference, critic, tokenizer = load_models(ctx.artifacts["sft"], options)
    both = ActorCritic(policy, critic)
    if ctx.experiment.compute.activation_checkpointing:
        _checkpoint_activations(both, ctx.experiment.compute)
    trainable = [p for p in both.parameters() if p.requires_grad]
    optimizer = adamw(trainable, lr=options.lr, eps=1e-5, weight_decay=0.0)
    model, optimizer = accelerator.prepare(both, optimizer)
    run = RLRun(ctx=ctx, options=options, name=name, reward=reward, accelerator=accelerator, tokenizer=tokenizer,
                policy=both.policy, reference=_place_reference(reference, options, accelerator), critic=both.critic,
                optimizer=optimizer,
                kl_ctl=kl_controller(options.adaptive_kl, options.init_kl_coef, options.kl_target, options.kl_horizon),
                ptx=_pretraining_batches(ctx, options, tokenizer), prompts=_rl_prompts(ctx, name),
                gold=ctx.world.gold(), model=model, processes=processes)
    _register_checkpointed(run)
    if run.offloading:  # parked on the CPU; each visits the accelerator for its forward only
        for module in run.frozen_modules():
            module.to("cpu")
    return run


def _place_reference(reference, options: RolloutOptions, accelerator):
    """On the run's device, or left on the CPU (where it was loaded) when ``offload_frozen`` parks it there."""
    return reference if reference is None or options.offload_frozen else reference.to(accelerator.device)


def _check_inputs(ctx: StageContext, reward: RewardSource | None, name: str) -> None:
    """Errors a user can cause, said before any model is loaded."""
    if reward is None:
        raise HarnessError(f"optimizer {name!r} is online and needs a reward source ([reward] in the experiment).")
    if "sft" not in ctx.artifacts:
        raise HarnessError(f"optimizer {name!r} starts from the SFT model, but no 'sft' artifact was produced.")


def _check_processes(ctx: StageContext, options: RolloutOptions, name: str) -> int:
    """Several processes split every batch and minibatch evenly (the global sizes stay the configured ones);
    with a group of samples per prompt, each process takes whole groups."""
    n = distributed.world_size()
    for key in ("batch_size", "minibatch_size"):
        value = getattr(options, key, None) or n
        if value % n:
            raise HarnessError(f"[optimizer.{name}] {key} = {value} must be a multiple of the {n} launched processes "
                               f"(each takes an equal share of it).")
    group = getattr(options, "group_size", 1)
    if (options.batch_size // group) % n:
        raise HarnessError(f"[optimizer.{name}] batch_size / group_size = {options.batch_size // group} prompts must "
                           f"be a multiple of the {n} launched processes (each takes whole groups).")
    if options.ref_refresh_every and zero_stage_of(ctx.experiment.compute) == 3:
        raise HarnessError(f"[optimizer.{name}] ref_refresh_every needs the policy's full weights on every process; "
                           "use it with [compute] zero_stage <= 2.")
    return n


def _checkpoint_activations(both: ActorCritic, compute) -> None:
    """HF checkpointing acts in train mode only: train mode with every dropout at 0 keeps log-probs exact."""
    for module in (both.policy, getattr(both.critic, "trunk", None)):
        if module is None:
            continue
        enable_activation_checkpointing(module, compute)
        for sub in module.modules():
            if isinstance(sub, torch.nn.Dropout):
                sub.p = 0.0
            if isinstance(getattr(sub, "attention_dropout", None), float):
                sub.attention_dropout = 0.0
        module.train()


def _pretraining_batches(ctx: StageContext, options: RolloutOptions, tokenizer) -> PretrainingBatches | None:
    if options.ptx_coef <= 0:
        return None
    return PretrainingBatches(ctx.world.pretraining_texts("train"), tokenizer, options.ptx_batch_size,
                              options.ptx_max_len)


def _rl_prompts(ctx: StageContext, name: str) -> list:
    prompts = list(ctx.world.prompts("rl"))
    if not prompts:
        raise HarnessError(f"optimizer {name!r}: the world {ctx.world.name!r} has no 'rl' prompts.")
    return prompts


def _register_checkpointed(run: RLRun) -> None:
    """Objects with state outside the prepared models/optimizer that a checkpoint must restore."""
    for obj in (run.kl_ctl, run.score_moments):
        run.accelerator.register_for_checkpointing(obj)
    if run.options.ref_refresh_every:  # a refreshed reference is no longer π_SFT: it must be saved too
        run.accelerator.register_for_checkpointing(run.reference)
