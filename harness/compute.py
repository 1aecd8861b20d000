"""The seam between training loops and hardware: every loop gets its Accelerator here.

On CPU this is plain PyTorch in one process; the ``[compute]`` table of an experiment decides
threads and (later) DeepSpeed/mixed precision, so scaling up is configuration, not a rewrite.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from harness.contracts import Options


class ComputeOptions(Options):
    """The ``[compute]`` table."""

    backend: Literal["auto", "cpu"] = Field("auto", description="auto: GPU when one is visible, else CPU.")
    threads: int = Field(2, ge=1, description="torch intra-op threads on CPU (2 is fastest on 2 cores).")


def accelerator_for(options: ComputeOptions):
    """An ``accelerate.Accelerator`` for these options (CPU when asked or when no GPU is visible)."""
    from accelerate import Accelerator

    use_cpu = options.backend == "cpu" or not torch.cuda.is_available()
    if use_cpu:
        torch.set_num_threads(options.threads)
    return Accelerator(cpu=use_cpu)
