"""How long `make install`'s steps take with and without pip's byte-compilation, and what a first run pays back.

    python bench/install_time.py [--rounds 2]

Why: `make run` on a fresh clone includes the install, and pip byte-compiles every module of every
package it installs (torch alone has tens of thousands), though a run imports about 5,000. With
``--no-compile`` those are compiled by the install's last step instead. This bench installs the project into
throwaway virtual environments, in alternating rounds (this machine's speed drifts between minutes),
once each way (``--no-compile`` followed by ``bench/compile_imports.py``, as the Makefile does), timing
the install and then the first and second import of what a run imports. pip's
download cache is warm after the first install, as it is for a user who installed before; the
package registry is the only network it needs. Figures are printed, not asserted.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
RUN_IMPORTS = ("import torch, transformers, trl, peft, pandas, matplotlib; "
               "from transformers import AutoModelForCausalLM; import harness._core.pipeline")


def _timed(cmd: list[str], check: bool = True) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def install(venv: Path, compile_: bool) -> dict[str, float]:
    """The Makefile's install steps into ``venv``, then a run's imports twice (the first compiles when pip did not)."""
    flags = [] if compile_ else ["--no-compile"]
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    seconds = _timed([sys.executable, "-m", "venv", str(venv)])
    seconds += _timed([*pip, "--upgrade", "pip"])
    seconds += _timed([*pip, *flags, "--no-index", "--no-deps", "torch"], check=False)  # no local wheel: the index's
    seconds += _timed([*pip, *flags, "-e", ".[test]"])
    python = str(venv / "bin" / "python")
    if not compile_:  # the Makefile's last step: compile what runs import, once
        seconds += _timed([python, str(ROOT / "bench" / "compile_imports.py")])
    return {"install": seconds, "first import": _timed([python, "-c", RUN_IMPORTS]),
            "second import": _timed([python, "-c", RUN_IMPORTS])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"pip compiles": [], "--no-compile": []}
    with tempfile.TemporaryDirectory(prefix="install-time-") as tmp:
        for r in range(args.rounds):
            for label, compile_ in (("pip compiles", True), ("--no-compile", False)):
                print(f"· round {r + 1}/{args.rounds}: {label} …", flush=True)
                results[label].append(install(Path(tmp) / f"venv-{r}-{int(compile_)}", compile_))
    print(f"\n{'install':<14}  {'install s':>9}  {'first import s':>14}  {'second import s':>15}   (medians of {args.rounds} rounds)")
    for label, rows in results.items():
        print(f"{label:<14}  " + "  ".join(f"{median(row[k] for row in rows):>{w}.1f}"
                                           for k, w in (("install", 9), ("first import", 14), ("second import", 15))))


if __name__ == "__main__":
    main()
