"""``harness compare``: several runs' ``results.json`` → one report a researcher can paste into a paper.

Writes ``report.md``, ``report.html``, ``report.csv`` (pandas), ``statistics.json`` and PNG plots (matplotlib).
It reads at a glance: the ranking by the lead cell across seeds with the sentences that say what is
resolved (:mod:`harness._core.seed_report`), a compact table of the cells that matter most
(:mod:`harness._core.report_tables`), the plots, then the details — every run's every cell, breakdowns,
every cell per variant and every pair. The core knows no evaluator's keys: the tables show the cells the
runs' evaluators declared (:class:`harness._core.contracts.Cell`); the plots and the paragraphs are the
ones the registered components declare (:class:`harness._core.contracts.PlottingComponent`,
:class:`harness._core.contracts.NotingComponent`) — the win-rate, reward–KL, over-optimization,
alignment-tax and best-of-n plots come from the plugins that own those numbers — plus the core's
pictures of the lead cell across seeds (:mod:`harness._core.seed_plots`).

Only ``results.json`` (the contract every run writes) and, for training curves of runs that
predate ``policy.train.curve``, the ``policy/metrics.jsonl`` stream are read.

The report is written whole into a temporary folder beside ``out`` and swapped in, so a report
killed halfway leaves the previous one intact (never new plots beside an old report.md); the
variants of a comparison that failed are listed in it, and when all failed the report says so.
"""
from __future__ import annotations

import errno
import html
import json
import math
import os
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from harness._core.contracts import NotingComponent, Plot, PlottingComponent, ReportRun
from harness._core.errors import HarnessError, UsageError
from harness._core import report_tables, seed_report
from harness._core.io import atomic_directory, atomic_write_json, atomic_write_text
from harness._core.registry import Registry
from harness._core.results import StaleResults, load_current
from harness._core.seed_cells import SeedStatistics, seed_statistics
from harness._core.seed_plots import seed_plots
from harness._core.seeds import SEED_DIR
from harness._core.summary import cell_of
from harness._core.report_tables import SLOT_COLUMNS

# --------------------------------------------------------------------------- loading
def load_runs(run_dirs: Sequence[Path]) -> list[ReportRun]:
    """(label, dir, results, curve, variant, seed) per run directory; one error naming every directory whose
    results are missing, corrupt or not the current results of its config (:func:`harness._core.results.check_current`).

    Runs of several seeds are labelled ``<variant> (seed <s>)``; their ``variant`` is the ``[compare]`` label,
    else the experiment's name (the runs of one variant differ only in their seed)."""
    loaded, stale = [], []
    for d in map(Path, run_dirs):
        try:
            loaded.append((d, load_current(d)))
        except StaleResults as err:
            stale.append(str(err))
    seeds = {results.get("seed", 0) for _, results in loaded}
    runs, seen = [], set()
    for d, results in loaded:
        variant, seed = results.get("variant") or results.get("experiment") or d.name, results.get("seed", 0)
        label = f"{variant} (seed {seed})" if len(seeds) > 1 else results.get("variant") or d.name
        if label in seen:
            label = f"{label} ({d.parent.name})"
        seen.add(label)
        runs.append({"label": label, "dir": d, "results": results, "curve": _curve(d, results),
                     "variant": variant, "seed": seed})
    if stale:
        raise StaleResults(" | ".join(stale) + (" (compare the others by leaving it out)" if runs else ""))
    if not runs:
        raise HarnessError("harness compare: give at least one run directory.")
    return runs


def report_home(run_dirs: Sequence[Path]) -> Path:
    """Where ``harness compare`` puts its report by default: in the runs' common parent folder — for the runs of a
    multi-seed experiment (``<exp>/seed-<s>/<variant>``), the experiment's folder — else the working directory."""
    parents = {Path(d).resolve().parent for d in run_dirs}
    if len(parents) > 1 and all(SEED_DIR.fullmatch(p.name) for p in parents):
        parents = {p.parent for p in parents}
    return parents.pop() if len(parents) == 1 else Path.cwd()


def _curve(run_dir: Path, results: dict[str, Any]) -> list[dict[str, float]]:
    train = results.get("policy", {}).get("train", {})
    if train.get("curve"):
        return train["curve"]
    metrics = run_dir / "policy" / "metrics.jsonl"
    if not metrics.is_file():
        return []
    rows = []
    for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else {}
        except ValueError:  # a line torn by a killed run: the curve is a picture, skip it
            continue
        kl = next((v for k, v in row.items() if k.endswith("/kl") and not k.startswith("reward")), None)
        if "reward/proxy" in row and kl is not None:
            rows.append({"step": row.get("step"), "reward/proxy": row["reward/proxy"],
                         "reward/gold": row.get("reward/gold"), "kl": kl})
    return rows


def table(runs: Sequence[ReportRun]):
    """One row per run (report.csv): its component slots, every declared cell's value (and interval and SFT
    value where it has them, as ``<evaluator>:<cell> low`` …) and wall times; NaN where a run lacks one."""
    import pandas as pd

    rows = []
    for run in runs:
        r = run["results"]
        row = {"variant": run["label"], **{slot: r.get("components", {}).get(slot) for slot in SLOT_COLUMNS}}
        for data in r.get("headline", []):  # every evaluator's declared cells, built-in or not
            key = f"{data.get('evaluator')}:{data.get('name')}"
            for field, suffix in (("value", ""), ("low", " low"), ("high", " high"), ("before", " before")):
                if isinstance(data.get(field), (int, float)):
                    row[key + suffix] = data[field]
        row["policy_wall_s"] = r.get("stages", {}).get("policy", {}).get("wall_s")
        row["wall_s"] = r.get("wall_s")
        row["compute_s"] = r.get("compute_s")  # the stages' own times: a stage reused from the store counts its training
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def declared(registry: Registry, runs: Sequence[ReportRun]) -> tuple[list[Plot], list[str]]:
    """(plots, notes) every registered component declares for these runs, in the registry's order; a class
    inheriting another's method is asked once. Two plots of one file name are an error naming both."""
    plots: dict[str, tuple[Plot, str]] = {}
    notes: list[str] = []
    asked: set = set()
    for component in registry.all():
        cls, who = component.factory, f"{component.family} {component.name!r}"
        for capability, method in ((PlottingComponent, "report_plots"), (NotingComponent, "report_notes")):
            func = getattr(cls, method, None)
            body = getattr(func, "__func__", func)  # the function under a classmethod: shared by subclasses
            if not isinstance(cls, capability) or body in asked:
                continue
            asked.add(body)
            if method == "report_notes":
                notes += func(runs)
                continue
            for plot in func(runs):
                if plot.file in plots:
                    raise HarnessError(f"report plot {plot.file!r} is declared by {plots[plot.file][1]} and by {who}.")
                plots[plot.file] = (plot, who)
    return [plot for plot, _ in plots.values()], notes


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class WrittenReport:
    """What :func:`write_report` wrote: the runs it read (:func:`load_runs`' dicts; none when no run finished),
    ``report.md``, and the runs read across seeds as the console prints them
    (:func:`harness._core.seed_report.console_text`; empty for a single run)."""

    runs: list[ReportRun]
    report: Path
    statistics: str = ""


def write_report(run_dirs: Sequence[Path], out: Path, registry: Registry, *, title: str = "comparison",
                 description: str = "", failed: Mapping[str, str] | None = None) -> WrittenReport:
    """Write the report of the runs in ``run_dirs`` into ``out`` (replaced whole), as ``harness run`` (a comparison)
    and ``harness compare`` do; ``failed`` (label → error) are the variants that did not finish: listed under the
    table. With no run, the report says that none finished."""
    if not run_dirs:
        return WrittenReport([], write_failed_report(out, title=title, description=description, failed=failed or {}))
    runs = load_runs(run_dirs)
    stats = seed_statistics(runs)  # the runs read across seeds: the report's lead, and what the console prints
    report = render_report(runs, out, registry, title=title, description=description, failed=failed, statistics=stats)
    return WrittenReport(runs, report, seed_report.console_text(stats, runs))


def render_report(runs: Sequence[ReportRun], out: Path, registry: Registry, *, title: str,
                  description: str = "", failed: Mapping[str, str] | None = None,
                  statistics: SeedStatistics | None = None) -> Path:
    """Write the report of runs already loaded by :func:`load_runs`, with the plots and notes the components
    of ``registry`` declare, into ``out`` (replaced whole when every file is written); returns ``out/report.md``.

    It leads with the runs read across seeds (``statistics``, computed here unless given:
    :mod:`harness._core.seed_report`), also written whole as ``statistics.json``."""
    out = Path(out)
    stats = statistics if statistics is not None else seed_statistics(runs)
    plots, notes = declared(registry, runs)
    core = seed_plots(stats)  # the core's, first: the lead cell across seeds, whichever evaluator declared it
    for plot in core:
        if any(plot.file == other.file for other in plots):
            raise HarnessError(f"report plot {plot.file!r} is the core's (the lead cell across seeds); "
                               "a component declares it too: give that plot another file name.")
    plots = core + plots
    glance = report_tables.compact_table(runs, stats)  # the page's compact table, in markdown and in HTML
    notes = _same_notes(stats, glance) + notes + _failed_notes(failed or {})
    labels = [run["label"] for run in runs]
    with _writable(out), atomic_directory(out) as tmp:
        _shareable(tmp)
        for plot in plots:
            _save(plot.draw(_pyplot()), tmp / plot.file)
        atomic_write_text(tmp / "report.csv", table(runs).to_csv())
        atomic_write_json(tmp / "statistics.json", seed_report.to_json(stats))
        atomic_write_text(tmp / "report.md", _markdown(labels, runs, plots, notes, title, description, stats, glance))
        atomic_write_text(tmp / "report.html", _html(labels, runs, plots, notes, title, description, stats, glance))
    return out / "report.md"


def write_failed_report(out: Path, *, title: str, description: str = "", failed: Mapping[str, str]) -> Path:
    """The report of a comparison none of whose variants finished: it says so and why (replacing an older
    report, whose numbers are not this comparison's)."""
    lines = [f"# {title}", "", *([description, ""] if description else []),
             "**No variant finished**: this comparison has no results to report.", "", *_failed_notes(failed)]
    with _writable(out), atomic_directory(Path(out)) as tmp:
        _shareable(tmp)
        atomic_write_text(tmp / "report.md", "\n".join(lines) + "\n")
        atomic_write_text(tmp / "report.html", f"<!doctype html><html><head><meta charset='utf-8'><title>"
                                               f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
                                               + "".join(f"<p>{_plain(line)}</p>" for line in lines[2:] if line)
                                               + "</body></html>\n")
    return Path(out) / "report.md"


@contextmanager
def _writable(out: Path) -> Iterator[None]:
    """A report folder that cannot be written is one line naming it, not a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise UsageError(f"{err.filename or out}: not writable ({err.strerror}); the report goes in {out}: "
                         f"make it writable, or choose another place (harness compare --out, harness run --output).") from None


def _shareable(folder: Path) -> None:
    """A report folder readable as any folder the user makes (a temporary one is private to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


def _same_notes(stats: SeedStatistics, glance: report_tables.Table) -> list[str]:
    """Why a value of the page stands without its interval (:func:`harness._core.seed_report.same_notes`): said
    once, under the compact table (``glance``), for the marks its tables and sentences show."""
    shown = seed_report.markdown(stats) + report_tables.markdown_table(glance)
    return seed_report.same_notes("\n".join(shown))


def _failed_notes(failed: Mapping[str, str]) -> list[str]:
    return ["Failed variants (not in the table):\n" + "\n".join(f"- {label}: {error}" for label, error in failed.items())
            ] if failed else []


def headline(runs: Sequence[ReportRun]) -> list[tuple[str, list[str]]]:
    """(column title, cell per run) of the main table: a column per component slot, then every cell the
    runs' evaluators declared (``results["headline"]``, in first-seen order), then wall times."""
    cols: list[tuple[str, list[str]]] = [
        (slot, [str(r["results"].get("components", {}).get(slot) or "—") for r in runs]) for slot in SLOT_COLUMNS]
    by_run = [{(c.get("evaluator"), c.get("name")): cell_of(c) for c in r["results"].get("headline", [])} for r in runs]
    keys = list(dict.fromkeys(key for cells in by_run for key in cells))
    for key in keys:
        interval = any(cells[key].low is not None for cells in by_run if key in cells)
        cols.append((key[1] + (" [95% CI]" if interval else ""),
                     [cells[key].render().replace("95% CI ", "") if key in cells else "—" for cells in by_run]))
    stages = [r["results"].get("stages", {}).get("policy", {}) for r in runs]
    cols += [("policy s", [_f(s.get("wall_s"), ".0f") for s in stages]),
             ("total s", [_f(r["results"].get("compute_s", r["results"].get("wall_s")), ".0f") for r in runs])]
    return cols


GLANCE_NOTE = ("Each variant's mean over its seeds with the 95% interval (a variant of one seed: the run's own "
               "interval, over its prompts); Δ: the change from the SFT model. Every other number is in the details below.")


def _markdown(labels, runs, plots, notes, title, description, stats, glance) -> str:
    """Ranking, the compact table, notes, plots, then the details (every run, breakdowns, every cell and pair)."""
    lines = [f"# {title}", ""] + ([description, ""] if description else [])
    lines += seed_report.markdown(stats, seed_report.lead_sections(stats))
    lines += ["## At a glance", "", GLANCE_NOTE, "", *report_tables.markdown_table(glance)]
    for note in notes:
        lines += [note, ""]
    lines += ["## Plots", ""] if plots else []
    for plot in plots:
        lines += [f"![{plot.file[:-4]}]({plot.file})", ""] + ([plot.note, ""] if plot.note else [])
    lines += ["## Details", "", "### Every run", "", *report_tables.markdown_table(_details(runs, stats))]
    text_cells = report_tables.breakdowns(runs)
    if text_cells[1]:
        lines += ["### Breakdowns", "", *report_tables.markdown_table(text_cells)]
    lines += seed_report.markdown(stats, seed_report.detail_sections(stats), depth=3)
    lines += ["Runs:", *[f"- {r['label']}: `{r['dir']}`" for r in runs], ""]
    return "\n".join(lines)


def _details(runs, stats):
    return report_tables.details_table(runs, skip=[key for key, _ in report_tables.compact_keys(runs, stats)])


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1em;max-width:100%}"
         "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top;overflow-wrap:anywhere}"
         "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
         "table.wide{table-layout:fixed;width:100%}table.wide th,table.wide td{font-size:12px}"
         "table.glance{font-size:15px}table.glance td{white-space:nowrap}"
         "img{width:100%;height:auto}figure{margin:1em .5em;display:inline-block;vertical-align:top;width:calc(50% - 1.2em)}"
         "figcaption{font-size:13px;color:#444;max-width:700px}details{margin:1em 0}summary{cursor:pointer}"
         ".scroll{overflow-x:auto;max-width:100%}pre,code{overflow-wrap:anywhere}")


def _html(labels, runs, plots, notes, title, description, stats, glance) -> str:
    """The markdown's order as HTML: at 1,400 px wide nothing scrolls sideways (the details table lays its
    columns out to the page's width and wraps inside cells; the full numbers sit in a scrolling box of their own)."""
    paragraphs = "".join(f"<p>{_plain(n)}</p>" for n in notes)
    images = "".join(f'<figure><img src="{p.file}" alt="{p.file[:-4]}"><figcaption>{p.file[:-4]}'
                     f'{" — " + _plain(p.note) if p.note else ""}</figcaption></figure>' for p in plots)
    runs_list = "".join(f"<li>{html.escape(r['label'])}: <code>{html.escape(str(r['dir']))}</code></li>" for r in runs)
    text_cells = report_tables.breakdowns(runs)
    full = table(runs).to_html(float_format=lambda v: f"{v:.4g}", na_rep="—")
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{f'<p>{html.escape(description)}</p>' if description else ''}"
            f"{seed_report.html(stats, seed_report.lead_sections(stats))}"
            f"<h2>At a glance</h2><p>{html.escape(GLANCE_NOTE)}</p>"
            f"{report_tables.html_table(glance, 'glance')}{paragraphs}"
            f"{'<h2>Plots</h2>' if plots else ''}{images}"
            f"<h2>Details</h2><h3>Every run</h3>{report_tables.html_table(_details(runs, stats), 'wide')}"
            f"{'<h3>Breakdowns</h3>' + report_tables.html_table(text_cells) if text_cells[1] else ''}"
            f"{seed_report.html(stats, seed_report.detail_sections(stats), depth=3)}"
            f"<details><summary>Full numbers (report.csv)</summary><div class='scroll'>{full}</div></details>"
            f"<h3>Runs</h3><ul>{runs_list}</ul></body></html>\n")


def _plain(markdown: str) -> str:
    return html.escape(markdown.removeprefix("- ")).replace("**", "").replace("`", "")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    _pyplot().close(fig)


def _f(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not math.isnan(value) else "—"
