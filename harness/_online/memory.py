"""Memory options of the RL stage: a LoRA policy whose reference is itself, and offloaded frozen models.

The RL stage holds four models — policy, critic, reference π_SFT, reward model — and, for the
two that train, gradients and two AdamW moments each. The options here (all in ``RolloutOptions``):

- ``lora``: the policy is π_SFT plus LoRA adapters (peft); only the adapters (and the value head)
  train, so base weights have no gradients or optimizer state. LoRA's B matrices start at zero,
  so at step 0 the policy *is* π_SFT, and the reference is the same model with its adapters
  switched off (:class:`AdapterOffReference`): no second copy of the weights is loaded.
- ``offload_frozen``: the frozen models (a full-copy reference, the reward model) live on the CPU
  and visit the accelerator only for their forward pass (:func:`frozen_on_device`). On CPU the
  policy is already where they are, so it is a no-op.
A shared value head (``value_model = "shared"``) is the third saving; it lives in :mod:`value`.
These are the mechanisms; the run (:class:`harness._online.run.RLRun`) applies them to its models.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from harness._core.contracts import Offloadable
from harness._core.errors import HarnessError
from harness._core.generation import unwrap_model

if TYPE_CHECKING:  # pragma: no cover
    from harness._online.options import RolloutOptions


# --------------------------------------------------------------------------- LoRA
def lora_policy(model: nn.Module, options: "RolloutOptions") -> nn.Module:
    """π_SFT wrapped in fresh LoRA adapters (B = 0: it starts equal to π_SFT); the base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        target_modules=options.lora_target_modules, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # peft: none of the target modules exist in this architecture
        raise HarnessError(f"lora_target_modules = {options.lora_target_modules!r} does not fit this model: {err} "
                           f"Use 'all-linear' or the names of its linear layers.") from None


class AdapterOffReference:
    """π_SFT without a second copy: the LoRA policy called with its adapters disabled, without gradients.

    It stands where a reference model stands (``sequence_logprobs(reference, …)``); it owns no
    parameters, lives wherever the policy lives, and cannot be refreshed or offloaded.
    """

    def __init__(self, policy: nn.Module):
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any):
        with torch.no_grad(), unwrap_model(self.policy).disable_adapter():
            return self.policy(*args, **kwargs)

    def to(self, *args: Any, **kwargs: Any) -> "AdapterOffReference":  # noqa: ARG002 - moves with the policy
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        return iter(())

    @property
    def config(self):
        return self.policy.config

    @property
    def device(self) -> torch.device:
        return self.policy.device


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A peft-injected model's weights under the base architecture's names (no ``lora_``/``base_layer`` keys)."""
    return {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}


def merged_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's weights with each adapter's W + s·BA (peft's ``get_delta_weight``) folded in.

    Nothing in the model is changed (no in-place merge and unmerge, whose rounding would leave the
    base weights no longer exactly π_SFT); merged layers are built one at a time, on the CPU.
    """
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    state = plain_state_dict(base)
    with torch.no_grad():
        for name, layer in base.named_modules():
            if isinstance(layer, LoraLayer) and not layer.merged:
                weight = layer.get_base_layer().weight
                delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)
                state[f"{name}.weight"] = (weight + delta).cpu()
    return state


def save_merged(peft_model: nn.Module, path) -> None:
    """Save π_θ as a plain causal LM (``from_pretrained`` loads it with no peft): adapters merged in."""
    peft_model.get_base_model().save_pretrained(path, state_dict=merged_state_dict(peft_model))


# --------------------------------------------------------------------------- offloading
def reward_modules(reward: Any) -> list[nn.Module]:
    """The torch modules a reward source holds (``offloadable_modules()`` when it says; else its attributes).

    Without the method: module-valued attributes, and those of objects in list/tuple attributes
    (an ensemble's members), one level deep.
    """
    if isinstance(reward, Offloadable):
        return list(reward.offloadable_modules())
    found: list[nn.Module] = []
    for value in vars(reward).values() if hasattr(reward, "__dict__") else ():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, nn.Module):
                found.append(item)
            elif hasattr(item, "__dict__") and not isinstance(item, type):
                found += [v for v in vars(item).values() if isinstance(v, nn.Module)]
    return found


def offloading(options: "RolloutOptions", device) -> bool:
    """Whether frozen models move between CPU and the accelerator: asked for, and ``device`` is not the CPU."""
    return options.offload_frozen and torch.device(device).type != "cpu"


@contextmanager
def frozen_on_device(modules: list[nn.Module], device, offload: bool) -> Iterator[None]:
    """With ``offload``: ``modules`` on ``device`` for the block, back on the CPU after it (also on error)."""
    if not offload:
        yield
        return
    for module in modules:
        module.to(device)
    try:
        yield
    finally:
        for module in modules:
            module.to("cpu")


# --------------------------------------------------------------------------- measuring
def parameter_bytes(*modules: Any) -> int:
    """Bytes of the distinct parameter/buffer storages the modules hold (shared weights counted once)."""
    seen: dict[int, int] = {}
    for module in modules:
        tensors = list(module.parameters()) + (list(module.buffers()) if isinstance(module, nn.Module) else [])
        for t in tensors:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
