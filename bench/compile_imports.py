"""Byte-compile what harness's commands and tests import, once, as the last step of `make install`.

    python bench/compile_imports.py [MODULE …]     # default: what runs and tests import (MODULES)

Why: `make install` passes ``--no-compile`` to pip, because pip would compile every module of every
package (torch's tens of thousands) though a run imports about 4,800. Python then compiles a module
on its first import and writes ``__pycache__`` for the next, except where ``PYTHONDONTWRITEBYTECODE``
is set (this project's sandboxes set it, and so may a CI image or a container): there every Python
process compiled those modules again, about 7 s of CPU before a run's first line (docs/performance.md,
"The install"). This step imports what a run, the Python API, the report and the test suite's
subprocesses import, with writing switched on for this process only (``sys.dont_write_bytecode``),
so every later process reads the bytecode, whatever its environment says. It changes nothing else:
Python checks each ``.pyc`` against its source and recompiles an edited module in memory.
"""
from __future__ import annotations

import importlib
import sys
import time

# What a default run imports beyond ``harness.api``'s own imports: each plugin's lazy imports, and what
# its tests start other processes for (DeepSpeed, trl's trainers).
MODULES = (
    "harness", "harness.api", "harness_builtins", "harness._core.cli", "harness._core.pipeline",
    "harness._core.python_api", "harness._core.report",
    "transformers", "transformers.models.llama.modeling_llama", "transformers.generation.utils",
    "accelerate", "peft", "datasets", "pandas", "scipy.stats", "matplotlib.pyplot", "torch.utils.tensorboard",
    "lm_eval", "lm_eval.evaluator", "lm_eval.tasks", "lm_eval.models.huggingface",
    "trl", "trl.trainer.dpo_trainer", "deepspeed",
)


def main(argv: list[str] | None = None) -> None:
    names = (sys.argv[1:] if argv is None else argv) or MODULES
    sys.dont_write_bytecode = False  # this process writes bytecode even where the environment forbids it
    start, before = time.perf_counter(), len(sys.modules)
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:  # an optional package this install left out: nothing to compile
            missing.append(f"{name} ({error.name or error})")
    note = f"; not installed: {', '.join(missing)}" if missing else ""
    print(f"compiled the imports of a run: {len(sys.modules) - before} modules in {time.perf_counter() - start:.1f} s{note}")


if __name__ == "__main__":
    main()
