"""Who am I among the processes of a launch (``torchrun``, ``deepspeed``, ``accelerate launch``)?

One process per device runs the same ``harness run``. Every process trains; only the main one
(global rank 0) writes the run store, logs and prints. The rest wait at stage boundaries
(:func:`barrier`) and read what rank 0 wrote. In a single process every helper here is a no-op,
so the core calls them unconditionally.

Rank and world size come from ``torch.distributed`` once a process group exists, else from the
launcher's environment (``RANK``, ``WORLD_SIZE``), so they are right before any model is built.
"""
from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def init_process_group() -> None:
    """Join the launch's process group (gloo on CPU, nccl on GPUs) when several processes were launched."""
    import torch
    import torch.distributed as dist

    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)


def barrier() -> None:
    """Wait until every process gets here (a no-op in one process)."""
    if world_size() > 1:
        init_process_group()
        _dist().barrier()


def shutdown() -> None:
    """Leave the process group (at the end of a launched run, before the process exits)."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (picklable objects only)."""
    if world_size() == 1:
        return obj
    init_process_group()
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if world_size() == 1:
        return [obj]
    init_process_group()
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor):
    """The element-wise sum of ``tensor`` over processes (a new tensor; the input is untouched)."""
    out = tensor.detach().clone()
    if world_size() > 1:
        init_process_group()
        dist = _dist()
        on = out.cuda() if dist.get_backend() == "nccl" else out  # nccl reduces CUDA tensors only
        dist.all_reduce(on)
        out = on.to(tensor.device)
    return out


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache), then the others (which then find it built)."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


@contextmanager
def shared_directory(path: Path) -> Iterator[Path]:
    """A temp directory every process writes into (collective checkpoints); it replaces ``path`` atomically.

    Rank 0 creates it, every process writes its part, rank 0 swaps it into place once all are done.
    On failure (a full disk) rank 0 removes the temp directory, so a failed write leaves neither a
    partial checkpoint nor lost space.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    try:
        yield tmp
        barrier()
        if is_main_process():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if is_main_process():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier()


def single_process_defaults() -> dict[str, str]:
    """Launcher variables for a process started without a launcher (DeepSpeed wants them; else it looks for MPI)."""
    if all(v in os.environ for v in ("RANK", "WORLD_SIZE")):
        return {}
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port())}
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    return added


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
