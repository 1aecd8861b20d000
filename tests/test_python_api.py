"""The Python API a notebook uses: ``harness.run``, ``load_run``, ``load_runs``, ``compare``, and the README's
"From Python" snippet and ``examples/notebook.py``, run for real.

The runs stand on a copy of the session's clean tiny run (``clean_tiny_run``): a run of the same experiment
reuses every stage of it, and a changed optimizer option retrains only the policy and its evaluation.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import harness
from harness._core.cli import build_cli
from harness._core.errors import ConfigError, HarnessError
from harness._core.plugins import get_plugin_manager
from tests.fakes import harness_cache
from tests.tiny_run import OVERRIDES, TINY, result_values

ROOT = Path(__file__).resolve().parents[1]
EVALUATORS = {"evaluation.evaluators": ["rewards", "win_rate"]}  # OVERRIDES as a dict
KL = {"experiment.name": "tiny-kl", "optimizer": {"ppo": {"init_kl_coef": 0.2}}, **EVALUATORS}


def copy_store(clean_tiny_run, into: Path) -> Path:
    """The clean run's output root (its run folder and the stage store its links point into), copied."""
    shutil.copytree(clean_tiny_run[0], into, symlinks=True)
    return into


@pytest.fixture(scope="module")
def store(clean_tiny_run, tiny_cache, tmp_path_factory):
    """A writable copy of the clean run's output root; the module's runs add to it, in file order."""
    with harness_cache(tiny_cache):
        yield copy_store(clean_tiny_run, tmp_path_factory.mktemp("pyapi") / "runs")


@pytest.fixture(scope="module")
def kl_run(store, tiny_cache):
    """tiny.toml as a dict, renamed, with a larger β (a nested-dict override): only policy and evaluation train."""
    lines = []
    with harness_cache(tiny_cache):
        result = harness.run(tomllib.loads(TINY.read_text()), KL, store, progress=False, echo=lines.append)
    return result, lines


# ----------------------------------------------------------------- the package
def test_import_harness_loads_neither_torch_nor_pandas():
    code = ("import sys, harness; assert {'run', 'load_run', 'load_runs', 'compare', 'RunResult', 'ComparisonResult'}"
            " <= set(harness.__all__) & set(dir(harness)); print(sorted({'torch', 'pandas'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    assert harness.hookimpl is not None and callable(harness.run)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        harness.nope  # noqa: B018


# ----------------------------------------------------------------- reading finished runs
def test_load_run_reads_the_results_headline_and_stages(clean_tiny_run):
    root, results = clean_tiny_run
    run = harness.load_run(root / "tiny")
    assert isinstance(run, harness.RunResult) and run.path == root / "tiny"
    assert run.name == "tiny" and run.variant == "" and run.results == results
    assert [c.name for c in run.headline] == [c["name"] for c in results["headline"]]
    win = next(c for c in run.headline if c.name == "win rate vs SFT")
    assert win.low <= win.value <= win.high
    assert list(run.stages) == ["sft", "feedback", "reward_model", "policy", "evaluation"]
    shown = repr(run)
    assert shown.splitlines()[0].startswith("RunResult: tiny · optimizer ppo") and win.render() in shown


def test_metrics_are_the_stages_streams_in_one_wide_frame(clean_tiny_run):
    run = harness.load_run(clean_tiny_run[0] / "tiny")
    policy = run.metrics("policy")
    assert list(policy.columns[:3]) == ["stage", "step", "time"] and set(policy["stage"]) == {"policy"}
    logged = [json.loads(line) for line in (run.path / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert policy["step"].tolist() == [row["step"] for row in logged] == [1, 2, 3]
    assert policy["reward/proxy"].tolist() == pytest.approx([row["reward/proxy"] for row in logged])
    every = run.metrics()
    assert list(dict.fromkeys(every["stage"])) == ["sft", "reward_model", "policy"]  # feedback logs no metrics
    assert every["ppo/kl"].isna().sum() == (every["stage"] != "policy").sum()
    assert run.metrics("feedback").empty
    with pytest.raises(HarnessError, match="no stage 'ppo'; its stages are sft, feedback"):
        run.metrics("ppo")


def test_samples_are_the_evaluation_prompts(clean_tiny_run):
    samples = harness.load_run(clean_tiny_run[0] / "tiny").samples()
    assert list(samples.columns) == ["prompt", "kind", "policy", "sft", "kl"] and len(samples) == 16


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "missing: no such directory; a run directory holds results.json"),
    (lambda tmp: tmp, "not a run directory; a run directory holds results.json, resolved_config.json"),
    (lambda tmp: (tmp / "f.txt", (tmp / "f.txt").write_text("x"))[0], "a file, not a run directory"),
])
def test_a_path_that_is_no_run_is_one_line_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    for call in (harness.load_run, lambda p: harness.load_runs([p])):
        with pytest.raises(HarnessError, match=re.escape(f"{path}")) as err:
            call(path)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_run_whose_results_are_not_current_is_refused(clean_tiny_run, tmp_path):
    runs = copy_store(clean_tiny_run, tmp_path / "runs")
    results = runs / "tiny" / "results.json"
    results.write_text(json.dumps({**json.loads(results.read_text()), "status": "failed", "error": "boom"}))
    with pytest.raises(HarnessError, match="not comparable: its last run is failed \\(boom\\)"):
        harness.load_run(runs / "tiny")


# ----------------------------------------------------------------- dict experiments and overrides
@pytest.mark.parametrize("tables, message", [
    ({"experiment": {"name": "x", "seed": "zero"}}, "<dict>: [experiment] seed = 'zero': expected an integer"),
    ({"experiment": {"name": "x"}, "optimiser": {}}, "<dict>: unknown table [optimiser] (did you mean `optimizer`?)"),
    ({"experiment": {"name": "x", "seed": None}}, "<dict>: experiment.seed = None: TOML has no null"),
    ({"experiment": {"name": "x"}, "model": {"base": object()}}, "<dict>: model.base = <object object"),
    ({"experiment": {"name": "x"}, "model": "x"}, "<dict>: model must be a table ([model]), got 'x'"),
])
def test_a_bad_dict_experiment_is_one_error_naming_the_field(tables, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        harness.run(tables, output=tmp_path, echo=None)
    assert str(err.value).startswith(message)
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_overrides_name_their_key_and_come_as_strings_or_a_dict(tmp_path):
    from harness._core.python_api import override_strings

    assert override_strings({"optimizer": {"ppo": {"init_kl_coef": 0.2}}, "evaluation.evaluators": ("rewards",),
                             "model.base": Path("m"), "experiment.name": "a\"b"}) == [
        "optimizer.ppo.init_kl_coef=0.2", 'evaluation.evaluators=["rewards"]', 'model.base="m"', 'experiment.name="a\\"b"']
    assert override_strings("compute.threads=1") == ["compute.threads=1"]
    with pytest.raises(ConfigError, match=r"\[optimizer.ppo\] init_kl_coef = 'lots': expected a number.*from --set"):
        harness.run(TINY, {"optimizer.ppo.init_kl_coef": "lots"}, tmp_path, echo=None)


# ----------------------------------------------------------------- running
def test_a_rerun_reuses_every_stage_and_returns_the_same_results(store, clean_tiny_run, tiny_cache):
    lines = []
    with harness_cache(tiny_cache):
        again = harness.run(str(TINY), OVERRIDES, store, progress=False, echo=lines.append)
    assert [line.split(":")[0] for line in lines if line.startswith("· ")] == [
        "· sft", "· feedback", "· reward_model", "· policy", "· evaluation"]
    assert all("reusing finished stage" in line for line in lines if line.startswith("· ")), lines
    assert all(stage["reused"] for stage in again.stages.values())
    assert again.path == store / "tiny" and result_values(again.results) == result_values(clean_tiny_run[1])


def test_a_dict_experiment_with_overrides_retrains_only_what_changed(kl_run, store):
    run, lines = kl_run
    assert run.path == store / "tiny-kl" and run.name == "tiny-kl"
    assert {s: t["reused"] for s, t in run.stages.items()} == {
        "sft": True, "feedback": True, "reward_model": True, "policy": False, "evaluation": False}, lines
    assert run.results["policy"]["train"]  # trained for real: its metrics say β started at 0.2
    assert run.metrics("policy")["ppo/kl_coef"].iloc[0] == pytest.approx(0.2)
    assert (run.path / "experiment.toml").read_text().startswith("# <dict>, as run by harness")
    assert harness.load_run(run.path).results == run.results


def test_load_runs_is_a_row_per_run_with_cells_intervals_and_timings(kl_run, store):
    frame = harness.load_runs([store / "tiny", kl_run[0]])
    assert frame["run"].tolist() == ["tiny", "tiny-kl"] and frame["path"].tolist() == [str(store / "tiny"), str(kl_run[0].path)]
    assert frame[["experiment", "variant", "seed", "optimizer", "reward", "feedback"]].values.tolist() == [
        ["tiny", "", 0, "ppo", "learned", "ranking"], ["tiny-kl", "", 0, "ppo", "learned", "ranking"]]
    win = frame["win rate vs SFT"]
    assert (frame["win rate vs SFT_low"] <= win).all() and (win <= frame["win rate vs SFT_high"]).all()
    assert frame["KL (nats)"].tolist() == pytest.approx([next(c.value for c in r.headline if c.name == "KL (nats)")
                                                         for r in (harness.load_run(store / "tiny"), kl_run[0])])
    assert {"wall_s", "compute_s", "sft_s", "policy_s", "evaluation_s", "proxy (SFT → policy)_before"} <= set(frame)
    assert frame["sft_s"].iloc[0] == frame["sft_s"].iloc[1]  # one trained SFT, shared: its own time in both


def test_compare_returns_the_report_table_and_writes_the_report(kl_run, store, tmp_path):
    out = tmp_path / "report"
    table = harness.compare([store / "tiny", kl_run[0]], out=out)
    assert table.index.tolist() == ["tiny", "tiny-kl"] and table.attrs["report"] == str(out / "report.md")
    written = pd.read_csv(out / "report.csv", index_col=0)
    assert written.columns.tolist() == table.columns.tolist()
    assert written["win_rate:win rate vs SFT"].tolist() == pytest.approx(table["win_rate:win rate vs SFT"].tolist())
    assert {"report.md", "report.html", "win_rate.png"} <= {p.name for p in out.iterdir()}
    assert "| tiny-kl |" in (out / "report.md").read_text()


def test_a_compare_experiment_returns_its_variants_and_a_comparison_dir_stands_for_them(kl_run, store, tiny_cache,
                                                                                      tmp_path):
    tables = tomllib.loads(TINY.read_text())
    tables["experiment"]["name"] = "tiny-betas"
    tables["compare"] = {"variants": {"base": {}, "kl": {"optimizer.ppo.init_kl_coef": 0.2}}}
    with harness_cache(tiny_cache):
        done = harness.run(tables, EVALUATORS, store, progress=False, echo=None)
    assert isinstance(done, harness.ComparisonResult) and list(done.runs) == ["base", "kl"] and not done.failed
    assert done.runs["kl"].variant == "kl" and done.runs["kl"].path == store / "tiny-betas" / "kl"
    assert (done.runs["kl"].path / "policy").resolve() == (kl_run[0].path / "policy").resolve()  # the same stage, reused
    assert done.report.is_file() and done.table().index.tolist() == ["base", "kl"]
    assert "ComparisonResult: tiny-betas · 2 variants" in repr(done)
    loaded = harness.load_run(store / "tiny-betas")
    assert isinstance(loaded, harness.ComparisonResult) and list(loaded.runs) == ["base", "kl"]
    frame = harness.load_runs([store / "tiny-betas", store / "tiny"])
    assert frame["run"].tolist() == ["base", "kl", "tiny"] and frame["variant"].tolist() == ["base", "kl", ""]
    cli = CliRunner().invoke(build_cli(get_plugin_manager(autoload=False)),  # the CLI's compare expands it too
                             ["compare", str(store / "tiny-betas"), "--out", str(tmp_path / "rep")])
    assert cli.exit_code == 0, cli.output
    assert re.search(r"^base\s+\d", cli.output, re.M) and re.search(r"^kl\s+\d", cli.output, re.M)  # the compact table




# ----------------------------------------------------------------- the README and the example notebook
def readme_section() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8").split("## From Python", 1)[1].split("\n## ", 1)[0]


def readme_snippet() -> str:
    return re.search(r"```python\n(.*?)```", readme_section(), re.S).group(1)


def _shown(function) -> str:
    """``name(a, b=None, *, c=True)`` as the README writes a signature: defaults, no annotations."""
    parts, star = [], False
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts, star = parts + ["*"], True
        default = "" if p.default is p.empty else "=" + getattr(p.default, "__name__", repr(p.default))
        parts.append(p.name + default)
    return f"{function.__name__}({', '.join(parts)})"


@pytest.mark.parametrize("name", ["run", "load_run", "load_runs", "compare"])
def test_the_readme_gives_each_function_its_signature(name):
    assert f"`{'harness.' if name == 'run' else ''}{_shown(getattr(harness, name))}`" in readme_section()


def test_the_readme_snippet_runs(clean_tiny_run, tiny_cache, tmp_path, monkeypatch):
    (tmp_path / "tests" / "data").mkdir(parents=True)
    shutil.copy(TINY, tmp_path / "tests" / "data" / "tiny.toml")
    copy_store(clean_tiny_run, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with harness_cache(tiny_cache):
        exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    assert len(namespace["runs"]) == 2 and len(namespace["table"]) == 2
    assert all(stage["reused"] for stage in namespace["base"].stages.values())  # the copied clean run
    assert (tmp_path / "runs" / "report" / "report.md").is_file() and "reward/proxy" in namespace["curve"]


def test_the_example_notebook_runs_two_experiments_and_compares_them(clean_tiny_run, tiny_cache, tmp_path, monkeypatch,
                                                                     capsys):
    """``python examples/notebook.py`` in a folder of its own: run here as ``__main__`` (what that command does,
    without another Python start), from that folder, with the session's model cache."""
    import runpy

    import matplotlib.pyplot as plt

    copy_store(clean_tiny_run, tmp_path / "runs")  # its SFT, feedback and RM are the clean run's
    monkeypatch.chdir(tmp_path)
    with harness_cache(tiny_cache):
        try:
            runpy.run_path(str(ROOT / "examples" / "notebook.py"), run_name="__main__")
        finally:
            plt.close("all")
    out = capsys.readouterr()
    assert "· policy: running" in out.out and "· sft: reusing" in out.out
    assert (tmp_path / "proxy_reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = harness.load_runs([tmp_path / "runs" / "notebook-tiny", tmp_path / "runs" / "notebook-tiny-kl"])
    assert frame["run"].tolist() == ["notebook-tiny", "notebook-tiny-kl"]
    assert pd.read_csv(tmp_path / "report" / "report.csv", index_col=0).index.tolist() == frame["run"].tolist()
