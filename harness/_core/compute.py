"""The seam between training loops and hardware: every loop gets its Accelerator here.

On CPU this is plain PyTorch in one process. The ``[compute]`` table of an experiment decides
threads, DeepSpeed (ZeRO stage, offload, or a DeepSpeed JSON), mixed precision and activation
checkpointing, so scaling up is configuration, not a rewrite. A launcher (``torchrun``,
``deepspeed``, ``accelerate launch``) starting several processes is picked up from its
environment; see ``docs/scaling.md``.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from harness._core.options import Options
from harness._core.errors import HarnessError

DEEPSPEED_KNOBS = ("zero_stage", "offload_optimizer", "offload_params", "mixed_precision")


class ComputeOptions(Options):
    """The ``[compute]`` table."""

    backend: Literal["auto", "cpu", "deepspeed"] = Field(
        "auto", description="auto: GPU when one is visible, else CPU (plain PyTorch); deepspeed: a DeepSpeed engine.")
    threads: int = Field(2, ge=1, description="torch intra-op threads on CPU (2 is fastest on 2 cores).")
    zero_stage: int = Field(2, ge=0, le=3, description=(
        "DeepSpeed ZeRO stage: 0 off, 1 partitions optimizer state, 2 also gradients, 3 also parameters."))
    offload_optimizer: Literal["none", "cpu"] = Field(
        "none", description="Keep optimizer state (and its step) in CPU memory (ZeRO-Offload; needs zero_stage >= 1).")
    offload_params: Literal["none", "cpu"] = Field(
        "none", description="Keep parameters in CPU memory between uses (ZeRO-Infinity; needs zero_stage = 3).")
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass instead of storing them (less memory, ~30% slower).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="no: fp32; bf16 (Ampere+ GPUs; allowed but slow on CPU); fp16 (CUDA GPUs only).")
    deepspeed_config: str = Field("", description=(
        "Path to a DeepSpeed JSON used as is (instead of zero_stage/offload_*/mixed_precision); needs backend = 'deepspeed'."))

    @model_validator(mode="after")
    def _consistent(self) -> "ComputeOptions":
        knobs = [k for k in DEEPSPEED_KNOBS if k in self.model_fields_set]
        if self.deepspeed_config:
            if knobs:
                raise ValueError(f"deepspeed_config and {', '.join(knobs)} are mutually exclusive: set "
                                 f"{', '.join(knobs)} inside {self.deepspeed_config}, or drop deepspeed_config")
            if self.backend != "deepspeed":
                raise ValueError("deepspeed_config needs backend = 'deepspeed'")
            read_deepspeed_json(self.deepspeed_config)
        deepspeed_only = [k for k in ("zero_stage", "offload_optimizer", "offload_params") if k in knobs]
        if deepspeed_only and self.backend != "deepspeed":
            raise ValueError(f"{deepspeed_only[0]} needs backend = 'deepspeed' (backend = {self.backend!r})")
        if self.offload_params != "none" and self.zero_stage != 3:
            raise ValueError(f"offload_params = {self.offload_params!r} needs zero_stage = 3 (zero_stage = {self.zero_stage})")
        if self.offload_optimizer != "none" and self.zero_stage == 0:
            raise ValueError(f"offload_optimizer = {self.offload_optimizer!r} needs zero_stage >= 1 (zero_stage = 0)")
        return self

    @property
    def uses_deepspeed(self) -> bool:
        return self.backend == "deepspeed"

    @property
    def uses_gpu(self) -> bool:
        """A CUDA GPU is visible and the backend does not ask for the CPU."""
        return torch.cuda.is_available() and self.backend != "cpu"


def read_deepspeed_json(path: str) -> dict[str, Any]:
    """A user's DeepSpeed JSON; harness builds the optimizer and schedule itself, so those blocks are refused."""
    try:
        config = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"deepspeed_config = {path!r}: no such file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"deepspeed_config = {path!r}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"deepspeed_config = {path!r}: expected a JSON object")
    blocks = [k for k in ("optimizer", "scheduler") if k in config]
    if blocks:
        raise ValueError(f"deepspeed_config = {path!r}: remove its {' and '.join(blocks)} block(s); the harness "
                         "builds AdamW and the learning-rate schedule from each stage's options")
    return config


def deepspeed_config(options: ComputeOptions, gradient_clipping: float | None = None) -> dict[str, Any]:
    """The DeepSpeed config dict for these options (from ``deepspeed_config`` or from the knobs).

    Batch sizes are nominal (1 per device, no accumulation): the harness loops build their own
    batches, and DeepSpeed only uses these numbers for its throughput log. Clipping belongs to the
    engine under DeepSpeed, so the stage's ``max_grad_norm`` goes here.
    """
    config = read_deepspeed_json(options.deepspeed_config) if options.deepspeed_config else _from_knobs(options)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        if config.get(key, "auto") == "auto":
            config[key] = 1
    if config.get("train_batch_size") == "auto":
        del config["train_batch_size"]  # DeepSpeed derives it: micro batch × accumulation × processes
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = gradient_clipping or 0.0
    config.setdefault("zero_optimization", {}).setdefault("stage3_gather_16bit_weights_on_model_save", True)
    config.setdefault("zero_allow_untested_optimizer", True)
    config.setdefault("zero_force_ds_cpu_optimizer", False)  # our torch AdamW may live on the CPU
    config.setdefault("steps_per_print", 10**9)
    return config


def trainer_deepspeed_config(options: ComputeOptions) -> dict[str, Any]:
    """The DeepSpeed config for an HF/trl ``Trainer`` (its ``deepspeed=`` argument): batch sizes and clipping
    left ``"auto"`` so the Trainer fills them from its own arguments, as its integration expects."""
    config = read_deepspeed_json(options.deepspeed_config) if options.deepspeed_config else _from_knobs(options)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                "gradient_clipping"):
        config.setdefault(key, "auto")
    config.setdefault("zero_optimization", {}).setdefault("stage3_gather_16bit_weights_on_model_save", True)
    config.setdefault("zero_allow_untested_optimizer", True)
    config.setdefault("zero_force_ds_cpu_optimizer", False)
    config.setdefault("steps_per_print", 10**9)
    return config


def _from_knobs(options: ComputeOptions) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": options.zero_stage}
    pin = torch.cuda.is_available()
    if options.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": options.offload_optimizer, "pin_memory": pin}
    if options.offload_params != "none":
        zero["offload_param"] = {"device": options.offload_params, "pin_memory": pin}
    return {"zero_optimization": zero, "bf16": {"enabled": options.mixed_precision == "bf16"},
            "fp16": {"enabled": options.mixed_precision == "fp16"}}


def check_mixed_precision(options: ComputeOptions, on_gpu: bool) -> None:
    """fp16 needs CUDA; bf16 needs an Ampere+ GPU, or runs (correctly, 7–15× slower) on CPU with a warning."""
    mode = options.mixed_precision
    if mode == "fp16" and not on_gpu:
        raise HarnessError("[compute] mixed_precision = 'fp16' needs a CUDA GPU, and none is visible here. "
                           "Use mixed_precision = 'no' (fp32) on CPU, or 'bf16'.")
    if mode == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        raise HarnessError("[compute] mixed_precision = 'bf16': this GPU has no bf16 support (pre-Ampere); "
                           "use mixed_precision = 'fp16'.")
    if mode == "bf16" and not on_gpu:
        warnings.warn("[compute] mixed_precision = 'bf16' on CPU: numerically fine but 7-15x slower than fp32 "
                      "on most CPUs; use it to rehearse a GPU recipe, not to train.", stacklevel=2)


FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def adamw(params, **options) -> torch.optim.AdamW:
    """torch's AdamW, with its fused kernel when every parameter is a float tensor on a CPU or CUDA device.

    The fused kernel updates every tensor in one call per step instead of a loop of small operators:
    measured 0.7 against 3.4 ms a step for the embedded world's 1 M-parameter model on 2 cores, a
    twentieth of a reward-model step. The same update, rounded differently in the last digits.
    ``options`` are AdamW's (``lr``, ``eps``, ``weight_decay``, …); ``params`` a module's
    ``parameters()`` or parameter groups, as AdamW takes them.
    """
    params = list(params)
    tensors = [t for group in params for t in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and all(t.device.type in ("cpu", "cuda") and t.dtype in FUSED_DTYPES for t in tensors)
    return torch.optim.AdamW(params, **({"fused": True} if fused else {}), **options)


def accelerator_for(options: ComputeOptions, *, gradient_clipping: float | None = None):
    """An ``accelerate.Accelerator`` for these options.

    ``backend = "deepspeed"`` gives DeepSpeed engines on whatever device there is (CPU included:
    ``cpu=True`` would make accelerate drop the DeepSpeed plugin silently). A process started
    without a launcher gets single-process launcher variables first, as DeepSpeed requires.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from harness._core import distributed

    on_gpu = options.uses_gpu
    check_mixed_precision(options, on_gpu)
    if not on_gpu:
        torch.set_num_threads(options.threads)
    AcceleratorState._reset_state(True)  # the previous stage's plugin must not stick (the process group stays)
    if options.uses_deepspeed:
        from accelerate.utils import DeepSpeedPlugin

        if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
            raise HarnessError("[compute] backend = 'deepspeed', but ACCELERATE_USE_CPU is set (accelerate launch --cpu), "
                               "which makes accelerate drop DeepSpeed silently: launch without --cpu, or use "
                               "backend = 'cpu'.")

        distributed.single_process_defaults()
        # zero3_init off: from_pretrained builds whole models (the frozen reference and reward model must stay
        # whole); ZeRO-3 partitions the trained ones when prepare() builds their engine
        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(options, gradient_clipping), zero3_init_flag=False)
        accelerator = Accelerator(deepspeed_plugin=plugin, mixed_precision=_precision_of(plugin))
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()  # accelerate registers it regardless of zero3_init_flag
        if accelerator.num_processes != distributed.world_size():
            _adopt_launch(accelerator)
        return accelerator
    return Accelerator(cpu=not on_gpu, mixed_precision=options.mixed_precision)


def _adopt_launch(accelerator) -> None:
    """accelerate 1.15 sets up DeepSpeed's process group only for GPU/accelerator backends: on CPU it
    reports one process while DeepSpeed's engines (rightly) use every launched process. Tell it the truth,
    so ``is_main_process``, ``wait_for_everyone`` and the per-process RNG files of checkpoints are right."""
    from accelerate.state import PartialState

    from harness._core import distributed

    for state in (PartialState(), accelerator.state):
        state.num_processes = distributed.world_size()
        state.process_index = distributed.rank()
        state.local_process_index = distributed.local_rank()


def _precision_of(plugin) -> str:
    config = plugin.hf_ds_config.config
    for mode in ("bf16", "fp16"):
        if str(config.get(mode, {}).get("enabled", False)).lower() == "true":
            return mode
    return "no"


def zero_stage_of(source: ComputeOptions | Any) -> int:
    """The ZeRO stage that shards a run's model (0 without DeepSpeed), asked of the ``[compute]`` options or
    of the accelerator built from them.

    Before any model is loaded (a check of the options) it is the options' ``zero_stage`` under
    ``backend = "deepspeed"``; a ``deepspeed_config`` JSON's own stage is not read there (0). Once the
    accelerator exists, its DeepSpeed plugin says, whichever way it was configured.
    """
    if isinstance(source, ComputeOptions):
        return source.zero_stage if source.uses_deepspeed and not source.deepspeed_config else 0
    plugin = getattr(source.state, "deepspeed_plugin", None)
    return int(plugin.zero_stage) if plugin is not None else 0


def enable_activation_checkpointing(model, options: ComputeOptions) -> None:
    """Recompute activations in backward (HF ``gradient_checkpointing_enable``) when the options ask for it."""
    if options.activation_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
