"""``harness world``: inspect and build the embedded world from the command line.

``stats`` prints the measured properties of the instrument (annotator agreement, gold agreement,
length bias, base-model quality, lm-eval scores); ``build`` builds and caches the base models
ahead of a run (useful before going offline or timing a run), and ``build --ship`` rebuilds the
shipped ones; ``--design`` picks the world's design (docs/world.md; 4 is the default world's). ``validate``
runs rows V1–V9 of issue 25's rules (``validation.py``).
"""
from __future__ import annotations

import json
import math

import click


def _world(seed: int, design: int):
    from .world import EmbeddedOptions, EmbeddedWorld

    return EmbeddedWorld(EmbeddedOptions(design=design), seed=seed)


DESIGN = click.option("--design", type=click.Choice(["4", "5"]), default="4", show_default=True,
                      help="The world's design (docs/world.md): 5 has no chat dialogues in the base corpus.")


def _seed_list(text: str, option: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; anything else is a usage error naming ``option``."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers, e.g. 0,1,2", param_hint=option) from None


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _print_tree(data: dict, indent: int = 0) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        elif isinstance(value, list):
            click.echo(" " * indent + f"{key}:")
            for row in value:
                click.echo(" " * (indent + 2) + "- " + json.dumps(row))
        else:
            click.echo(" " * indent + f"{key}: {_fmt(value)}")


@click.group("world")
def world_group() -> None:
    """The embedded world: measured statistics and cached base models."""


@world_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of an indented listing.")
@click.option("--seed", default=0, show_default=True, help="World seed.")
@click.option("--model", default="tiny", show_default=True, help="Base model to measure ('none' to skip).")
@click.option("--pairs", default=2000, show_default=True, help="Candidate pairs for the agreement statistics.")
@DESIGN
def stats_command(as_json: bool, seed: int, model: str, pairs: int, design: str) -> None:
    """Split sizes, annotator agreement, gold agreement, length bias, base-model gold score, lm-eval."""
    from .stats import world_stats

    data = world_stats(_world(seed, int(design)), model=None if model == "none" else model, n_pairs=pairs)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    calibration = data.pop("calibration")
    _print_tree(data)
    click.echo("\ncalibration (docs/world.md): measured beside the published anchor it was chosen for")
    head = {"quantity": "quantity", "measured": "measured", "anchor": "anchor", "source": "source"}
    widths = {k: max(len(str(r[k])) for r in [head, *calibration]) for k in head}
    for row in [head, *calibration]:
        click.echo("  " + "  ".join(str(row[k]).ljust(widths[k]) for k in head).rstrip())


@world_group.command("validate")
@click.option("--seeds", default="0,1,2,3,4", show_default=True,
              help="Experiment seeds (world and every stage), comma-separated; the rules are judged on 0–4.")
@click.option("--experiment", "experiment_file", default="experiments/world-validation.toml", show_default=True,
              type=click.Path(dir_okay=False), help="The validation experiment (its variants feed rows V1–V9).")
@click.option("--output", "-o", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Root of the run store; the seeds run in <output>/world-validation-s<seed>/.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value for every seed.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--readme", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also write the table between the world-validation markers of this file (e.g. README.md).")
@DESIGN
@click.pass_obj
def validate_command(host, seeds: str, experiment_file: str, output: str, overrides: tuple[str, ...], no_progress: bool,
                     readme: str | None, design: str) -> None:
    """Rows V1–V9 (docs/world.md, issue 25's rules): does this world reproduce the literature's RLHF findings?"""
    from .validate_run import validate

    seed_list = _seed_list(seeds, "--seeds")
    if design != "4":  # the default design is left out of the config, so its runs keep their identity
        overrides = (f"world.embedded.design={design}", *overrides)
    table = validate(host, experiment_file, seed_list, output, overrides, show_progress=not no_progress, echo=click.echo)
    click.echo(table)
    if readme:
        from .validate_run import write_between_markers

        write_between_markers(readme, table)
        click.echo(f"wrote the table into {readme}")


@world_group.command("build")
@click.option("--seed", "seeds", default="0", show_default=True, help="World seed(s), comma-separated.")
@click.option("--model", "models", multiple=True, default=("tiny",), show_default=True, help="Model name(s) to build.")
@click.option("--ship", is_flag=True,
              help="Ignore the shipped copy, build (or reuse a cached build of the same recipe) and write the result "
                   "into the package's weights/ directory, as `make world-weights` does.")
@DESIGN
def build_command(seeds: str, models: tuple[str, ...], ship: bool, design: str) -> None:
    """Build (or find shipped or cached) the base models and the lm-eval task files."""
    from .model import ship as ship_build

    for seed in _seed_list(seeds, "--seed"):
        world = _world(seed, int(design))
        for name in models:
            path = world.base_model(name, use_shipped=not ship)
            if ship:
                path = ship_build(path, name, seed)
            click.echo(f"embedded:{name} (seed {seed}): {path}")
        task_dir, names = world.lm_eval_tasks()
        click.echo(f"lm-eval tasks {', '.join(names)}: {task_dir}")
