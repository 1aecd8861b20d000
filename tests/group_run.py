"""Group optimizers (``grpo``, ``rloo``) on the tiny problem of ``tests/test_ppo.py``, in as many processes as
launched it (``torchrun --nproc_per_node N tests/group_run.py OUT SFT_DIR ALGO[,ALGO...]``), or in-process
(``train_one``).

For each algorithm, in the order given, rank 0 writes ``OUT/ALGO/logged.json`` (the metrics of every step) and
``OUT/ALGO/rows.json`` (per rank, how many responses each of its reward calls scored). One launch trains them all
(each run seeds itself, so it trains as it would alone): a launch's process starts cost more than the training.
Used by ``tests/test_grpo.py``'s two-process test.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness._core import distributed
from tests.test_ppo import GoodWordReward, make_ctx

OPTIONS = dict(steps=3, batch_size=16, group_size=4, max_new_tokens=6, lr=3e-3, init_kl_coef=0.01, checkpoint_every=0)


class CountingReward(GoodWordReward):
    """The proxy reward, remembering how many responses each call scored (this process's share of a batch)."""

    def __init__(self):
        self.rows: list[int] = []

    def score(self, prompts, responses):
        self.rows.append(len(responses))
        return super().score(prompts, responses)


def train_one(out: Path, sft: Path, algo: str) -> None:
    """Train ``algo`` in this process's share of the launch (all of it when launched alone); rank 0 writes the files."""
    from harness_builtins.optimizers.grpo import GRPO
    from harness_builtins.optimizers.rloo import RLOO

    cls = {"grpo": GRPO, "rloo": RLOO}[algo]
    extra = {"iterations": 2} if algo == "grpo" else {}  # one minibatch per pass, so any process count sees the same
    out.mkdir(parents=True, exist_ok=True)
    logged: list = []
    reward = CountingReward()
    cls(cls.Options(**OPTIONS, **extra)).train(make_ctx(out, sft, logged), reward)
    rows = distributed.gather_objects(reward.rows)
    if distributed.is_main_process():
        (out / "logged.json").write_text(json.dumps(logged))
        (out / "rows.json").write_text(json.dumps({str(rank): r for rank, r in enumerate(rows)}))
    distributed.barrier()


def main(out: Path, sft: Path, algos: list[str]) -> None:
    distributed.init_process_group()
    for algo in algos:
        train_one(out / algo, sft, algo)
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","))
