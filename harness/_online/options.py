"""The options online optimizers share, in three layers:

- :class:`RolloutOptions`: what every online optimizer has — rollout, reward shaping, the KL
  coefficient β and its controller, PTX, memory (LoRA, offloading) and bookkeeping (checkpoints).
  No critic; the toolkit (:mod:`harness._online`) reads only these fields, plus
  ``critic()`` and ``needs_reference()``.
- :class:`OnlineOptions`: adds the critic and GAE (PPO, A2C, and a plugin's actor-critic).
- :class:`GroupOptions`: adds a group of samples per prompt and the clipped update without a
  critic (GRPO, RLOO); β = 0 loads no reference model.

An optimizer's own ``Options`` subclass one of them and add its knobs (PPO's clip, A2C's entropy bonus).
β (``init_kl_coef``) is declared once, by :func:`kl_coef_field`; a family or an optimizer that starts
from another β (GRPO: the paper's 0.04) redeclares it with the same field and its own default.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo

from harness._core.contracts import Options


def kl_coef_field(default: float) -> FieldInfo:
    """The ``init_kl_coef`` option, with ``default`` as its value: what β means is said here, once.

    ``init_kl_coef: float = kl_coef_field(0.04)`` in an optimizer's options changes its starting β only.
    """
    return Field(default, ge=0, description="β: weight of the KL(π_θ‖π_SFT) penalty at the start (an adaptive β "
                                            "moves from it). Without a critic (GroupOptions), 0 loads no reference "
                                            "model, and the KL to π_SFT is then not measured in training.")


class RolloutOptions(Options):
    """Options every online optimizer shares: rollout, reward shaping, β, PTX, memory, bookkeeping."""

    steps: int = Field(100, ge=1, description="Optimizer steps; each samples one batch of prompts.")
    batch_size: int = Field(64, ge=1, description="Responses per rollout (prompts × samples per prompt).")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate (of the policy, and of a critic's value head).")
    max_new_tokens: int = Field(24, ge=1, description="Longest response sampled.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probs use the same one).")
    init_kl_coef: float = kl_coef_field(0.05)
    adaptive_kl: bool = Field(True, description="Adapt β toward kl_target (Ziegler et al. 2019); false keeps β fixed.")
    kl_target: float = Field(6.0, gt=0, description="Target per-sequence KL(π_θ‖π_SFT) in nats, for the adaptive β.")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive β horizon in samples (larger adapts more slowly).")
    normalize_rewards: bool = Field(False, description="Normalize RM scores by a running mean/std before shaping.")
    ptx_coef: float = Field(0.0, ge=0, description="PPO-ptx: weight of the pretraining LM loss (0 disables).")
    ptx_batch_size: int = Field(8, ge=1, description="Pretraining texts per update when ptx_coef > 0.")
    ptx_max_len: int = Field(128, ge=2, description="Pretraining texts are truncated to this many tokens.")
    ref_refresh_every: int = Field(0, ge=0, description="Copy π_θ into the reference every N steps (0: never).")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    checkpoint_every: int = Field(50, ge=0, description="Checkpoint every N steps into checkpoint_dir (0: never).")
    # memory options (harness/_online/memory.py; docs/scaling.md)
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

    def critic(self) -> Literal["none", "separate", "shared"]:
        """Which critic setup builds: none here (an actor-critic's options say ``value_model``)."""
        return "none"

    def needs_reference(self) -> bool:
        """Whether setup loads π_SFT as a frozen reference (for the KL penalty and the ``<name>/kl`` metric)."""
        return True

    @model_validator(mode="after")
    def _lora_reference_is_fixed(self):
        if self.lora and self.ref_refresh_every:
            raise ValueError("lora = true keeps π_SFT as the adapter-off base, so it cannot be refreshed: "
                             "set ref_refresh_every = 0 or lora = false")
        return self


class OnlineOptions(RolloutOptions):
    """Options of an actor-critic optimizer (PPO, A2C): the shared ones plus the critic and GAE."""

    whiten_rewards: bool = Field(False, description="Scale per-token rewards to unit variance in each batch.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount of GAE (1: the episode is one response).")
    lam: float = Field(0.95, ge=0, le=1, description="λ of GAE: bias (0) vs variance (1) of the advantage.")
    whiten_advantages: bool = Field(True, description="Normalize advantages to mean 0, std 1 in each batch.")
    value_model: Literal["separate", "shared"] = Field(
        "separate", description="separate: own trunk from π_SFT + value head; shared: head on the policy's trunk.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")

    def critic(self) -> Literal["none", "separate", "shared"]:
        return self.value_model


class GroupOptions(RolloutOptions):
    """Options of a critic-free optimizer that samples a group per prompt (GRPO, RLOO)."""

    group_size: int = Field(4, ge=2, description="Samples per prompt (GRPO's G, RLOO's k); batch_size / group_size "
                                                 "prompts per step.")
    adaptive_kl: bool = Field(False, description="Adapt β toward kl_target (Ziegler et al. 2019); false keeps β fixed.")
    clip: float = Field(0.2, gt=0, description="ε of the clipped ratio: ratio is kept within [1−ε, 1+ε].")
    iterations: int = Field(1, ge=1, description="μ: passes over each rollout batch (the ratio moves from 1 after "
                                                 "the first gradient step).")
    minibatch_size: int | None = Field(None, ge=1, description="Responses per gradient step (none: the whole batch).")

    def needs_reference(self) -> bool:
        return self.init_kl_coef > 0

    @model_validator(mode="after")
    def _groups_fit(self):
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size = {self.batch_size} must be a multiple of group_size = {self.group_size} "
                             "(each prompt gets a whole group)")
        if self.ref_refresh_every and not self.needs_reference():
            raise ValueError("ref_refresh_every needs a reference, and init_kl_coef = 0 loads none: "
                             "set init_kl_coef > 0 or ref_refresh_every = 0")
        return self

    def minibatch(self) -> int:
        """Responses per gradient step."""
        return self.minibatch_size or self.batch_size

    def on_policy(self) -> bool:
        """One gradient step on the whole batch: the rollout's π_θ forward can serve the update."""
        return self.iterations == 1 and self.minibatch() == self.batch_size
