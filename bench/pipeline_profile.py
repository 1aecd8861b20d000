"""Where a pipeline's time goes: each stage's wall time, CPU utilization and phase breakdown.

    python bench/pipeline_profile.py experiments/instructgpt.toml             # the default run, every stage fresh
    python bench/pipeline_profile.py EXP --set optimizer.ppo.steps=20 --json profile.json
    python bench/pipeline_profile.py EXP --output runs-profile                 # keep the runs (default: a temp dir)
    python bench/pipeline_profile.py EXP --doc docs/performance.md --label now # the table into the doc (make profile)

Runs the experiment in a fresh output root (a stage reused from a store would cost nothing and
show nothing) with timers on the mechanisms every stage is made of, and prints one row per stage
and the same as JSON:

- **generation**: ``GenerationMixin.generate`` (sampling, its forwards included);
- **scoring**: a reward source's ``score`` (the RM's forwards on the policy's samples);
- **forward**: any other outermost ``nn.Module`` call (training and log-prob forwards);
- **backward**: ``Tensor.backward`` / ``torch.autograd.backward``;
- **optimizer**: ``Optimizer.step`` (AdamW, through torch's global step hooks);
- **io**: ``save_pretrained`` / ``from_pretrained`` / ``torch.save`` / ``torch.load`` / safetensors;
- **other**: the rest — data preparation, tokenization, metrics, Python between the calls.

A phase nested in another counts for the outer one (a forward inside ``generate`` is generation),
so the phases add up to the stage's wall time. CPU utilization is the process's CPU time over the
wall time (2.0 = both cores busy). The timers cost a few percent (a Python call per module call).

``--flops`` also counts each stage's floating-point operations (torch's ``FlopCounterMode``: the
matmuls and attention of every forward and backward, padding included) and measures what these cores
do at best, a large fp32 matmul, so each stage gets its **floor**: the seconds its FLOPs would take at
that peak. A stage far above its floor has overhead to remove; a stage near it can only get faster by
computing less. The counter slows the run (a Python call per operator), so a ``--flops`` run prints
FLOPs and floors, not timings: take those from a plain run.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_markers import write_between_markers  # noqa: E402 - bench/ is a folder of scripts, not a package

PHASES = ("generation", "scoring", "forward", "backward", "optimizer", "io", "other")


class PhaseClock:
    """Seconds per phase; the outermost open phase owns the time (a forward inside generate is generation)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[str] = []
        self._since = 0.0

    def enter(self, phase: str) -> None:
        if not self._open:
            self._since = time.perf_counter()
        self._open.append(phase)

    def exit(self) -> None:
        if not self._open:
            return
        phase = self._open.pop()
        if not self._open:
            self.seconds[phase] += time.perf_counter() - self._since

    @contextmanager
    def phase(self, name: str):
        self.enter(name)
        try:
            yield
        finally:
            self.exit()

    def wrap(self, owner, attribute: str, name: str) -> None:
        """Time ``owner.attribute`` (a function or method) as phase ``name``."""
        original = getattr(owner, attribute)
        is_classmethod = isinstance(owner.__dict__.get(attribute), classmethod)
        function = original.__func__ if is_classmethod else original

        @functools.wraps(function)
        def timed(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)

        setattr(owner, attribute, classmethod(timed) if is_classmethod else timed)


def install(clock: PhaseClock, registry) -> None:
    """Put the clock on torch, transformers, safetensors and every registered reward source."""
    import safetensors.torch
    import torch
    import transformers
    from torch.nn.modules import module as nn_module
    from torch.optim import optimizer as optim

    nn_module.register_module_forward_pre_hook(lambda m, a: clock.enter("forward"))
    nn_module.register_module_forward_hook(lambda m, a, out: clock.exit())
    optim.register_optimizer_step_pre_hook(lambda o, a, k: clock.enter("optimizer"))
    optim.register_optimizer_step_post_hook(lambda o, a, k: clock.exit())
    clock.wrap(torch.Tensor, "backward", "backward")
    clock.wrap(torch.autograd, "backward", "backward")
    clock.wrap(transformers.generation.utils.GenerationMixin, "generate", "generation")
    for owner, attribute in ((transformers.PreTrainedModel, "save_pretrained"),
                             (transformers.PreTrainedModel, "from_pretrained"), (torch, "save"), (torch, "load"),
                             (safetensors.torch, "save_file"), (safetensors.torch, "load_file")):
        clock.wrap(owner, attribute, "io")
    for component in (c for c in registry.all() if c.family == "reward_source"):
        if callable(getattr(component.factory, "score", None)) and "score" in vars(component.factory):
            clock.wrap(component.factory, "score", "scoring")


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def peak_matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large fp32 matmul with the process's torch threads: what these cores do at best."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


@contextmanager
def counting_flops(enabled: bool):
    """A ``FlopCounterMode`` (or nothing); yields a function returning the FLOPs counted so far."""
    if not enabled:
        yield lambda: 0
        return
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode:
        yield mode.get_total_flops


def profile(experiment_file: str, overrides: list[str], output: Path, flops: bool = False) -> dict:
    """Run the experiment under the clock; {"stages": {stage: row}, "total": row, "machine": …}."""
    from harness._core import stage_driver
    from harness._core.config import load_experiment
    from harness._core.plugins import get_plugin_manager
    from harness._core.runner import run_experiment

    host = get_plugin_manager()
    experiment = load_experiment(experiment_file, host.registry, overrides)
    clock = PhaseClock()
    install(clock, host.registry)
    rows: dict[str, dict] = {}
    original_stage = stage_driver.Run.stage

    def timed_stage(run, name, work, **kwargs):
        before, cpu, start = dict(clock.seconds), cpu_seconds(), time.perf_counter()
        counted = lambda: 0  # noqa: E731
        try:
            with counting_flops(flops) as counted:
                return original_stage(run, name, work, **kwargs)
        finally:
            wall = time.perf_counter() - start
            phases = {p: clock.seconds.get(p, 0.0) - before.get(p, 0.0) for p in PHASES if p != "other"}
            phases["other"] = max(wall - sum(phases.values()), 0.0)
            rows[name] = {"wall_s": wall, "cpu_util": (cpu_seconds() - cpu) / wall if wall else 0.0,
                          "phases_s": phases} | ({"flops": counted()} if flops else {})
            print(f"· profile: {name} {wall:.1f} s" + (f", {rows[name]['flops'] / 1e9:,.0f} GFLOP" if flops else ""),
                  file=sys.stderr, flush=True)  # a long run's rows as they come

    stage_driver.Run.stage = timed_stage
    start, cpu = time.perf_counter(), cpu_seconds()
    try:
        run_experiment(experiment, host, output, show_progress=False, echo=lambda s: print(s, file=sys.stderr))
    finally:
        stage_driver.Run.stage = original_stage
    wall = time.perf_counter() - start
    staged = sum(r["wall_s"] for r in rows.values())
    total = {"wall_s": wall, "stages_s": staged, "cpu_util": (cpu_seconds() - cpu) / wall,
             "phases_s": {p: sum(r["phases_s"][p] for r in rows.values()) for p in PHASES}}
    import platform

    import torch
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "machine": platform.machine()}
    if flops:
        total["flops"] = sum(r["flops"] for r in rows.values())
        machine["peak_flops"] = peak_matmul_flops()
    return {"experiment": experiment_file, "overrides": overrides, "stages": rows, "total": total, "machine": machine}


def table(result: dict) -> str:
    """The profile as a markdown table: a row per stage, then the total of the stages."""
    if "peak_flops" in result["machine"]:
        return flops_table(result)
    head = "| stage | wall s | CPU (cores) | " + " | ".join(PHASES) + " |"
    lines = [head, "|" + "---|" * (3 + len(PHASES))]
    for name, row in [*result["stages"].items(), ("**stages**", {**result["total"], "wall_s": result["total"]["stages_s"]})]:
        phases = " | ".join(f"{row['phases_s'][p]:.1f}" for p in PHASES)
        lines.append(f"| {name} | {row['wall_s']:.1f} | {row['cpu_util']:.2f} | {phases} |")
    return "\n".join(lines)


def flops_table(result: dict) -> str:
    """Each stage's FLOPs and its floor: those FLOPs at the peak of a large matmul on these cores."""
    peak = result["machine"]["peak_flops"]
    lines = [f"| stage | GFLOP | floor s (at {peak / 1e9:.0f} GFLOP/s) |", "|---|---|---|"]
    for name, row in [*result["stages"].items(), ("**stages**", result["total"])]:
        lines.append(f"| {name} | {row['flops'] / 1e9:,.0f} | {row['flops'] / peak:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--output", type=Path, help="Run store root (default: a fresh temporary directory).")
    parser.add_argument("--json", type=Path, help="Also write the profile here as JSON.")
    parser.add_argument("--doc", type=Path, help="Write the table between this document's profile markers.")
    parser.add_argument("--label", default="now", help="Which markers of --doc (<!-- profile:LABEL -->).")
    parser.add_argument("--flops", action="store_true",
                        help="Count each stage's FLOPs and give its floor at the peak matmul FLOP/s (slows the run).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-profile-") as tmp:
        result = profile(args.experiment, args.overrides, args.output or Path(tmp), flops=args.flops)
    m = result["machine"]
    command = " ".join([args.experiment, *(f"--set {o}" for o in args.overrides), *(["--flops"] if args.flops else [])])
    text = (f"{table(result)}\n\n`python bench/pipeline_profile.py {command}`: "
            f"wall {result['total']['wall_s']:.1f} s in all ({result['total']['stages_s']:.1f} s in stages); "
            f"{m['cpus']} CPUs ({m['machine']}), {m['torch_threads']} torch threads, torch {m['torch']}, "
            f"Python {m['python']}, {time.strftime('%Y-%m-%d')}.")
    print(text)
    if args.doc:
        write_between_markers(args.doc, "profile", args.label, text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
