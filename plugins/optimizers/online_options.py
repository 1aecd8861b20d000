"""The options every online optimizer shares (PPO, A2C, a plugin's): rollout, reward shaping, KL, GAE,
critic, PTX, memory (LoRA, offloading) and bookkeeping (checkpoints).

An optimizer's own ``Options`` subclass :class:`OnlineOptions` and add its knobs (PPO's clip, A2C's
entropy bonus); the toolkit (:mod:`plugins.optimizers.online`) reads only these fields.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.contracts import Options


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
