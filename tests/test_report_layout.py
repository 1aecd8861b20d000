"""The report reads at a glance: the ranking, a compact table, plots with intervals, then the details; and the
line `harness compare` ends with.

Synthetic runs (no training): each carries what the built-in evaluators write to results.json, so every
built-in plot draws; a run per variant and seed, as a multi-seed comparison has them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from click.testing import CliRunner

from harness._core.cli import build_cli
from harness._core.plugins import get_plugin_manager
from harness._core.report import declared, render_report
from harness._core.report_tables import breakdowns, compact_table, details_table
from harness._core.seed_cells import seed_statistics
from harness._core.seed_plots import DIFFERENCES, IMPROVEMENT, SEEDS, seed_plots

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.collections import FillBetweenPolyCollection, PolyCollection  # noqa: E402

PROMPTS = 24


@pytest.fixture(scope="module")
def registry():
    return get_plugin_manager().registry


def _run(variant: str, seed: int, shift: float, optimizer: str | None = None) -> dict:
    """A finished run as results.json holds it: the built-in evaluators' fragments and their headline cells."""
    rng = np.random.default_rng(100 * seed + len(variant))
    scores = np.clip(rng.normal(0.5 + shift + 0.03 * seed, 0.3, PROMPTS), 0, 1).round(6).tolist()
    lc = np.clip(rng.normal(0.5 + shift / 2, 0.3, PROMPTS), 0, 1).round(6).tolist()
    gold = rng.normal(0.2 + shift, 0.2, PROMPTS).round(6).tolist()
    proxy = rng.normal(0.5 + 2 * shift, 0.2, PROMPTS).round(6).tolist()
    kl = np.abs(rng.normal(2 + 10 * shift, 0.5, PROMPTS)).round(6).tolist()
    mean = lambda v: float(np.mean(v))  # noqa: E731
    win = {"rate": mean(scores), "ci_low": mean(scores) - 0.1, "ci_high": mean(scores) + 0.1, "n": PROMPTS, "ties": 2,
           "judge": "gold", "scores": scores, "decided_by": {"length": {"wins": 9, "losses": 3}, "task": {"wins": 4, "losses": 5}}}
    headline = [
        {"evaluator": "win_rate", "name": "win rate vs SFT", "value": win["rate"], "low": win["ci_low"],
         "high": win["ci_high"], "better": "higher", "lead": True, "per_prompt": scores},
        {"evaluator": "win_rate", "name": "length-controlled win rate", "value": mean(lc), "better": "higher",
         "per_prompt": lc, "compact": "length-controlled win rate"},
        {"evaluator": "win_rate", "name": "wins / losses decided by (gold terms)", "text": "length 9/3 · task 4/5",
         "note": "2 ties"},
        {"evaluator": "rewards", "name": "proxy (SFT → policy)", "value": mean(proxy), "before": 0.4,
         "better": "higher", "per_prompt": proxy},
        {"evaluator": "rewards", "name": "gold (SFT → policy)", "value": mean(gold), "before": 0.15 + 0.01 * seed,
         "better": "higher", "per_prompt": gold, "compact": "Δgold"},
        {"evaluator": "rewards", "name": "KL (nats)", "value": mean(kl), "better": "lower", "per_prompt": kl,
         "compact": "KL (nats)"},
        {"evaluator": "diversity", "name": "distinct-2", "value": 0.6 + 0.01 * seed, "better": "higher"},
    ]
    periodic = [{"step": s, "win_rate_vs_sft/rate": 0.5 + shift * s / 4, "win_rate_vs_sft/ci_low": 0.4,
                 "win_rate_vs_sft/ci_high": 0.6 + shift, "policy/reward_gold": 0.2 + shift * s / 4,
                 "policy/reward_gold_se": 0.02} for s in (2, 4)]
    policy = {"reward_proxy": mean(proxy), "reward_gold": mean(gold), "kl": mean(kl), "sft_reward_proxy": 0.4,
              "sft_reward_gold": 0.15 + 0.01 * seed, "sft_reward_gold_se": 0.03,
              "per_prompt": {"reward_proxy": proxy, "reward_gold": gold, "kl": kl},
              "train": {"periodic": periodic, "curve": [{"step": s, "reward/proxy": 0.4 + 0.01 * s + shift,
                                                          "reward/gold": 0.2 + 0.005 * s, "kl": 0.1 * s} for s in range(1, 30)]}}
    if optimizer == "best_of_n":
        n = 4 if variant.endswith("4") else 16
        policy["train"] = {"n": n, "kl_bon": float(np.log(n) - (n - 1) / n), "curve": []}
    return {"label": f"{variant} (seed {seed})", "dir": Path(variant), "variant": variant, "seed": seed,
            "curve": policy["train"]["curve"],
            "results": {"variant": variant, "seed": seed, "headline": headline, "win_rate_vs_sft": win, "policy": policy,
                        "components": {"optimizer": optimizer or variant, "reward": "learned", "feedback": "pairwise"},
                        "tax": {"arc_easy": {"delta": -0.01 * (1 + seed) - shift / 10, "delta_stderr": 0.01}},
                        "stages": {"policy": {"wall_s": 12.0}}, "wall_s": 40.0}}


def _runs(seeds=(0, 1, 2)) -> list[dict]:
    variants = (("ppo", 0.15, None), ("dpo", 0.05, None), ("bon4", 0.0, "best_of_n"), ("bon16", 0.08, "best_of_n"))
    return [_run(v, s, shift, opt) for v, shift, opt in variants for s in seeds]


def test_the_compact_table_leads_with_the_lead_cell_and_the_marked_ones():
    runs = _runs()
    stats = seed_statistics(runs)
    header, rows = compact_table(runs, stats)
    assert header == ["variant", "win rate vs SFT [95% CI]", "length-controlled win rate [95% CI]", "Δgold [95% CI]",
                      "KL (nats) [95% CI]"]
    assert [row[0] for row in rows] == list(stats.lead.ranking.order) and len(rows) == 4
    ppo = rows[[r[0] for r in rows].index("ppo")]
    assert re.fullmatch(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", ppo[1])
    gold = np.mean([np.mean(r["results"]["policy"]["per_prompt"]["reward_gold"]) - r["results"]["policy"]["sft_reward_gold"]
                    for r in runs if r["variant"] == "ppo"])
    assert ppo[3].startswith(f"{gold:+.3f} [")  # Δgold: the change from SFT, signed, over the seeds
    # a run lacking a compact cell shows "—"
    for run in runs:
        if run["variant"] == "dpo":
            run["results"]["headline"] = [c for c in run["results"]["headline"] if c["name"] != "KL (nats)"]
    header, rows = compact_table(runs, seed_statistics(runs))
    assert rows[[r[0] for r in rows].index("dpo")][4] == "—"


def test_breakdowns_and_other_cells_go_into_the_details():
    runs = _runs()
    stats = seed_statistics(runs)
    compact = {"win rate vs SFT", "length-controlled win rate", "gold (SFT → policy)", "KL (nats)"}
    header, rows = details_table(runs, skip=[(e, n) for e in ("win_rate", "rewards") for n in compact])
    assert header[:4] == ["run", "optimizer", "reward", "feedback"] and len(rows) == len(runs)
    assert "proxy (SFT → policy)" in header and "distinct-2" in header
    assert not any(title.split(" [")[0] in compact for title in header)
    assert not any("·" in cell for row in rows for cell in row)  # no text breakdown in a wide table
    assert not any("·" in cell for row in compact_table(runs, stats)[1] for cell in row)
    header, rows = breakdowns(runs)
    assert header == ["run", "cell", "breakdown"] and rows[0][2] == "length 9/3 · task 4/5 (2 ties)"


def test_the_report_reads_in_order_and_the_html_does_not_spread(registry, tmp_path):
    report = render_report(_runs(), tmp_path / "rep", registry, title="layout")
    text = report.read_text()
    order = ["## Ranking by win rate vs SFT", "## At a glance", "## Plots", "## Details", "### Every run",
             "### Breakdowns", "### Every cell across seeds", "Runs:"]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    glance = text[text.index("## At a glance"):text.index("## Plots")]
    assert "| variant | win rate vs SFT [95% CI] | length-controlled win rate [95% CI] | Δgold [95% CI] |" in glance
    for plot in (SEEDS, DIFFERENCES, IMPROVEMENT, "win_rate.png", "reward_vs_kl.png", "periodic.png",
                 "gold_vs_proxy.png", "tax_vs_reward.png", "best_of_n.png"):
        assert (tmp_path / "rep" / plot).read_bytes()[:4] == b"\x89PNG" and f"({plot})" in text
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "max-width:1200px" in html and "table.wide{table-layout:fixed;width:100%}" in html
    assert html.index("At a glance") < html.index("<h2>Plots") < html.index("<h2>Details")


def test_a_cell_the_same_on_every_seed_shows_its_value_alone_and_the_report_says_why_once(registry, tmp_path):
    runs = _runs()
    kl_bon4 = float(np.log(4) - 3 / 4)  # best-of-n's KL is the same number on every seed and prompt
    for run in runs:
        if run["variant"] == "bon4":
            cell = next(c for c in run["results"]["headline"] if c["name"] == "KL (nats)")
            cell.update(value=kl_bon4, per_prompt=[kl_bon4] * PROMPTS)
    text = render_report(runs, tmp_path / "rep", registry, title="same").read_text()
    glance = text[text.index("## At a glance"):text.index("## Plots")]
    bon4 = next(line for line in glance.splitlines() if line.startswith("| bon4 |"))
    assert bon4.endswith(f"| {kl_bon4:.3f} (= every seed) |") and f"[{kl_bon4:.3f}, {kl_bon4:.3f}]" not in text
    assert re.search(r"^\| ppo \|.*\| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|$", glance, re.M)  # others keep theirs
    assert f"| KL (nats) | bon4 | {kl_bon4:.3f} (= every seed) |" in text  # the details' every cell across seeds
    note = "(= every seed): every seed gave exactly this value"
    assert glance.count(note) == 1 and text.count(note) == 1  # said once, under the table that first shows it
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count(note) == 1 and f"{kl_bon4:.3f} (= every seed)" in html
    plain = render_report(_runs(), tmp_path / "plain", registry, title="plain").read_text()
    rows = [line for line in plain[plain.index("## At a glance"):plain.index("## Plots")].splitlines() if line[:1] == "|"]
    assert rows and not any("(= every seed)" in row for row in rows)  # KL that varies keeps its interval


def test_harness_compare_ends_with_one_line_saying_where_the_report_is(tmp_path):
    dirs = []
    for run in _runs(seeds=(0, 1)):
        folder = tmp_path / "runs" / f"seed-{run['seed']}" / run["variant"]
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(run["results"]))
        dirs.append(str(folder))
    cli = build_cli(get_plugin_manager())
    ranked = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "rep")])  # the ranking printed
    assert ranked.exit_code == 0, ranked.output
    assert "rank  variant" in ranked.output and ranked.output.rstrip().splitlines()[-1] == \
        f"report: {tmp_path / 'rep' / 'report.md'} (every run's cells; report.html, report.csv and plots in {tmp_path / 'rep'})"
    single = CliRunner().invoke(cli, ["compare", dirs[0], "--out", str(tmp_path / "one")])  # one run: its every cell
    assert single.exit_code == 0, single.output
    assert "rank  variant" not in single.output and single.output.rstrip().splitlines()[-1] == \
        f"report: {tmp_path / 'one' / 'report.md'} (report.html, report.csv and plots in {tmp_path / 'one'})"


def test_one_seed_draws_no_improvement_matrix_and_says_why():
    stats = seed_statistics(_runs(seeds=(0,)))
    plots = {plot.file: plot for plot in seed_plots(stats)}
    assert set(plots) == {SEEDS, DIFFERENCES}
    assert "No probability-of-improvement matrix: with one seed" in plots[DIFFERENCES].note
    assert seed_plots(seed_statistics(_runs(seeds=(0,))[:1])) == []  # a single run: nothing across seeds


def _intervals(fig) -> int:
    """Interval artists on a figure: error bars, and bands (fill_between)."""
    return sum(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers) + \
        sum(isinstance(c, (FillBetweenPolyCollection, PolyCollection)) for ax in fig.axes for c in ax.collections)


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)])
def test_every_plot_of_a_mean_draws_its_interval(registry, seeds):
    runs = _runs(seeds)
    plots, _ = declared(registry, runs)
    plots += seed_plots(seed_statistics(runs))
    drawn = {}
    for plot in plots:
        fig = plot.draw(plt)
        drawn[plot.file] = _intervals(fig)
        plt.close(fig)
    means = {"win_rate.png", "reward_vs_kl.png", "periodic.png", "tax_vs_reward.png", "best_of_n.png", SEEDS, DIFFERENCES}
    means |= {"gold_vs_proxy.png", IMPROVEMENT} if len(seeds) > 1 else set()  # one seed's training curve has no spread
    assert means <= set(drawn)
    assert all(drawn[name] > 0 for name in means - {IMPROVEMENT}), drawn
    win = next(p for p in plots if p.file == "win_rate.png").draw(plt)
    bars = [c for c in win.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4  # one marker per variant, not one per run
    plt.close(win)
