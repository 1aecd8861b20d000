"""Seeds as an axis: ``[experiment] seeds`` / ``harness run --seeds``, the seed-<s>/<variant> layout, stages
shared within a seed, a multi-seed comparison killed with SIGKILL and resumed, and the report read across seeds.

One 2-seed × 2-variant tiny comparison (ppo, a2c) is trained once for the module — killed after seed 1's
first policy, then rerun to the end, with seed 0's SFT, feedback and RM from the session's clean tiny run — and
every test reads it; the one-variant multi-seed run reuses its stages from the same store (no training)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness._core.cli import build_cli
from harness._core.comparison import planned_runs
from harness._core.config import load_experiment
from harness._core.contracts import Cell
from harness._core.errors import ConfigError
from harness._core.plugins import get_plugin_manager
from harness._core.runner import run_experiment
from harness._core.seed_report import console_text, markdown, seed_statistics, to_json
from harness._core.seeds import with_seed
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ROOT / "tests" / "data" / "tiny-compare.toml"
SEEDED = f"""[experiment]
extends = "{COMPARE}"
name = "tiny-seeds"

[evaluation]
evaluators = ["rewards", "win_rate", "diversity"]  # diversity's cell has no per-prompt values
every = 0

[compare]
optimizer.name = ["ppo", "a2c"]
"""


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


def _file(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------- config
@pytest.mark.parametrize("seeds, message", [
    ("[]", r"\[experiment\] seeds = \[\]: expected a list of distinct seeds .*an empty list runs nothing"),
    ("[1, 1]", r"seeds = \[1, 1\]: .*seed 1 is listed twice"),
    ("[-1]", r"seeds = \[-1\]: .*-1 is not one"),
    ("3", r"seeds = 3: expected an array \(TOML: seeds = \[1, 2\]\)"),
    ("[0.5]", r"\[experiment\] seeds.0: expected an integer"),
    ("[true]", r"true/false is not a seed"),
])
def test_bad_seeds_name_the_field_and_the_fix(host, tmp_path, seeds, message):
    path = _file(tmp_path, COMPARE.read_text().replace("seed = 0", f"seeds = {seeds}"))
    with pytest.raises(ConfigError, match=message) as err:
        load_experiment(path, host.registry)
    assert str(path) in str(err.value)


def test_seed_and_seeds_in_one_table_is_an_error(host, tmp_path):
    path = _file(tmp_path, COMPARE.read_text().replace("seed = 0", "seed = 0\nseeds = [1, 2]"))
    with pytest.raises(ConfigError, match=r"\[experiment\] seed = 0 and seeds = \[1, 2\] are both set: give one"):
        load_experiment(path, host.registry)


def test_a_later_source_replaces_the_other_seed_field(host, tmp_path):
    assert load_experiment(COMPARE, host.registry).seeds == (0,)
    assert load_experiment(COMPARE, host.registry, seeds="3,1").seeds == (3, 1)  # --seeds replaces the file's seed
    assert load_experiment(COMPARE, host.registry, ["experiment.seeds=[5, 6]"]).seeds == (5, 6)
    child = _file(tmp_path, SEEDED.replace('name = "tiny-seeds"', 'name = "tiny-seeds"\nseeds = [7, 8]'))
    exp = load_experiment(child, host.registry)  # extends a file with seed = 0: its seeds replace that seed
    assert exp.seeds == (7, 8) and all(v.seeds == (7, 8) for v in exp.variants.values())
    assert load_experiment(child, host.registry, ["experiment.seed=4"]).seeds == (4,)
    for bad, message in (("0,x", "expected seeds separated by commas"), ("2,2", "seed 2 is listed twice")):
        with pytest.raises(ConfigError, match=rf"--seeds '{bad}': {message}"):
            load_experiment(COMPARE, host.registry, seeds=bad)


def test_a_variant_cannot_choose_its_seeds(host, tmp_path):
    path = _file(tmp_path, SEEDED + '\n[compare.variants.other]\n"experiment.seeds" = [3]\n')
    with pytest.raises(ConfigError, match="variant 'other' sets experiment.seeds; the seeds are the comparison's"):
        load_experiment(path, host.registry)


def test_a_seed_of_a_multi_seed_experiment_is_the_plain_run_of_that_seed(host, tmp_path):
    """Same resolved config, so the same stage hashes: a seed already run alone is reused, and back."""
    exp = load_experiment(COMPARE, host.registry, seeds="0,1")
    alone = load_experiment(COMPARE, host.registry, ["experiment.seed=1"])
    one = with_seed(exp, 1)
    assert one.seeds == (1,) and one.to_dict() == alone.to_dict()
    assert {k: v.to_dict() for k, v in one.variants.items()} == {k: v.to_dict() for k, v in alone.variants.items()}
    assert "seeds" not in one.raw["experiment"] and one.raw["experiment"]["seed"] == 1  # its experiment.toml reruns it


def test_the_layout_of_one_seed_is_unchanged_and_seeds_nest_the_variants(host, tmp_path):
    names = lambda exp: [(name, run.seed, run.variant, folder.relative_to(tmp_path).as_posix())  # noqa: E731
                         for name, run, folder in planned_runs(exp, tmp_path)]
    assert names(load_experiment(COMPARE, host.registry)) == [
        ("ppo", 0, "ppo", "ppo"), ("a2c", 0, "a2c", "a2c"), ("dpo", 0, "dpo", "dpo")]
    path = _file(tmp_path, SEEDED)
    assert names(load_experiment(path, host.registry, seeds="2,0")) == [
        ("seed-2/ppo", 2, "ppo", "seed-2/ppo"), ("seed-2/a2c", 2, "a2c", "seed-2/a2c"),
        ("seed-0/ppo", 0, "ppo", "seed-0/ppo"), ("seed-0/a2c", 0, "a2c", "seed-0/a2c")]
    plain = _file(tmp_path, COMPARE.read_text().split("[compare]")[0], "plain.toml")
    assert names(load_experiment(plain, host.registry, seeds="0,1")) == [("seed-0", 0, "", "seed-0"),
                                                                         ("seed-1", 1, "", "seed-1")]


# ----------------------------------------------------------------- cells
def test_a_cell_checks_its_per_prompt_values():
    assert Cell("rate", 0.5, per_prompt=[0, 1, 0.5, 0.5]).per_prompt == (0.0, 1.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="per_prompt averages 0.75, not its value 0.5"):
        Cell("rate", 0.5, per_prompt=[1, 0.5])
    with pytest.raises(ValueError, match="per_prompt needs a numeric value"):
        Cell("breakdown", text="a 1/2", per_prompt=[1.0])


def _run(variant: str, seed: int, values: list[float] | None, value: float | None = None, **cell) -> dict:
    shown = float(np.mean(values)) if value is None else value
    headline = [{"evaluator": "win_rate", "name": "win rate vs SFT", "value": shown, "better": "higher",
                 "fmt": ".3f", "lead": True, "per_prompt": values, **cell},
                {"evaluator": "plugin", "name": "its score", "value": shown + seed / 10, "fmt": "+.2f",
                 "better": "higher"}]
    return {"label": f"{variant} (seed {seed})", "dir": Path(variant), "curve": [], "variant": variant, "seed": seed,
            "results": {"variant": variant, "seed": seed, "headline": headline}}


def test_an_unresolved_difference_is_said_in_words_with_the_seeds_it_would_need():
    rng = np.random.default_rng(3)
    runs = [_run(v, s, list(np.clip(rng.normal(0.5 + shift + 0.05 * s, 0.2, 40), 0, 1).round(6)))
            for v, shift in (("ppo", 0.03), ("dpo", 0.0)) for s in (0, 1, 2)]
    stats = seed_statistics(runs)
    assert stats.lead.name == "win rate vs SFT" and stats.seeds == (0, 1, 2) and stats.variants == ("ppo", "dpo")
    text = "\n".join(markdown(stats))
    pair = stats.lead.ranking.pairs[stats.lead.ranking.order]
    assert not pair.resolved and pair.low < 0 < pair.high
    assert "not resolved with 3 seeds (about" in text and "seeds would resolve it at this spread" in text
    assert f"P({stats.lead.ranking.order[0]} > {stats.lead.ranking.order[1]}) = " in text
    assert "With 3 seeds an interval may be too narrow" in text and "**" not in text  # no bolded winner
    plugin = next(c for c in stats.cells if c.name == "its score")  # a cell with no per-prompt values
    assert plugin.level == "seeds" and plugin.summaries["ppo"].n_prompts == 1 and plugin.ranking is not None
    assert "| its score | ppo − dpo |" in text or "| its score | dpo − ppo |" in text
    data = to_json(stats)
    lead = next(c for c in data["cells"] if c["name"] == "win rate vs SFT")
    assert lead["level"] == "prompts" and lead["pairs"][0]["seeds_needed"] >= 4
    assert lead["variants"]["ppo"]["per_seed"]["1"] == pytest.approx(runs[1]["results"]["headline"][0]["value"])


def test_a_clear_difference_is_resolved_and_grouped():
    runs = [_run(v, s, [base + 0.01 * s + 0.02 * (i % 3) for i in range(30)])
            for v, base in (("a", 0.7), ("b", 0.5), ("c", 0.3)) for s in (0, 1, 2, 3, 4)]
    stats = seed_statistics(runs)
    assert stats.lead.ranking.order == ("a", "b", "c") and stats.lead.ranking.groups == (("a",), ("b",), ("c",))
    text = console_text(stats)
    assert "a − b: +0.200 (= every seed), resolved with 5 seeds" in text  # every prompt of every seed differs by 0.2 and "Groups: {a} ≻ {b} ≻ {c}" in text
    assert "too narrow" not in text  # five seeds or more: no warning


def test_a_value_the_same_on_every_seed_prints_alone_and_one_note_says_why():
    runs = [_run("same", s, [0.5] * 20) for s in (0, 1, 2)] + \
        [_run("spread", s, [0.5 + 0.1 * ((i + s) % 3) for i in range(20)]) for s in (0, 1, 2)]
    stats = seed_statistics(runs)
    text = console_text(stats, runs)
    assert "[0.500, 0.500]" not in text
    assert re.search(r"^2 +same +0\.500 \(= every seed\) +0\.500 +0\.500 +0\.500 +B$", text, re.M)  # the ranking
    assert re.search(r"^same +0\.500 \(= every seed\)$", text, re.M)  # at a glance
    assert text.count("(= every seed): every seed gave exactly this value") == 1 and text.endswith("it is left out.")
    assert re.search(r"^1 +spread +0\.600 \[0\.5\d\d, 0\.6\d\d\]", text, re.M)  # a real interval still prints
    assert re.search(r"spread − same: \+0\.100 \[\+0\.0\d\d, \+0\.1\d\d\], resolved", text)
    table = "\n".join(markdown(stats))
    assert "| same | 0.500 (= every seed) | 0.500 | 0.500 | 0.500 |" in table  # every cell across seeds
    assert re.search(r"\| its score \| same \| \+0\.60 \[\+0\.\d\d, \+0\.\d\d\] \|", table)  # varies by seed
    one_seed = seed_statistics([_run("same", 0, [0.5] * 20), _run("spread", 0, [0.4, 0.6] * 10)])
    text = console_text(one_seed)
    assert "0.500 (= every prompt)" in text and text.count("(= every prompt): every prompt of the one seed") == 1
    assert "(= every seed)" not in text and "0.500 [0.4" in text  # the other variant's interval over prompts
    assert "every seed gave" not in console_text(seed_statistics(runs[3:]))  # no mark shown, no note


def test_runs_that_cannot_be_paired_by_prompt_fall_back_to_seeds():
    runs = [_run("a", 0, [0.2, 0.4]), _run("b", 0, [0.1, 0.3, 0.5]), _run("a", 1, [0.3, 0.5]), _run("b", 1, [0.2, 0.4, 0.6])]
    cell = seed_statistics(runs).lead
    assert cell.level == "seeds" and "different numbers of prompts" in cell.note
    apart = seed_statistics([_run("a", 0, [0.2, 0.4]), _run("b", 1, [0.1, 0.3])]).lead
    assert apart.ranking is None and "a and b share no seed" in apart.note


def test_one_seed_makes_no_claim_about_seeds():
    runs = [_run("a", 0, [1.0] * 20 + [0.0] * 4), _run("b", 0, [0.0] * 20 + [1.0] * 4)]
    text = "\n".join(markdown(seed_statistics(runs)))
    assert "One seed (0) × 24 prompts: an interval here is over the evaluation prompts only" in text
    assert "resolved for this one seed only; another seed may differ" in text
    assert "P(A > B)" not in text and "seeds would resolve" not in text and "group" not in text
    assert markdown(seed_statistics(runs[:1])) == []  # a single run: today's report


# ----------------------------------------------------------------- a multi-seed comparison, killed and resumed
ARGS = ["--seeds", "0,1", "--no-progress", "-p", "kill_plugin"]


def _cli(env, experiment: Path, output: Path, kill_at: str) -> subprocess.CompletedProcess:
    """``harness run`` in a process of its own, which the kill plugin kills with SIGKILL at ``kill_at``."""
    return subprocess.run([sys.executable, "-m", "harness", "run", str(experiment), "--output", str(output), *ARGS],
                          capture_output=True, text=True, cwd=ROOT, env={**env, "HARNESS_TEST_KILL_AT": kill_at})


def _cli_here(experiment: Path, output: Path) -> subprocess.CompletedProcess:
    """The same ``harness run`` command with the same plugins, in this process: a rerun needs no process of its
    own (nothing kills it), and a Python start costs more than what it has left to train."""
    host = get_plugin_manager(["kill_plugin"], autoload=False)
    args = ["run", str(experiment), "--output", str(output), *ARGS]
    result = CliRunner().invoke(build_cli(host), args)
    failure = "" if result.exception is None or isinstance(result.exception, SystemExit) else repr(result.exception)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr + failure)


def seed_store_with_upstream(source: Path, output: Path) -> None:
    """Copy the finished SFT, feedback and RM entries of ``source``'s stage store into ``output``'s: a run whose
    stages hash the same reuses them, one that does not trains its own beside them."""
    for entry in (source / ".stages").iterdir():
        if entry.name.split("-")[0] in ("sft", "feedback", "reward_model"):
            shutil.copytree(entry, output / ".stages" / entry.name, symlinks=True)


@pytest.fixture(scope="module")
def seeded(tiny_cache, clean_tiny_run, tmp_path_factory):
    """The 2-seed comparison, killed with SIGKILL after seed 1's ppo policy finished, then rerun to the end.

    Seed 0's SFT, feedback and RM are the session's clean tiny run's (tiny-compare.toml is tiny.toml's pipeline,
    so they hash the same): the comparison trains seed 1's and every policy."""
    faults = ROOT / "tests" / "faults"  # where kill_plugin is
    env = {**os.environ, "HARNESS_CACHE_DIR": tiny_cache, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(faults)])}
    tmp = tmp_path_factory.mktemp("seeds")
    experiment = _file(tmp, SEEDED, "tiny-seeds.toml")
    seed_store_with_upstream(clean_tiny_run[0], tmp / "runs")
    killed = _cli(env, experiment, tmp / "runs", "finished:policy:3")  # seed 0: ppo, a2c; seed 1: ppo — then killed
    states = {name: json.loads((tmp / "runs" / "tiny-seeds" / name / "results.json").read_text())["status"]
              for name in ("seed-0/ppo", "seed-0/a2c", "seed-1/ppo")}
    with pytest.MonkeyPatch.context() as mp, harness_cache(tiny_cache):
        mp.syspath_prepend(str(faults))
        mp.delenv("HARNESS_TEST_KILL_AT", raising=False)
        rerun = _cli_here(experiment, tmp / "runs")
    return tmp / "runs", killed, states, rerun


def test_a_killed_multi_seed_comparison_resumes_where_it_stopped(seeded):
    runs, killed, states, rerun = seeded
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert states == {"seed-0/ppo": "complete", "seed-0/a2c": "complete", "seed-1/ppo": "running"}
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    blocks = rerun.stdout.split("━━ run ")[1:]
    assert [b.split("\n")[0] for b in blocks] == ["1/4: seed-0/ppo", "2/4: seed-0/a2c", "3/4: seed-1/ppo", "4/4: seed-1/a2c"]
    trained = [[line.split(":")[0][2:] for line in b.splitlines() if line.startswith("· ") and "reusing" not in line]
               for b in blocks]
    assert trained == [[], [], ["evaluation"], ["policy", "evaluation"]], rerun.stdout  # finished stages reused


def test_variants_share_their_stages_within_a_seed_and_not_across(seeded):
    root = seeded[0] / "tiny-seeds"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "comparison.json", "report", "seed-0", "seed-1"]
    assert len([p for p in (seeded[0] / ".stages").iterdir() if p.name.startswith("sft-")]) == 2  # one SFT per seed
    for seed in (0, 1):
        for stage in ("sft", "feedback", "reward_model"):
            assert (root / f"seed-{seed}/ppo" / stage).resolve() == (root / f"seed-{seed}/a2c" / stage).resolve()
        assert (root / f"seed-{seed}/ppo/policy").resolve() != (root / f"seed-{seed}/a2c/policy").resolve()
    assert (root / "seed-0/ppo/sft").resolve() != (root / "seed-1/ppo/sft").resolve()
    for seed in (0, 1):
        results = json.loads((root / f"seed-{seed}/a2c/results.json").read_text())
        assert results["seed"] == seed and results["variant"] == "a2c" and results["status"] == "complete"
        win = next(c for c in results["headline"] if c["name"] == "win rate vs SFT")
        assert win["lead"] and len(win["per_prompt"]) == 16 and np.mean(win["per_prompt"]) == pytest.approx(win["value"])
        assert "seed = " + str(seed) in (root / f"seed-{seed}/a2c/experiment.toml").read_text()
    summary = json.loads((root / "comparison.json").read_text())
    assert summary["seeds"] == [0, 1] and list(summary["variants"]) == ["seed-0/ppo", "seed-0/a2c", "seed-1/ppo", "seed-1/a2c"]


def test_the_report_reads_every_cell_across_seeds(seeded):
    root = seeded[0] / "tiny-seeds"
    text = (root / "report" / "report.md").read_text()
    assert text.index("## Ranking by win rate vs SFT (higher is better)") < text.index("## Every run")
    assert "2 seeds (0, 1) × 16 prompts; 95% intervals from a two-level percentile bootstrap" in text
    assert "| rank | variant | win rate vs SFT [95% CI] | seed 0 | seed 1 | group |" in text
    assert "| A − B [95% CI] | P(A > B) [95% CI] | resolved | seeds needed |" in text
    assert "With 2 seeds an interval may be too narrow" in text and "resolved with 2 seeds" in text
    assert "| distinct-2 (SFT → policy) | ppo |" in text  # the cell without per-prompt values: over seeds
    assert "| ppo (seed 1) | ppo |" in text and "| a2c (seed 0) | a2c |" in text  # every run's own row
    stats = json.loads((root / "report" / "statistics.json").read_text())
    lead = next(c for c in stats["cells"] if c["name"] == "win rate vs SFT")
    for variant in ("ppo", "a2c"):
        for seed in (0, 1):
            own = json.loads((root / f"seed-{seed}/{variant}/results.json").read_text())["win_rate_vs_sft"]["rate"]
            assert lead["variants"][variant]["per_seed"][str(seed)] == pytest.approx(own, abs=1e-6)
    assert lead["pairs"][0]["prob"] is not None and lead["pairs"][0]["low"] <= lead["pairs"][0]["difference"]
    assert {c["name"]: c["level"] for c in stats["cells"]}["distinct-2 (SFT → policy)"] == "seeds"
    assert "<h2>Ranking by win rate vs SFT (higher is better)</h2>" in (root / "report" / "report.html").read_text()
    out = seeded[3].stdout  # what harness run printed: each run's summary, then the ranking
    assert "harness results: tiny-seeds (a2c, seed 1)" in out and "Ranking by win rate vs SFT" in out
    assert out.index("harness results: tiny-seeds (a2c, seed 1)") < out.index("rank  variant") < out.index("report: ")


def test_compare_reads_the_runs_of_several_seeds(seeded, host, tmp_path):
    root = seeded[0] / "tiny-seeds"
    dirs = [str(root / f"seed-{s}" / v) for s in (0, 1) for v in ("ppo", "a2c")]
    result = CliRunner().invoke(build_cli(host), ["compare", *dirs, "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "Ranking by win rate vs SFT" in result.output and "seed 1" in result.output  # a column per seed
    glance = result.output.split("At a glance", 1)[1]  # the compact table: one row per variant, not per run
    assert re.search(r"^ppo\s+\d", glance, re.M) and re.search(r"^a2c\s+\d", glance, re.M) and "(seed" not in glance
    assert ("ppo − a2c: " in result.output) != ("a2c − ppo: " in result.output)
    assert "## Ranking by win rate vs SFT" in (tmp_path / "rep" / "report.md").read_text()


def test_one_variant_over_several_seeds_reuses_the_stages_and_reports_across_them(seeded, host, tiny_cache, tmp_path):
    plain = _file(tmp_path, COMPARE.read_text().split("[compare]")[0].replace('"tiny-compare"', '"tiny-seeds-ppo"'))
    as_variant = ["evaluation.evaluators=['rewards', 'win_rate', 'diversity']", "evaluation.every=0"]  # ppo's config
    lines: list[str] = []
    with harness_cache(tiny_cache):
        summary = run_experiment(load_experiment(plain, host.registry, as_variant, seeds="0,1"), host, seeded[0],
                                 show_progress=False, echo=lines.append)
    assert not [line for line in lines if line.startswith("· ") and "reusing" not in line], lines  # ppo's stages
    root = seeded[0] / "tiny-seeds-ppo"
    assert list(summary["variants"]) == ["seed-0", "seed-1"]
    assert json.loads((root / "seed-1" / "results.json").read_text())["seed"] == 1
    assert "Across 2 seeds" in summary["statistics"] and "win rate vs SFT" in summary["statistics"]
    text = (root / "report" / "report.md").read_text()
    assert "## Across 2 seeds" in text and "| tiny-seeds-ppo (seed 0) |" in text
