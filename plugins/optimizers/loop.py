"""What every online optimizer shares: options, setup from π_SFT, the step loop, checkpoints, saving.

An optimizer module (``ppo.py``, ``a2c.py``) supplies one function, ``step(run, step) -> metrics``,
written in its paper's order; this module runs it ``steps`` times through ``ctx.step`` (the
``optimizer_step`` hook, where guards and timers wrap it), logs, checkpoints atomically every
``checkpoint_every`` steps, resumes from the latest checkpoint, and saves the policy in HF format.
"""
from __future__ import annotations

import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import Field, model_validator

from harness import distributed
from harness.compute import accelerator_for, enable_activation_checkpointing, zero_stage_of
from harness.contracts import Options, RewardSource, StageContext
from harness.errors import HarnessError
from harness.io import atomic_directory, atomic_write_json, read_json
from harness.models import load_causal_lm
from plugins.optimizers.advantages import RunningMoments
from plugins.optimizers.kl import kl_controller
from plugins.optimizers.memory import AdapterOffReference, lora_policy, offload_frozen_models, save_merged
from plugins.optimizers.ptx import PretrainingBatches, ptx_loss
from plugins.optimizers.value import build_critic

SUMMARY_WINDOW = 10  # the summary's "recent" metrics average the last this-many steps


class OnlineOptions(Options):
    """Options every online optimizer shares: rollout, reward shaping, KL, GAE, critic, PTX, bookkeeping."""

    steps: int = Field(100, ge=1, description="Optimizer steps; each samples one batch of prompts.")
    batch_size: int = Field(64, ge=1, description="Prompts (and so responses) per rollout.")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate for the policy and the value head.")
    max_new_tokens: int = Field(24, ge=1, description="Longest response sampled.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probs use the same one).")
    init_kl_coef: float = Field(0.05, ge=0, description="β of the per-token reward −β·(log π_θ − log π_SFT), at start.")
    adaptive_kl: bool = Field(True, description="Adapt β toward kl_target (Ziegler et al. 2019); false keeps β fixed.")
    kl_target: float = Field(6.0, gt=0, description="Target per-sequence KL(π_θ‖π_SFT) in nats, for the adaptive β.")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive β horizon in samples (larger adapts more slowly).")
    normalize_rewards: bool = Field(False, description="Normalize RM scores by a running mean/std before shaping.")
    whiten_rewards: bool = Field(False, description="Scale per-token rewards to unit variance in each batch.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount of GAE (1: the episode is one response).")
    lam: float = Field(0.95, ge=0, le=1, description="λ of GAE: bias (0) vs variance (1) of the advantage.")
    whiten_advantages: bool = Field(True, description="Normalize advantages to mean 0, std 1 in each batch.")
    value_model: Literal["separate", "shared"] = Field(
        "separate", description="separate: own trunk from π_SFT + value head; shared: head on the policy's trunk.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")
    ptx_coef: float = Field(0.0, ge=0, description="PPO-ptx: weight of the pretraining LM loss (0 disables).")
    ptx_batch_size: int = Field(8, ge=1, description="Pretraining texts per update when ptx_coef > 0.")
    ptx_max_len: int = Field(128, ge=2, description="Pretraining texts are truncated to this many tokens.")
    ref_refresh_every: int = Field(0, ge=0, description="Copy π_θ into the reference every N steps (0: never).")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    checkpoint_every: int = Field(50, ge=0, description="Checkpoint every N steps into checkpoint_dir (0: never).")
    # memory options (plugins/optimizers/memory.py; docs/scaling.md)
    lora: bool = Field(False, description="Train LoRA adapters on π_SFT instead of all weights; the reference is the "
                                          "same model with adapters disabled (no second copy).")
    lora_r: int = Field(16, ge=1, description="LoRA rank r.")
    lora_alpha: float = Field(32.0, gt=0, description="LoRA α: the adapter update is scaled by α/r.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (0 keeps log-prob ratios exact).")
    lora_target_modules: str | list[str] = Field(
        "all-linear", description="Layers that get adapters: 'all-linear' (every linear layer but the LM head; "
                                  "Llama: q,k,v,o,gate,up,down_proj) or a list of module names.")
    offload_frozen: bool = Field(False, description="Keep the reference and reward model on the CPU, moving each to "
                                                    "the accelerator only for its forward pass (a no-op on CPU).")

    @model_validator(mode="after")
    def _lora_reference_is_fixed(self):
        if self.lora and self.ref_refresh_every:
            raise ValueError("lora = true keeps π_SFT as the adapter-off base, so it cannot be refreshed: "
                             "set ref_refresh_every = 0 or lora = false")
        return self


@dataclass
class RLRun:
    """The state of one online run: models, optimizer, controllers, and what has been measured."""

    ctx: StageContext
    options: OnlineOptions
    name: str
    reward: RewardSource
    accelerator: Any
    tokenizer: Any
    policy: torch.nn.Module
    reference: torch.nn.Module
    critic: torch.nn.Module
    optimizer: torch.optim.Optimizer
    kl_ctl: Any  # AdaptiveKLController | FixedKLController
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
        return self.options.value_model == "shared"

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


# --------------------------------------------------------------------------- setup
def load_models(sft_dir: Path, options: OnlineOptions):
    """(policy, frozen reference, critic, tokenizer), all from π_SFT; dropout off so log-prob ratios are exact.

    With ``lora`` the policy is π_SFT + LoRA adapters and the reference is that same model with the
    adapters disabled: one copy of the base weights serves both.
    """
    policy, tokenizer = load_causal_lm(sft_dir)
    if options.lora:
        policy = lora_policy(policy, options)
        reference = AdapterOffReference(policy)
    else:
        reference, _ = load_causal_lm(sft_dir)
        reference.requires_grad_(False)
    critic = build_critic(options.value_model, sft_dir, policy.config.hidden_size)
    return policy, reference, critic, tokenizer


class ActorCritic(torch.nn.Module):
    """Policy and critic as one module: DeepSpeed builds one engine per prepared model + optimizer, and
    DDP wants one forward per backward. ``forward`` is the update's forward: π_θ's logits at the
    response positions and V(s_t), the critic reading the policy's hidden states when it shares them."""

    def __init__(self, policy: torch.nn.Module, critic: torch.nn.Module):
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, query_ids, query_mask, response_ids, response_mask):
        from harness.generation import response_forward

        shared = getattr(self.critic, "shares_trunk", False)
        logits, hidden = response_forward(self.policy, query_ids, response_ids, response_mask, query_mask,
                                          hidden=shared)
        return logits, self.critic(query_ids, query_mask, response_ids, response_mask, hidden)


def setup(ctx: StageContext, options: OnlineOptions, reward: RewardSource, name: str) -> RLRun:
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
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, eps=1e-5, weight_decay=0.0)
    model, optimizer = accelerator.prepare(both, optimizer)
    run = RLRun(ctx=ctx, options=options, name=name, reward=reward, accelerator=accelerator, tokenizer=tokenizer,
                policy=both.policy, reference=_place_reference(reference, options, accelerator), critic=both.critic, optimizer=optimizer,
                kl_ctl=kl_controller(options.adaptive_kl, options.init_kl_coef, options.kl_target, options.kl_horizon),
                ptx=_pretraining_batches(ctx, options, tokenizer), prompts=_rl_prompts(ctx, name),
                gold=ctx.world.gold(), model=model, processes=processes)
    _register_checkpointed(run)
    offload_frozen_models(run)
    return run


def _place_reference(reference, options: OnlineOptions, accelerator):
    """On the run's device, or left on the CPU (where it was loaded) when ``offload_frozen`` parks it there."""
    return reference if options.offload_frozen else reference.to(accelerator.device)


def _check_inputs(ctx: StageContext, reward: RewardSource | None, name: str) -> None:
    """Errors a user can cause, said before any model is loaded."""
    if reward is None:
        raise HarnessError(f"optimizer {name!r} is online and needs a reward source ([reward] in the experiment).")
    if "sft" not in ctx.artifacts:
        raise HarnessError(f"optimizer {name!r} starts from the SFT model, but no 'sft' artifact was produced.")


def _check_processes(ctx: StageContext, options: OnlineOptions, name: str) -> int:
    """Several processes split every batch and minibatch evenly (the global sizes stay the configured ones)."""
    n = distributed.world_size()
    for key in ("batch_size", "minibatch_size"):
        value = getattr(options, key, n)
        if value % n:
            raise HarnessError(f"[optimizer.{name}] {key} = {value} must be a multiple of the {n} launched processes "
                               f"(each takes an equal share of it).")
    if options.ref_refresh_every and zero_stage_of_compute(ctx) == 3:
        raise HarnessError(f"[optimizer.{name}] ref_refresh_every needs the policy's full weights on every process; "
                           "use it with [compute] zero_stage <= 2.")
    return n


def zero_stage_of_compute(ctx: StageContext) -> int:
    compute = ctx.experiment.compute
    return compute.zero_stage if compute.uses_deepspeed and not compute.deepspeed_config else 0


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


def _pretraining_batches(ctx: StageContext, options: OnlineOptions, tokenizer) -> PretrainingBatches | None:
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


# --------------------------------------------------------------------------- pieces of a step
def normalized_scores(run: RLRun, scores: torch.Tensor) -> torch.Tensor:
    """RM scores, divided by a running std and centred by a running mean when ``normalize_rewards``."""
    if not run.options.normalize_rewards:
        return scores
    everyone = [x for part in distributed.gather_objects(scores.tolist()) for x in part]
    run.score_moments.update(torch.tensor(everyone, dtype=scores.dtype))  # the same moments in every process
    return run.score_moments.normalize(scores)


def pretraining_loss(run: RLRun) -> torch.Tensor | None:
    """The PPO-ptx term on a fresh pretraining batch, or None when ``ptx_coef`` is 0."""
    if run.ptx is None:
        return None
    return ptx_loss(run.policy, *run.ptx.sample(run.accelerator.device))


def apply_update(run: RLRun, loss: torch.Tensor) -> dict[str, float]:
    """One optimizer step on ``loss`` with global gradient-norm clipping; returns {"grad_norm": norm before clipping}.

    Under DeepSpeed the engine steps and clips inside ``backward`` (``gradient_clipping`` in its config;
    ``optimizer.step`` is then a no-op) and ``clip_grad_norm_`` reports the engine's norm, or None
    where the engine keeps none, in which case no grad_norm is reported rather than a made-up one.
    """
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    norm = run.accelerator.clip_grad_norm_(params, run.options.max_grad_norm)
    run.optimizer.step()
    return {} if norm is None else {"grad_norm": float(norm)}


def _refresh_reference(run: RLRun, step: int) -> None:
    """Every ``ref_refresh_every`` steps the KL penalty starts measuring from the current policy."""
    every = run.options.ref_refresh_every
    if every and step % every == 0:
        run.reference.load_state_dict(run.policy.state_dict())


# --------------------------------------------------------------------------- checkpoints
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
    with distributed.shared_directory(root / f"step-{step:06d}") as tmp:
        run.accelerator.save_state(str(tmp), safe_serialization=False)
        if run.accelerator.is_main_process:
            atomic_write_json(tmp / "trainer_state.json",
                              {"step": step, "history": run.history, "seconds": dict(run.seconds)})
    if run.accelerator.is_main_process:
        for old in _checkpoints(root)[:-1]:
            shutil.rmtree(old, ignore_errors=True)


def resume(run: RLRun) -> int:
    """Restore the latest checkpoint, if any; returns the step it was taken after (0 for a fresh run)."""
    found = _checkpoints(run.ctx.checkpoint_dir)
    if not found:
        return 0
    run.accelerator.load_state(str(found[-1]))
    state = read_json(found[-1] / "trainer_state.json", fix=f"delete the checkpoint directory {found[-1].name} "
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


# --------------------------------------------------------------------------- the loop
StepFn = Callable[[RLRun, int], dict[str, float]]


def _run_step(run: RLRun, step: int, step_fn: StepFn) -> dict[str, float]:
    """One step through the ``optimizer_step`` hook when the context offers it."""
    def run_step() -> dict[str, float]:
        with run.timed("total"):
            return step_fn(run, step)

    if hasattr(run.ctx, "step"):
        return run.ctx.step(step, run_step)
    return run_step()


def train_online(ctx: StageContext, reward: RewardSource, options: OnlineOptions, name: str,
                 step_fn: StepFn) -> dict[str, Any]:
    """Set up, resume, run ``step_fn`` for the remaining steps, save the policy; return the summary."""
    run = setup(ctx, options, reward, name)
    start = resume(run)
    with ctx.progress_bar(options.steps, name) as bar:
        bar.update(start)
        for step in range(start + 1, options.steps + 1):
            metrics = _run_step(run, step, step_fn)
            ctx.log(metrics, step)
            run.history.append({"step": step, **metrics})
            if hasattr(ctx, "periodic_evaluation"):
                ctx.periodic_evaluation(step, run.accelerator.unwrap_model(run.policy))
            _refresh_reference(run, step)
            if options.checkpoint_every and step % options.checkpoint_every == 0 and step < options.steps:
                save_checkpoint(run, step)
            bar.update(1)
    save_policy(run)
    return summarize(run, start)


def summarize(run: RLRun, resumed_from: int) -> dict[str, Any]:
    """JSON-ready: final and recent-mean value of every metric, wall time and generation's share of it."""
    rows = run.history
    recent = rows[-SUMMARY_WINDOW:]
    keys = [k for k in (rows[-1] if rows else {}) if k != "step"]
    total, generation = run.seconds["total"], run.seconds["generation"]
    return {
        "optimizer": run.name,
        "steps": rows[-1]["step"] if rows else 0,
        "resumed_from": resumed_from,
        "final": {k: rows[-1][k] for k in keys},
        f"mean_last_{SUMMARY_WINDOW}": {k: _mean([r[k] for r in recent if k in r]) for k in keys},
        "wall_s": total,
        "generation_s": generation,
        "reward_s": run.seconds["reward"],
        "generation_share": generation / total if total else 0.0,
        "s_per_step": total / len(rows) if rows else 0.0,
        "curve": training_curve(rows, run.name),
    }


CURVE_POINTS = 400  # at most this many steps of the training curve are kept in the summary


def training_curve(rows: list[dict[str, float]], name: str) -> list[dict[str, float]]:
    """Proxy reward, gold reward and KL per step (evenly thinned): what comparison plots and
    the over-optimization evaluator read from ``results.json``."""
    stride = max(1, -(-len(rows) // CURVE_POINTS))
    keep = {"reward/proxy": "reward/proxy", "reward/gold": "reward/gold", f"{name}/kl": "kl"}
    return [{"step": r["step"], **{new: r[old] for old, new in keep.items() if old in r}} for r in rows[::stride]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
