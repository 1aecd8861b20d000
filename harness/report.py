"""``harness compare``: several runs' ``results.json`` → one report a researcher can paste into a paper.

Writes ``report.md``, ``report.html``, ``report.csv`` and PNG plots (pandas + matplotlib):

* the table — win rate vs SFT with its 95% interval, gold and proxy reward (policy and SFT),
  KL to the reference, the alignment tax per lm-eval task, over-optimization signals and wall time;
* ``win_rate.png`` — win rate ± 95% CI per variant against the 0.5 line;
* ``reward_vs_kl.png`` — the reward–KL frontier: held-out proxy and gold reward against KL, with
  each online run's training trajectory behind its end point (Gao et al. 2022 plot this);
* ``gold_vs_proxy.png`` — proxy and gold reward over training steps (over-optimization shows as
  proxy rising while gold turns down);
* ``tax_vs_reward.png`` — alignment tax against gold reward, one panel per task;
* ``periodic.png`` — held-out win rate, gold and proxy reward at each mid-training evaluation
  (runs with ``[evaluation] every``);
* ``best_of_n.png`` — held-out gold and proxy reward of best-of-n runs against KL_bon = log n − (n−1)/n
  (runs whose ``policy.train`` says ``n`` and ``kl_bon``; Gao et al. 2022's baseline curve).

Only ``results.json`` (the contract every run writes) and, for training curves of runs that
predate ``policy.train.curve``, the ``policy/metrics.jsonl`` stream are read.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.io import atomic_write_text
from harness.results import StaleResults, load_current
from harness.stats import moving_average
from harness.summary import cell_of

CURVE_KEYS = ("reward/proxy", "reward/gold", "kl")
SLOT_COLUMNS = ("optimizer", "reward", "feedback")  # the component slots a comparison usually varies
SMOOTH = 10  # training curves are shown as a moving average over this many steps


# --------------------------------------------------------------------------- loading
def load_runs(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """(label, results, curve) per run directory; one error naming every directory whose results are
    missing, corrupt or not the current results of its config (:func:`harness.results.check_current`)."""
    runs, seen, stale = [], set(), []
    for d in map(Path, run_dirs):
        try:
            results = load_current(d)
        except StaleResults as err:
            stale.append(str(err))
            continue
        label = results.get("variant") or d.name
        if label in seen:
            label = f"{label} ({d.parent.name})"
        seen.add(label)
        runs.append({"label": label, "dir": d, "results": results, "curve": _curve(d, results)})
    if stale:
        raise StaleResults(" | ".join(stale) + (" (compare the others by leaving it out)" if runs else ""))
    if not runs:
        raise HarnessError("harness compare: give at least one run directory.")
    return runs


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


def table(runs: list[dict[str, Any]]):
    """One row per run: the numbers the report compares (NaN where a run did not measure one)."""
    import pandas as pd

    rows = []
    for run in runs:
        r = run["results"]
        policy, win, over = r.get("policy", {}), r.get("win_rate_vs_sft", {}), r.get("overoptimization", {})
        row = {
            "variant": run["label"],
            "optimizer": policy.get("optimizer"),
            "reward": r.get("components", {}).get("reward"),
            "feedback": r.get("components", {}).get("feedback"),
            "win_rate": win.get("rate"), "win_ci_low": win.get("ci_low"), "win_ci_high": win.get("ci_high"),
            "win_n": win.get("n"), "judge": win.get("judge"),
            "gold": policy.get("reward_gold"), "sft_gold": policy.get("sft_reward_gold"),
            "proxy": policy.get("reward_proxy"), "sft_proxy": policy.get("sft_reward_proxy"),
            "kl": policy.get("kl"), "response_len": policy.get("response_len"),
            "proxy_gold_corr": over.get("proxy_gold_corr"),
            "proxy_gold_pair_agreement": over.get("proxy_gold_pair_agreement"),
            "length_proxy_corr": over.get("length_proxy_corr"),
            "policy_wall_s": r.get("stages", {}).get("policy", {}).get("wall_s"),
            "wall_s": r.get("wall_s"),
        }
        for task, tax in sorted(r.get("tax", {}).items()):
            row[f"tax:{task}"] = tax.get("delta")
        for term, counts in sorted(win.get("decided_by", {}).items()):  # which rubric term decided the verdicts
            row[f"wins:{term}"], row[f"losses:{term}"] = counts.get("wins"), counts.get("losses")
        for data in r.get("headline", []):  # every evaluator's declared cells, built-in or not
            if isinstance(data.get("value"), (int, float)):
                row[f"{data.get('evaluator')}:{data.get('name')}"] = data["value"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


# --------------------------------------------------------------------------- writing
def write_report(run_dirs: Sequence[Path], out: Path, *, title: str = "comparison", description: str = "") -> Path:
    """Write the report of the runs in ``run_dirs`` into ``out`` (created); returns the path of ``report.md``."""
    return render_report(load_runs(run_dirs), out, title=title, description=description)


def render_report(runs: list[dict[str, Any]], out: Path, *, title: str, description: str = "") -> Path:
    """Write the report of runs already loaded by :func:`load_runs`; returns the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = table(runs)
    plots = {
        "win_rate.png": _plot_win_rate(df, out / "win_rate.png"),
        "reward_vs_kl.png": _plot_reward_vs_kl(df, runs, out / "reward_vs_kl.png"),
        "gold_vs_proxy.png": _plot_gold_vs_proxy(runs, out / "gold_vs_proxy.png"),
        "tax_vs_reward.png": _plot_tax_vs_reward(df, out / "tax_vs_reward.png"),
        "periodic.png": _plot_periodic(runs, out / "periodic.png"),
        "best_of_n.png": _plot_best_of_n(df, runs, out / "best_of_n.png"),
    }
    shown = [name for name, made in plots.items() if made]
    atomic_write_text(out / "report.csv", df.to_csv())
    atomic_write_text(out / "report.md", _markdown(df, runs, shown, title, description))
    atomic_write_text(out / "report.html", _html(df, runs, shown, title, description))
    return out / "report.md"


def headline(runs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
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
             ("total s", [_f(r["results"].get("wall_s"), ".0f") for r in runs])]
    return cols


def _markdown(df, runs, plots, title, description) -> str:
    cols = headline(runs)
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    judges = ", ".join(sorted({str(j) for j in df["judge"] if j is not None})) or "—"
    lines += [f"Win rate: policy vs its SFT model on held-out prompts, judge {judges}, positions swapped, "
              "ties half, Wilson 95% interval. Tax: lm-eval score of the policy minus SFT's (for perplexity, "
              "positive is a loss). Gold is the world's judge; proxy is the reward the policy optimized.", ""]
    if any(c.startswith("wins:") for c in df.columns):  # the win_rate evaluator's breakdown: say what it means
        lines += ["Wins / losses decided by: for each held-out prompt the gold judge did not tie, the rubric term "
                  "that moved most in the verdict's direction. Proxy agrees with gold: the share of those (policy, "
                  "SFT) pairs the optimized reward orders as gold does.", ""]
    lines.append("| variant | " + " | ".join(t for t, _ in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for i, label in enumerate(df.index):
        lines.append(f"| {label} | " + " | ".join(cells[i] for _, cells in cols) + " |")
    lines += ["", *_notes(df), ""]
    for name in plots:
        lines += [f"![{name[:-4]}]({name})", ""]
    if "gold_vs_proxy.png" in plots:
        lines += ["Training curves are means over each step's rollout batch; every variant sees the same prompts at a "
                  "given step, so batch difficulty moves their gold curves together. The held-out numbers (table, "
                  "frontier points, mid-training evaluations) are on fixed prompts.", ""]
    lines += ["Runs:", *[f"- {r['label']}: `{r['dir']}`" for r in runs], ""]
    return "\n".join(lines)


def _notes(df) -> list[str]:
    """Plain-language reading of the table: which variants hacked the proxy, which beat SFT."""
    notes = []
    for label, r in df.iterrows():
        if _num(r.proxy) and _num(r.sft_proxy) and _num(r.gold) and _num(r.sft_gold):
            if r.proxy > r.sft_proxy and r.gold < r.sft_gold:
                notes.append(f"- **{label}**: proxy reward rose ({r.sft_proxy:.3f} → {r.proxy:.3f}) while gold fell "
                             f"({r.sft_gold:.3f} → {r.gold:.3f}): over-optimization of the proxy.")
        if _num(r.win_ci_low) and r.win_ci_low > 0.5:
            notes.append(f"- **{label}** beats SFT: the whole 95% interval of its win rate is above 0.5.")
    return notes


def _html(df, runs, plots, title, description) -> str:
    cols = headline(runs)
    head = "".join(f"<th>{html.escape(t)}</th>" for t, _ in cols)
    body = "".join("<tr><th>" + html.escape(str(label)) + "</th>"
                   + "".join(f"<td>{html.escape(cells[i])}</td>" for _, cells in cols) + "</tr>"
                   for i, label in enumerate(df.index))
    notes = "".join(f"<li>{html.escape(n[2:]).replace('**', '')}</li>" for n in _notes(df))
    images = "".join(f'<figure><img src="{p}" alt="{p[:-4]}"><figcaption>{p[:-4]}</figcaption></figure>' for p in plots)
    runs_list = "".join(f"<li>{html.escape(r['label'])}: <code>{html.escape(str(r['dir']))}</code></li>" for r in runs)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "th{background:#f4f4f4}img{max-width:100%}figure{margin:1.5em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>"
            f"<table><tr><th>variant</th>{head}</tr>{body}</table><ul>{notes}</ul>{images}"
            f"<h2>Full numbers</h2>{df.to_html(float_format=lambda v: f'{v:.4g}', na_rep='—')}"
            f"<h2>Runs</h2><ul>{runs_list}</ul></body></html>\n")


# --------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> bool:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    _pyplot().close(fig)
    return True


def _plot_win_rate(df, path: Path) -> bool:
    rated = df[df["win_rate"].notna()]
    if rated.empty:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rated)))
    y = range(len(rated))
    err = [rated["win_rate"] - rated["win_ci_low"], rated["win_ci_high"] - rated["win_rate"]]
    ax.barh(list(y), rated["win_rate"], xerr=err, color="#4c72b0", capsize=3)
    ax.axvline(0.5, color="k", lw=1, ls="--")
    ax.set_yticks(list(y), [str(i) for i in rated.index])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate vs SFT (95% CI)")
    return _save(fig, path)


def _plot_reward_vs_kl(df, runs, path: Path) -> bool:
    if df["kl"].dropna().empty:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for (key, sft_key, curve_key), ax in zip((("proxy", "sft_proxy", "reward/proxy"), ("gold", "sft_gold", "reward/gold")),
                                             axes):
        for i, run in enumerate(runs):
            color = f"C{i % 10}"
            r = df.loc[run["label"]]
            kl, value = _smooth([c.get("kl") for c in run["curve"]]), _smooth([c.get(curve_key) for c in run["curve"]])
            if kl and value and len(kl) == len(value):
                ax.plot(kl, value, color=color, alpha=0.35, lw=1)
            if _num(r.kl) and _num(r[key]):
                ax.scatter([r.kl], [r[key]], color=color, label=run["label"], zorder=3)
        sft = df[sft_key].dropna()
        if not sft.empty:
            ax.scatter([0.0], [float(sft.mean())], marker="*", s=120, color="k", label="SFT", zorder=4)
        ax.set_xlabel("KL(π ‖ π_SFT), nats per response")
        ax.set_ylabel(f"{key} reward")
        ax.set_title(f"{key} reward vs KL (held-out; lines: training)")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _plot_gold_vs_proxy(runs, path: Path) -> bool:
    curves = [r for r in runs if r["curve"]]
    if not curves:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for i, run in enumerate(runs):
        if not run["curve"]:
            continue
        steps = [c.get("step", j + 1) for j, c in enumerate(run["curve"])]
        for ax, key in zip(axes, ("reward/proxy", "reward/gold")):
            values = _smooth([c.get(key) for c in run["curve"]])
            if values:
                ax.plot(steps[: len(values)], values, color=f"C{i % 10}", label=run["label"])
    for ax, key in zip(axes, ("proxy", "gold")):
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{key} reward (moving average of {SMOOTH})")
        ax.set_title(f"{key} reward during training")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


PERIODIC_PANELS = (("win_rate_vs_sft/rate", "held-out win rate vs SFT"), ("policy/reward_gold", "held-out gold reward"),
                   ("policy/reward_proxy", "held-out proxy reward"))


def _plot_periodic(runs, path: Path) -> bool:
    """Mid-training evaluations ([evaluation] every): held-out win rate, gold and proxy reward over steps."""
    series = [(i, r, r["results"].get("policy", {}).get("train", {}).get("periodic") or []) for i, r in enumerate(runs)]
    series = [(i, r, rows) for i, r, rows in series if rows]
    panels = [(k, t) for k, t in PERIODIC_PANELS if any(k in row for _, _, rows in series for row in rows)]
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, run, rows in series:
            points = [(row["step"], row[key]) for row in rows if key in row]
            if points:
                ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", label=run["label"])
        if key.startswith("win_rate"):
            ax.axhline(0.5, color="k", lw=1, ls="--")
        ax.set_xlabel("training step")
        ax.set_title(title)
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def _plot_best_of_n(df, runs, path: Path) -> bool:
    """Held-out gold and proxy reward against KL_bon, one point per best-of-n run, on one axes (π_SFT at KL 0)."""
    rows = sorted(((train["kl_bon"], train["n"], df.loc[r["label"]]) for r in runs
                   if "kl_bon" in (train := r["results"].get("policy", {}).get("train", {}))), key=lambda row: row[0])
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    kl = [k for k, _, _ in rows]
    for key, color in (("proxy", "C0"), ("gold", "C3")):
        values = [float(r[key]) if _num(r[key]) else math.nan for _, _, r in rows]
        ax.plot(kl, values, marker="o", color=color, label=f"{key} reward (held-out)")
        for (k, n, _), v in zip(rows, values):
            ax.annotate(f"n={n}", (k, v), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL_bon = log n − (n−1)/n, nats")
    ax.set_ylabel("reward")
    ax.set_title("best-of-n: reward vs KL to π_SFT")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_tax_vs_reward(df, path: Path) -> bool:
    tasks = [c for c in df.columns if c.startswith("tax:") and df[c].notna().any()]
    if not tasks or df["gold"].dropna().empty:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, (label, r) in enumerate(df.iterrows()):
            if _num(r[task]) and _num(r.gold):
                ax.scatter([r.gold], [r[task]], color=f"C{i % 10}", label=str(label))
                ax.annotate(str(label), (r.gold, r[task]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.0, color="k", lw=1, ls="--")
        ax.set_xlabel("gold reward of the policy (held-out)")
        ax.set_ylabel("tax: policy − SFT")
        ax.set_title(task[4:])
    return _save(fig, path)


# --------------------------------------------------------------------------- small helpers
def _smooth(values: list) -> list[float]:
    """A curve as plotted: its moving average, or nothing when a point is missing."""
    if not values or any(v is None for v in values):
        return []
    return moving_average([float(v) for v in values], SMOOTH)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _f(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if _num(value) else "—"
