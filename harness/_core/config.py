"""TOML experiment → one validated, immutable :class:`Experiment`.

An experiment names a component for each *slot* of the InstructGPT pipeline and gives its
options in a sub-table named after it (``[optimizer] name = "ppo"`` + ``[optimizer.ppo] clip = 0.2``),
so one file can hold the options of several optimizers and a comparison can swap them.
Everything is validated once, before anything runs; a bad file gets one error naming the file,
the table, the key, what was expected and what is allowed (:mod:`harness._core.validation`). The
loggers a run writes to are the ``[loggers]`` table (:mod:`harness._core.loggers`).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness._core import seeds as seed_axis, variants
from harness._core.compute import ComputeOptions
from harness._core.options import Options
from harness._core.errors import ConfigError, did_you_mean
from harness._core.loggers import CredentialInConfig, LoggersTable, resolve_loggers
from harness._core.names import FIX as NAME_FIX, name_problem
from harness._core.registry import Registry
from harness._core.secrets import MASK, scrub
from harness._core.tables import NotATable, deep_merge, set_dotted
from harness._core.validation import validate_options

# slot -> (component family, default component name)
SLOTS: dict[str, tuple[str, str]] = {
    "world": ("world", "embedded"),
    "sft": ("stage", "next_token"),
    "feedback": ("feedback_format", "ranking"),
    "reward_model": ("stage", "bradley_terry"),
    "reward": ("reward_source", "learned"),
    "optimizer": ("optimizer", "ppo"),
}


class ExperimentTable(Options):
    """The ``[experiment]`` table."""

    name: str = Field(..., min_length=1, description="Run name; the run directory is <output>/<name>/.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds the world, sampling and training (0 … 2**32-1).")
    seeds: seed_axis.Seeds = Field(None, description="Run once per seed (e.g. [0, 1, 2]; replaces seed): every "
                                                     "variant of a [compare] runs on each, paired by seed.")
    output: str = Field("runs", description="Root directory of run stores (relative to the working directory).")
    description: str = Field("", description="Free text, copied into reports.")
    extends: str = Field("", description="Another experiment file (relative to this one) whose tables this file "
                                         "starts from; tables merge key by key, this file's values win.")

    @field_validator("name")
    @classmethod
    def _a_name_not_a_path(cls, name: str) -> str:
        problem = name_problem(name)
        if problem:
            raise PydanticCustomError("name", "the name {problem}; {fix}", {"problem": problem, "fix": NAME_FIX})
        return name

    _one_seed_field = model_validator(mode="after")(seed_axis.one_seed_field)


class ModelTable(Options):
    """The ``[model]`` table."""

    base: str = Field(
        "embedded:tiny",
        description="Base model: 'embedded:<name>' (built by the world), a local directory, or a hub id.",
    )


class EvaluationTable(Options):
    """The ``[evaluation]`` table (evaluator options live in ``[evaluation.<name>]``)."""

    evaluators: tuple[str, ...] = Field(
        ("rewards", "win_rate"), description="Evaluators run at the end of the run, in order."
    )
    prompts: int = Field(200, ge=1, description="Held-out prompts sampled for evaluation (from the world's eval split).")
    max_new_tokens: int = Field(32, ge=1, description="Longest sampled response in evaluation.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for evaluation samples.")
    batch_size: int = Field(64, ge=1, description="Prompts per generation batch in evaluation.")
    every: int = Field(0, ge=0, description="Also evaluate the policy every N optimizer steps during training "
                                            "(0: only at the end); evaluators that support it run, logged as eval/….")
    periodic_prompts: int = Field(64, ge=1, description="Held-out prompts per periodic (mid-training) evaluation.")


CORE_TABLES: dict[str, type[Options]] = {
    "experiment": ExperimentTable,
    "model": ModelTable,
    "compute": ComputeOptions,
}


@dataclass(frozen=True)
class Choice:
    """The component picked for a slot, its validated options, and the options of its siblings."""

    slot: str
    name: str
    options: Options
    alternatives: Mapping[str, Options] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, self.name: self.options.model_dump(mode="json")}


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment. Never mutated after :func:`load_experiment` returns it."""

    source: str
    experiment: ExperimentTable
    model: ModelTable
    compute: ComputeOptions
    slots: Mapping[str, Choice]
    evaluation: EvaluationTable
    evaluators: Mapping[str, Options]
    variant: str = ""  # this experiment's label inside a comparison ("" for a plain run)
    variants: Mapping[str, "Experiment"] = field(default_factory=dict)  # from [compare]; empty for a plain run
    raw: Mapping[str, Any] = field(default_factory=dict)  # the tables as written (extends, --set, variant applied)
    loggers: LoggersTable = field(default_factory=LoggersTable)
    logger_options: Mapping[str, Options] = field(default_factory=dict)  # each logger in loggers.names → its options

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def seed(self) -> int:
        return self.experiment.seed

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds it runs: ``[experiment] seeds``, else its one ``seed``."""
        return self.experiment.seeds or (self.experiment.seed,)

    def choice(self, slot: str) -> Choice:
        return self.slots[slot]

    def world_options(self, name: str) -> Options | None:
        """Options of world ``name`` if this experiment uses it (lets a world plugin resolve its models)."""
        world = self.slots["world"]
        return world.options if world.name == name else world.alternatives.get(name)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in (what lands in the run directory)."""
        data: dict[str, Any] = {t: getattr(self, t).model_dump(mode="json") for t in CORE_TABLES}
        data.update({slot: choice.as_dict() for slot, choice in self.slots.items()})
        evaluation = self.evaluation.model_dump(mode="json")
        evaluation.update({n: o.model_dump(mode="json") for n, o in self.evaluators.items()})
        data["evaluation"] = evaluation
        data["loggers"] = {**self.loggers.model_dump(mode="json"),
                           **{n: o.model_dump(mode="json") for n, o in self.logger_options.items()}}
        return data

    def hash_of(self, *parts: str) -> str:
        """A stable hash of some top-level tables of the resolved config (stage reuse keys)."""
        data = self.to_dict()
        blob = json.dumps({p: data[p] for p in parts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading
def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file.") from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte {err.start}); save the file as UTF-8.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not an experiment file.") from None
    except PermissionError:
        raise ConfigError(f"{path}: not readable (permission denied).") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}.") from None


def read_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The TOML at ``path`` merged over the file its ``[experiment] extends`` names (recursively)."""
    raw = read_toml(path)
    extends = raw.get("experiment", {}).get("extends") if isinstance(raw.get("experiment"), dict) else None
    if not extends:
        return raw
    if not isinstance(extends, str):
        raise ConfigError(f"{path}: [experiment] extends must be a path to another experiment file.")
    base_path = (path.parent / extends).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: [experiment] extends = {extends!r} makes a cycle of experiment files.")
    if not base_path.is_file():
        raise ConfigError(f"{path}: [experiment] extends = {extends!r}: no such file ({base_path}).")
    merged = read_with_bases(base_path, (*seen, path.resolve()))
    seed_axis.inherit(merged, raw)
    deep_merge(merged, raw)  # both freshly parsed: nothing shared to copy
    return merged


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], source: str) -> dict[str, Any]:
    """Apply ``--set a.b.c=value`` (value parsed as TOML, else taken as a string) to a copy of ``raw``."""
    data = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set optimizer.ppo.kl_coef=0.05.")
        try:
            set_dotted(data, [k.strip() for k in key.split(".")], _parse_value(text))
        except NotATable as err:
            raise ConfigError(f"--set {item!r}: {err.args[0]!r} is a value, not a table, in {source}.") from None
    return data


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_experiment(path: str | Path, registry: Registry, overrides: Iterable[str] = (),
                    seeds: str | None = None) -> Experiment:
    """Parse, override, validate and resolve every plugin name and option of an experiment file.

    A ``[compare]`` table (see :mod:`harness._core.variants`) yields the base experiment with every
    variant resolved and validated in ``.variants``, so a bad variant fails before anything runs.
    ``seeds`` (``"0,1,2"``, ``harness run --seeds``) replaces the file's seed or seeds (:mod:`harness._core.seeds`).
    """
    return experiment_from_tables(read_with_bases(Path(path)), registry, overrides, str(path), seeds)


def experiment_from_tables(raw: Mapping[str, Any], registry: Registry, overrides: Iterable[str] = (),
                           source: str = "<dict>", seeds: str | None = None) -> Experiment:
    """:func:`load_experiment` after the file is read: ``raw`` holds the experiment's tables (a TOML file's,
    or the dict ``harness.run`` takes), and errors name ``source`` where they would name the file."""
    overrides = list(overrides)
    raw = apply_overrides(dict(raw), overrides, source)
    seed_axis.settle(raw, overrides, seeds)
    compare = raw.pop("compare", None)
    try:
        base = resolve(raw, registry, source)
    except ConfigError as err:
        raise _blame_override(err, overrides) from None
    if compare is None:
        return base
    resolved = {}
    for label, changes in variants.expand(compare, source).items():
        seed_axis.check_variant(label, changes, source)
        variant = resolve(variants.apply(raw, changes), registry, f"{source} [compare] variant {label!r}")
        resolved[label] = dataclasses.replace(variant, variant=label)
    return dataclasses.replace(base, variants=MappingProxyType(resolved))


def resolve(raw: Mapping[str, Any], registry: Registry, source: str = "<experiment>") -> Experiment:
    allowed = [*CORE_TABLES, *SLOTS, "evaluation", "loggers", "compare"]
    for key in raw:
        if key == "compare":
            raise ConfigError(f"{source}: [compare] is only allowed at the top of an experiment file, not in a variant.")
        if key not in allowed:
            raise ConfigError(f"{source}: unknown table [{key}]{did_you_mean(key, allowed)}. "
                              f"Allowed tables: {', '.join(allowed)}.")
    if "experiment" not in raw or "name" not in raw.get("experiment", {}):
        raise ConfigError(f"{source}: [experiment] needs a name, e.g. [experiment] name = \"my-run\".")
    core = {t: validate_options(model, _table(raw, t, source), source, t) for t, model in CORE_TABLES.items()}
    slots = {slot: _resolve_slot(raw, slot, registry, source) for slot in SLOTS}
    evaluation, evaluators = _resolve_evaluation(raw, registry, source)
    loggers, logger_options = resolve_loggers(_table(raw, "loggers", source), registry, source)
    return Experiment(
        source=source,
        experiment=core["experiment"],
        model=core["model"],
        compute=core["compute"],
        slots=MappingProxyType(slots),
        evaluation=evaluation,
        evaluators=MappingProxyType(evaluators),
        raw=MappingProxyType(copy.deepcopy(dict(raw))),
        loggers=loggers,
        logger_options=MappingProxyType(logger_options),
    )


def _table(raw: Mapping[str, Any], key: str, source: str, parent: str = "") -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        where = f"{parent}.{key}" if parent else key
        raise ConfigError(f"{source}: {where} must be a table ([{where}]), got {value!r}.")
    return value


def _resolve_slot(raw: Mapping[str, Any], slot: str, registry: Registry, source: str) -> Choice:
    family, default = SLOTS[slot]
    table = _table(raw, slot, source)
    name = table.get("name", default)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: [{slot}] name must be a string naming a {family.replace('_', ' ')}.")
    component = registry.get(family, name, where=f"{source}: [{slot}] name")
    options = {}
    for key, value in table.items():
        if key == "name":
            continue
        if key not in registry.names(family):
            allowed = ["name", *registry.names(family)]
            raise ConfigError(
                f"{source}: [{slot}] unknown key {key!r}{did_you_mean(key, allowed)}. "
                f"Allowed keys: {', '.join(allowed)} (options go in [{slot}.<component name>])."
            )
        model = registry.get(family, key).options_model
        options[key] = validate_options(model, _table(table, key, source, slot), source, f"{slot}.{key}", registry)
    chosen = options.pop(name, None) or validate_options(component.options_model, {}, source, f"{slot}.{name}", registry)
    return Choice(slot, name, chosen, MappingProxyType(options))


def _resolve_evaluation(raw: Mapping[str, Any], registry: Registry, source: str):
    table = dict(_table(raw, "evaluation", source))
    sub = {k: table.pop(k) for k in list(table) if isinstance(table[k], dict)}
    evaluation = validate_options(EvaluationTable, table, source, "evaluation")
    names = registry.names("evaluator")
    for key in sub:
        if key not in names:
            raise ConfigError(f"{source}: [evaluation.{key}] is not a registered evaluator{did_you_mean(key, names)}. "
                              f"Available: {', '.join(names)}.")
    evaluators = {}
    for name in evaluation.evaluators:
        model = registry.get("evaluator", name, where=f"{source}: [evaluation] evaluators").options_model
        evaluators[name] = validate_options(model, sub.get(name, {}), source, f"evaluation.{name}", registry)
    return evaluation, evaluators


# --------------------------------------------------------------------------- errors
def _blame_override(err: ConfigError, overrides: Iterable[str]) -> ConfigError:
    """Say so when the bad value came from a ``--set`` override, not from the file the message names."""
    message = str(err)
    for item in overrides:
        parts = [k.strip() for k in item.partition("=")[0].split(".")]
        for cut in range(len(parts) - 1, 0, -1):
            table = "[" + ".".join(parts[:cut]) + "]"
            if f"{table} {parts[cut]}" in message or f"{table} unknown key {parts[cut]!r}" in message:
                return type(err)(f"{message.rstrip('.')} (from --set {_shown(item, err)}).")
        if f"[{parts[0]}]" in message and len(parts) == 1 or f"unknown table [{parts[0]}]" in message:
            return type(err)(f"{message.rstrip('.')} (from --set {_shown(item, err)}).")
    return err


def _shown(item: str, err: ConfigError) -> str:
    """A ``--set`` as an error may show it: a refused credential's value masked whole, key shapes masked anywhere."""
    return f"{item.partition('=')[0]}={MASK}" if isinstance(err, CredentialInConfig) else scrub(item)
