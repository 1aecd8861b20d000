"""Seeds as an axis of an experiment: ``[experiment] seeds = [0, 1, 2]`` (or ``harness run --seeds 0,1,2``).

Why an axis: in RL fine-tuning the seed moves a result as much as many algorithmic changes do
(Henderson et al. 2018), so a comparison a reviewer accepts runs every variant on several seeds and
reads its numbers across them (:mod:`harness._core.seed_stats`, docs/statistics.md). Each seed is
one ordinary run with ``[experiment] seed`` set to it — what ``seed = <s>`` would run, stage hashes
included — so within a seed the variants of a ``[compare]`` share SFT, feedback and the reward model
(they are *paired* by seed), and a seed that was already run alone is reused from the stage store.

``seed`` and ``seeds`` name the same thing, so one table gives one of them. Where they come from
different places the later one wins: a file's ``seeds`` replaces the ``seed`` of the file it
``extends`` (and the other way round), and ``--set experiment.seeds=…`` or ``--seeds`` replace the
file's ``seed``. A list of one seed is that seed: the run is an ordinary one, in today's layout.
"""
from __future__ import annotations

import dataclasses
import re
from types import MappingProxyType
from typing import Annotated, Any, Iterable, Mapping, Sequence

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from harness._core.errors import ConfigError

SEED_MAX = 2**32 - 1
SEED_DIR = re.compile(r"seed-(\d+)")  # <output>/<experiment>/seed-<s>/: one seed's runs of a multi-seed experiment
EXAMPLE = "e.g. seeds = [0, 1, 2]"


def seed_dir(seed: int) -> str:
    """The folder of one seed's runs inside a multi-seed experiment's folder."""
    return f"seed-{seed}"


def seeds_problem(seeds: Sequence[int]) -> str | None:
    """Why ``seeds`` is not a list of seeds to run, or None."""
    if not seeds:
        return "an empty list runs nothing"
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        return f"{bad[0]} is not one"
    twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if twice:
        return f"seed {twice[0]} is listed twice (each seed runs once)"
    return None


def _no_bools(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
        raise PydanticCustomError("seeds", "expected a list of distinct seeds (0 … {top}): true/false is not a seed",
                                  {"top": SEED_MAX})
    return value


def _checked(seeds: tuple[int, ...] | None) -> tuple[int, ...] | None:
    problem = None if seeds is None else seeds_problem(seeds)
    if problem:
        raise PydanticCustomError("seeds", "expected a list of distinct seeds (0 … {top}): {problem}",
                                  {"top": SEED_MAX, "problem": problem})
    return seeds


Seeds = Annotated[tuple[int, ...] | None, BeforeValidator(_no_bools), AfterValidator(_checked)]  # [experiment] seeds


def one_seed_field(table: Any) -> Any:
    """``[experiment]`` gives ``seed`` or ``seeds``, not both (an after-validator of the table)."""
    if table.seeds is not None and "seed" in table.model_fields_set:
        raise ValueError(f"seed = {table.seed} and seeds = {list(table.seeds)} are both set: give one — seeds runs "
                         f"the experiment once per seed ({EXAMPLE}), seed runs one")
    return table


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` → ``[0, 1, 2]``; a :class:`ConfigError` naming the flag otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ConfigError(f"--seeds {text!r}: expected seeds separated by commas, e.g. --seeds 0,1,2.")
    seeds = [int(p) for p in parts]
    problem = seeds_problem(seeds)
    if problem:
        raise ConfigError(f"--seeds {text!r}: {problem}; e.g. --seeds 0,1,2.")
    return seeds


def inherit(base: dict[str, Any], child: Mapping[str, Any]) -> None:
    """Before ``child`` is merged over the file it extends: its ``seed`` or ``seeds`` replaces the other in ``base``."""
    _replace(base, [key for key in ("seed", "seeds") if key in _experiment(child)])


def settle(raw: dict[str, Any], overrides: Iterable[str], seeds: str | None) -> None:
    """After ``--set`` overrides: one of them that set ``experiment.seed(s)`` replaces the other; ``--seeds``
    (``"0,1,2"``) replaces both. ``raw`` is changed in place."""
    if seeds is not None:
        parsed = parse_seeds(seeds)
        table = raw.setdefault("experiment", {})
        if isinstance(table, dict):
            table.pop("seed", None)
            table["seeds"] = parsed
        return
    keys = {item.partition("=")[0].replace(" ", "") for item in overrides}
    _replace(raw, [key for key in ("seed", "seeds") if f"experiment.{key}" in keys])


def _replace(raw: dict[str, Any], given: list[str]) -> None:
    table = _experiment(raw)
    if len(given) == 1:
        table.pop("seeds" if given[0] == "seed" else "seed", None)


def _experiment(raw: Mapping[str, Any]) -> dict[str, Any]:
    table = raw.get("experiment")
    return table if isinstance(table, dict) else {}


def check_variant(label: str, overrides: Mapping[str, Any], source: str) -> None:
    """A ``[compare]`` variant does not choose the seeds: every variant runs on the experiment's."""
    if "experiment.seeds" in overrides:
        raise ConfigError(f"{source}: [compare] variant {label!r} sets experiment.seeds; the seeds are the "
                          f"comparison's, not a variant's: set [experiment] seeds ({EXAMPLE}) and every variant "
                          "runs once per seed.")


def with_seed(experiment: Any, seed: int) -> Any:
    """``experiment`` (and each of its variants) as the run of one seed: ``seed = <seed>``, no ``seeds`` — what
    a file with ``seed = <seed>`` resolves to, so its stages hash alike and its run folder reads the same."""
    table = experiment.experiment.model_copy(update={"seed": seed, "seeds": None})
    raw = {key: (dict(value) if key == "experiment" else value) for key, value in experiment.raw.items()}
    raw.setdefault("experiment", {}).pop("seeds", None)
    raw["experiment"]["seed"] = seed
    variants = {label: with_seed(variant, seed) for label, variant in experiment.variants.items()}
    return dataclasses.replace(experiment, experiment=table, raw=MappingProxyType(raw),
                               variants=MappingProxyType(variants))
