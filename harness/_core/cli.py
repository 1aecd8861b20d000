"""The ``harness`` command line (click).

The plugin manager is built in :func:`main` — never at import time — from the ``-p`` values found
on the command line, so plugin commands (``harness world …``) appear and ``-p no:NAME`` can
silence a broken plugin before it is loaded. A :class:`HarnessError` prints one line, no traceback.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from harness import __version__
from harness._core.errors import HarnessError, Interrupted
from harness._core.export import FILE_TYPES, LAYOUTS
from harness._core.plugins import get_plugin_manager, plugin_names
from harness._core.secrets import scrub, scrub_data

PLUGIN_HELP = "Load a plugin module (-p pkg.module) or block one (-p no:NAME). Repeatable."


class HarnessGroup(click.Group):
    """A click group that turns user errors into one red line and the error's exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HarnessError as err:
            click.secho(f"error: {scrub(str(err))}", err=True, fg="red")
            ctx.exit(err.exit_code)
        except OSError as err:  # a full or read-only disk outside a run (a report, a cache): one line too
            from harness._core.disk import disk_error

            failure = disk_error(err, Path(err.filename or "."))
            if failure is None:
                raise
            click.secho(f"error: {scrub(str(failure))}", err=True, fg="red")
            ctx.exit(failure.exit_code)


def _plugin_option(f):
    return click.option("-p", "--plugin", "plugins", multiple=True, help=PLUGIN_HELP)(f)


def build_cli(host) -> click.Group:
    """The root group with the core commands; plugins add theirs through ``register_commands``."""

    @click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="harness")
    @_plugin_option
    @click.pass_context
    def cli(ctx, plugins):
        """harness: RLHF experiments as TOML files, every stage a plugin."""
        ctx.obj = host

    cli.add_command(run_command)
    cli.add_command(validate_command)
    cli.add_command(plugins_command)
    cli.add_command(compare_command)
    cli.add_command(export_group)
    host.hook.register_commands(cli=cli)
    return cli


@click.command("run")
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Root of the run store (default: [experiment] output).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value. Repeatable.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--wait", is_flag=True, help="If another run holds this experiment's folder, wait for it (default: refuse).")
@click.option("--seeds", metavar="0,1,2", help="Run once per seed (replaces [experiment] seed and seeds).")
@_plugin_option
@click.pass_obj
def run_command(host, experiment_file, output, overrides, no_progress, wait, seeds, plugins):
    """Run an experiment: SFT → reward model → policy optimization → evaluation."""
    from harness._core.python_api import ComparisonResult, run_with
    from harness._core.summary import format_summary

    try:
        with _signals_interrupt():
            result = run_with(host, experiment_file, overrides, output, progress=not no_progress, echo=click.echo,
                              warn=_warn_line, wait=wait, seeds=seeds)
    except KeyboardInterrupt as err:
        import signal

        signum = getattr(err, "signum", signal.SIGINT)
        click.secho(f"interrupted by {signal.Signals(signum).name}: the running stage is marked 'interrupted'; "
                    f"rerun `harness run {experiment_file}` (same options) to resume from its last checkpoint.",
                    err=True, fg="yellow")
        sys.exit(128 + signum)
    if result is None:  # a process other than rank 0 of a multi-process launch: rank 0 reports
        return
    if isinstance(result, ComparisonResult):  # one summary per variant, then the report
        for variant in result.runs.values():
            click.echo("\n" + format_summary(variant.results))
        for label, error in result.failed.items():
            click.secho(f"variant {label} failed: {error}", fg="red")
        if result.statistics:
            click.echo(f"\n{result.statistics}")
        click.echo("\n" + _report_line(result.report, every_cell_shown=True))  # each variant's summary above
        return
    click.echo(format_summary(result.results))


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(file_okay=False), help="Where the report goes (default: <common parent>/report).")
@click.option("--title", default=None, help="Report title (default: the common parent's name).")
@click.pass_obj
def compare_command(host, run_dirs, out, title):
    """Compare finished runs (a comparison's directory stands for its variants): report.md, report.html,
    report.csv and PNG plots."""
    from harness._core.python_api import write_comparison
    from harness._core.report import headline

    done = write_comparison(host.registry, run_dirs, out, title)
    if done.statistics:  # several runs: the ranking and the compact table; every run's cells are in the report
        click.echo(done.statistics)
        click.echo("\n" + _report_line(done.report, every_cell_shown=False))
        return
    cols = headline(done.runs)
    widths = [max(len(t), *(len(c) for c in cells)) for t, cells in cols]
    labels = [run["label"] for run in done.runs]
    name_w = max(len("variant"), *(len(label) for label in labels))
    click.echo(f"{'variant':<{name_w}}  " + "  ".join(f"{t:<{w}}" for (t, _), w in zip(cols, widths)))
    for i, label in enumerate(labels):
        click.echo(f"{str(label):<{name_w}}  " + "  ".join(f"{cells[i]:<{w}}" for (_, cells), w in zip(cols, widths)))
    click.echo("\n" + _report_line(done.report, every_cell_shown=True))


def _report_line(report: Path, *, every_cell_shown: bool) -> str:
    """The line ``harness run`` (of a comparison) and ``harness compare`` end with: where the report is and what
    sits beside it; when the console showed only the ranking and the compact table (``every_cell_shown`` false),
    that the report has every run's cells."""
    cells = "" if every_cell_shown else "every run's cells; "
    return f"report: {report} ({cells}report.html, report.csv and plots in {report.parent})"


@click.group("export")
def export_group():
    """Export a finished run's data in the formats other tools train on."""


@export_group.command("feedback")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "layout", type=click.Choice(LAYOUTS), default="trl-preference", show_default=True,
              help="trl-preference: prompt/chosen/rejected pairs; ranking: responses + ranking; likert: response + rating.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the data file and its README.md card.")
@click.option("--file-type", type=click.Choice(FILE_TYPES), default="jsonl", show_default=True, help="feedback.jsonl or feedback.parquet.")
@click.option("--force", is_flag=True, help="Replace an earlier export in --out (a directory holding anything else is refused).")
@_plugin_option
@click.pass_obj
def export_feedback_command(host, run_dir, layout, out, file_type, force, plugins):
    """Write RUN_DIR's feedback (feedback/feedback.jsonl) as a datasets-loadable file for trl and the hf_data world."""
    from harness._core.export import export_feedback

    done = export_feedback(Path(run_dir), layout, Path(out), host.registry, file_type=file_type, force=force)
    left = f" ({done.left_out} pairs of two identical responses left out)" if done.left_out else ""
    click.echo(f"{done.data}: {done.rows} {layout} rows from {done.records} feedback records{left}; "
               f"card: {done.out / 'README.md'}")


@click.command("validate")
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value. Repeatable.")
@click.option("--show", is_flag=True, help="Print the resolved config (every default filled in) as JSON.")
@_plugin_option
@click.pass_obj
def validate_command(host, experiment_file, overrides, show, plugins):
    """Parse an experiment, resolve every plugin name and option, and check what can be checked before
    training (key variables, batch memory, local models and data); run nothing."""
    from harness._core.checks import check_model_name, looks_like_path
    from harness._core.config import load_experiment

    experiment = load_experiment(experiment_file, host.registry, overrides)
    _warn(preflight(experiment, host))
    if show:
        click.echo(json.dumps(scrub_data(experiment.to_dict()), indent=2))
    picked = ", ".join(f"{slot}={choice.name}" for slot, choice in experiment.slots.items())
    click.echo(f"{experiment_file}: ok ({picked}; evaluators={', '.join(experiment.evaluators)})")
    base = experiment.model.base
    if ":" not in base or looks_like_path(base):
        note = check_model_name(base, "[model] base")[1] or f"[model] base = {base!r}: local model directory"
        click.echo(f"  note: {scrub(note)}")
    for label, variant in experiment.variants.items():
        changed = ", ".join(f"{slot}={c.name}" for slot, c in variant.slots.items() if c != experiment.choice(slot))
        click.echo(f"  variant {label}: ok{f' ({changed})' if changed else ''}")


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_plugin_option
@click.pass_obj
def plugins_command(host, as_json, plugins):
    """List every registered component with the plugin that provided it."""
    rows = [{"family": c.family, "name": c.name, "plugin": c.plugin, "description": c.description}
            for c in host.registry.all()]
    if as_json:
        click.echo(json.dumps({"plugins": plugin_names(host.pm), "components": rows}, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    family = None
    for r in rows:
        if r["family"] != family:
            family = r["family"]
            click.secho(f"\n{family.replace('_', ' ')}s", bold=True)
        click.echo(f"  {r['name']:<{width}}  [{r['plugin']}]  {r['description']}")
    click.echo(f"\nplugins loaded: {', '.join(plugin_names(host.pm))}")


def preflight(experiment, host) -> list[str]:
    from harness._core.preflight import preflight as checks

    return checks(experiment, host)


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        _warn_line(line)


def _warn_line(line: str) -> None:
    click.secho(f"warning: {scrub(line)}", err=True, fg="yellow")


@contextmanager
def _signals_interrupt():
    """SIGTERM (and SIGINT) raise :class:`Interrupted` in the main thread, so the run store records the
    stage as ``interrupted`` before the process exits; the previous handlers come back afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _prescan_plugins(argv: list[str]) -> list[str]:
    """``-p`` values anywhere on the command line (they decide which plugins the manager loads)."""
    found, it = [], iter(argv)
    for arg in it:
        if arg in ("-p", "--plugin"):
            found.append(next(it, ""))
        elif arg.startswith("--plugin="):
            found.append(arg.split("=", 1)[1])
        elif arg.startswith("-p") and len(arg) > 2:
            found.append(arg[2:])
    return [p for p in found if p]


def _strip_local_rank(argv: list[str]) -> list[str]:
    """The ``deepspeed`` launcher passes ``--local_rank=N`` first; its value is also in $LOCAL_RANK."""
    import os

    kept = []
    for arg in argv:
        if arg.startswith("--local_rank="):
            os.environ.setdefault("LOCAL_RANK", arg.split("=", 1)[1])
        else:
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> None:
    argv = _strip_local_rank(list(sys.argv[1:] if argv is None else argv))
    # tqdm reads TQDM_DISABLE once, when it is first imported, so this must precede every plugin import.
    # It hides the bars of libraries that leave `disable` at its default; lm-eval passes it explicitly.
    if "--no-progress" in argv:
        import os

        os.environ["TQDM_DISABLE"] = "1"
    try:
        host = get_plugin_manager(_prescan_plugins(argv))
    except HarnessError as err:
        click.secho(f"error: {scrub(str(err))}", err=True, fg="red")
        sys.exit(err.exit_code)
    build_cli(host).main(args=argv, prog_name="harness")


if __name__ == "__main__":  # pragma: no cover
    main()
