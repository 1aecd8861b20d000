"""Built-in logger ``tensorboard``: TensorBoard event files in ``<stage>/tensorboard/`` (``tensorboard --logdir runs``).

One writer per stage directory, opened on the first metric and closed when the stage finishes (or the run fails).
"""
from __future__ import annotations

from pathlib import Path

from harness.api import NoOptions, hookimpl


class TensorBoardLogger:
    """Every metric as a TensorBoard scalar, in <stage>/tensorboard/."""

    Options = NoOptions

    def __init__(self, options: NoOptions):
        self._writers: dict[Path, object] = {}

    def _writer(self, stage_dir: Path):
        if stage_dir not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[stage_dir] = SummaryWriter(log_dir=str(stage_dir / "tensorboard"))
        return self._writers[stage_dir]

    @hookimpl
    def metrics_logged(self, experiment, stage, stage_dir, metrics, step):
        writer = self._writer(Path(stage_dir))
        for name, value in metrics.items():
            writer.add_scalar(name, value, global_step=step)

    @hookimpl
    def stage_finished(self, experiment, stage, stage_dir, summary):
        writer = self._writers.pop(Path(stage_dir), None)
        if writer is not None:
            writer.close()

    @hookimpl
    def run_failed(self, experiment, run_dir, results):
        while self._writers:
            self._writers.popitem()[1].close()


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardLogger)
