"""A group optimizer (``grpo`` or ``rloo``) on the tiny problem of ``tests/test_ppo.py``, in as many processes
as launched it (``torchrun --nproc_per_node N tests/group_run.py OUT SFT_DIR ALGO``, or plain ``python``).

Rank 0 writes ``OUT/logged.json`` (the metrics of every step) and ``OUT/rows.json`` (per rank, how many
responses each of its reward calls scored). Used by ``tests/test_grpo.py``'s two-process test.
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


def main(out: Path, sft: Path, algo: str) -> None:
    from harness_builtins.optimizers.grpo import GRPO
    from harness_builtins.optimizers.rloo import RLOO

    distributed.init_process_group()
    cls = {"grpo": GRPO, "rloo": RLOO}[algo]
    extra = {"iterations": 2} if algo == "grpo" else {}  # one minibatch per pass, so any process count sees the same
    logged: list = []
    reward = CountingReward()
    cls(cls.Options(**OPTIONS, **extra)).train(make_ctx(out, sft, logged), reward)
    rows = distributed.gather_objects(reward.rows)
    if distributed.is_main_process():
        (out / "logged.json").write_text(json.dumps(logged))
        (out / "rows.json").write_text(json.dumps({str(rank): r for rank, r in enumerate(rows)}))
    distributed.barrier()
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
