"""Built-in logger: TensorBoard event files in ``<stage>/tensorboard/`` (``tensorboard --logdir runs``).

One writer per stage directory, opened on the first metric and closed when the stage finishes.
"""
from __future__ import annotations

from pathlib import Path

from harness.api import hookimpl

_writers: dict[Path, object] = {}


def _writer(stage_dir: Path):
    if stage_dir not in _writers:
        from torch.utils.tensorboard import SummaryWriter

        _writers[stage_dir] = SummaryWriter(log_dir=str(stage_dir / "tensorboard"))
    return _writers[stage_dir]


@hookimpl
def metrics_logged(experiment, stage, stage_dir, metrics, step):
    writer = _writer(Path(stage_dir))
    for name, value in metrics.items():
        writer.add_scalar(name, value, global_step=step)


@hookimpl
def stage_finished(experiment, stage, stage_dir, summary):
    writer = _writers.pop(Path(stage_dir), None)
    if writer is not None:
        writer.close()
