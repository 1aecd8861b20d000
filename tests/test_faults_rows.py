"""Issue 26, one test per row: the faults where the harness used to complete wrongly, write where it must not,
or end in a traceback. Each asserts the one clear line, the exit code (2: the user's mistake, 1: a failed run)
and that nothing is lost or silently wrong. Rows 3–6 (damaged stage files, divergence, disk full) are in
their own files."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness._core.building import build_component
from harness._core.cli import build_cli, main
from harness._core.comparison import run_comparison
from harness._core.config import load_experiment
from harness._core.errors import HarnessError
from harness._core.locks import FileLock, folder_lock
from harness._core.pipeline import ensure_writable
from harness._core.plugins import get_plugin_manager
from harness._core.preflight import memory_problems
from harness._core.report import write_report
from harness._core.results import mark_ended
from harness._core.runner import run_experiment
from harness._core.runstore import RunStore
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"
FAST = ["evaluation.evaluators=['rewards', 'win_rate']"]
GROQ = "gsk_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kL9nP2rS5uV8xA1"


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


def _cli(host, *args: str):
    return CliRunner().invoke(build_cli(host), list(args))


def _sets(*sets: str) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _one_line(result, code: int) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _hold(path: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process holding ``path``'s lock (ready once it printed its PID)."""
    code = ("import sys, time; from pathlib import Path; from harness._core.locks import FileLock; "
            f"FileLock(Path({str(path)!r})).acquire(wait=False) or sys.exit(3); print('held', flush=True); "
            f"time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


# ----------------------------------------------------------------- row 1: names that escape the output folder
@pytest.mark.parametrize("name", ["../escape", "/abs", "..", ".", ".hidden", "a" * 101, "tab\there"])
def test_an_experiment_name_cannot_escape_the_output_folder(host, tmp_path, name):
    line = _one_line(_cli(host, "validate", str(TINY), *_sets(f"experiment.name={json.dumps(name)}")), 2)
    assert "[experiment] name" in line and "names a directory under the output root" in line
    run = _cli(host, "run", str(TINY), "--output", str(tmp_path / "OUT"), *_sets(f"experiment.name={json.dumps(name)}"))
    assert _one_line(run, 2) == line and list(tmp_path.iterdir()) == []  # nothing written, beside OUT or in it


@pytest.mark.parametrize("table, message", [
    ('[compare.variants.".."]', '[compare.variants.".."]: the label is a path, not a name'),
    ("[compare.variants.report]", "the comparison writes its own report beside the variants"),
    ('[compare]\n"optimizer.name" = [".x", "ppo"]', "(made from the axes' values): the label starts with '.'"),
    (f'[compare]\n"experiment.description" = ["{"a" * 120}"]', "the label is 132 characters long (at most 100)"),
])
def test_a_variant_label_is_a_name(host, tmp_path, table, message):
    path = tmp_path / "cmp.toml"
    path.write_text(f'[experiment]\nname = "c"\n{table}\n')
    result = _cli(host, "validate", str(path))
    assert message in _one_line(result, 2)


# ----------------------------------------------------------------- row 2: one live run per experiment folder
def test_a_second_run_of_a_held_folder_refuses_at_once_naming_the_holder(host, tmp_path):
    out = tmp_path / "OUT"
    holder = _hold(out / "tiny" / ".lock")
    try:
        line = _one_line(_cli(host, "run", str(TINY), "--output", str(out), "--no-progress"), 2)
        assert f"is in use by another harness run (PID {holder.pid}" in line and "harness run --wait" in line
        assert sorted(p.name for p in (out / "tiny").iterdir()) == [".lock"]  # nothing of the holder's touched
        with folder_lock(out / "other"):  # another experiment under the same root runs freely
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = FileLock(out / "tiny" / ".lock")  # kill -9 leaves no stale lock
    assert lock.acquire(wait=False) and lock.holder() == os.getpid()
    lock.release()


def test_wait_waits_for_the_holder_and_then_runs(tmp_path):
    holder = _hold(tmp_path / "exp" / ".lock", seconds=1.0)
    said, start = [], time.monotonic()
    with folder_lock(tmp_path / "exp", wait=True, echo=said.append):
        assert time.monotonic() - start > 0.5  # the holder sleeps 1 s with the lock, then exits
    holder.wait()
    assert said == [f"waiting for PID {holder.pid} to finish with {tmp_path / 'exp'} …"]


def test_two_runs_needing_one_new_stage_train_it_once(tmp_path):
    """The stage store is shared: the second run waits for the entry the first is training, then reuses it."""
    code = ("import time; from pathlib import Path; from harness._core.runstore import RunStore; "
            f"s = RunStore(Path({str(tmp_path / 'a')!r})); r = s.begin('sft', 'h1', seed=0); "
            "print('began', flush=True); "
            "time.sleep(1.0); s.finish(r, {'loss': 1.0}, wall_s=1.0)")
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert first.stdout.readline().strip() == "began"
    record = RunStore(tmp_path / "b").begin("sft", "h1", seed=0)
    assert first.wait() == 0
    assert record.reused and record.manifest["summary"] == {"loss": 1.0} and record.manifest["attempts"] == 1


# ----------------------------------------------------------------- row 7: bad values stopped before training
@pytest.mark.parametrize("setting, message", [
    ("experiment.seed=-1", "[experiment] seed = -1: input should be greater than or equal to 0"),
    ("experiment.seed=1e20", "[experiment] seed = 1e+20: expected an integer"),
    ("experiment.seed=4294967296", "[experiment] seed = 4294967296: input should be less than or equal to 4294967295"),
    ("optimizer.ppo.lr=inf", "[optimizer.ppo] lr = inf: expected a finite number, not inf or nan"),
    ("reward_model.bradley_terry.lr=inf", "[reward_model.bradley_terry] lr = inf: expected a finite number"),
    ("sft.next_token.lr=nan", "[sft.next_token] lr = nan: expected a finite number"),
    ("optimizer.ppo.batch_size=1000000000000", "[optimizer.ppo] batch_size = 1000000000000: one batch needs at least"),
])
def test_bad_values_fail_validate_and_run_before_any_training(host, tmp_path, setting, message):
    line = _one_line(_cli(host, "validate", str(TINY), *_sets(setting)), 2)
    assert message in line
    run = _cli(host, "run", str(TINY), "--output", str(tmp_path / "OUT"), *_sets(setting))
    assert _one_line(run, 2) == line and not (tmp_path / "OUT").exists()


def test_the_memory_estimate_refuses_above_the_free_memory_and_warns_above_half():
    tables = [("optimizer.ppo", {"batch_size": 1000, "max_new_tokens": 10, "lr": 1e-5})]
    need = 1000 * 10 * 4096
    refused, warned = memory_problems("x.toml", tables, free=need - 1)
    assert len(refused) == 1 and not warned and "needs at least 39.1 MiB (1000 × 10 tokens × 4 KiB)" in refused[0]
    assert refused[0].endswith("lower batch_size.")
    refused, warned = memory_problems("x.toml", tables, free=need + 1)
    assert not refused and len(warned) == 1 and warned[0].endswith("the run may be killed for memory.")
    assert memory_problems("x.toml", tables, free=4 * need) == ([], [])


# ----------------------------------------------------------------- row 8: one line where a traceback was
def test_a_non_utf8_experiment_file_is_one_line(host, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[experiment]\nname = "caf\xe9"\n')
    assert _one_line(_cli(host, "validate", str(path)), 2) == \
        f"error: {path}: not UTF-8 text (line 2, byte 24); save the file as UTF-8."


def test_a_read_only_output_is_one_line(tmp_path, monkeypatch):
    def read_only(self, data):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", read_only)  # a read-only mount raises EROFS, not PermissionError
    with pytest.raises(HarnessError, match=r"not writable \(Read-only file system\).*--output") as err:
        ensure_writable(tmp_path / "run")
    assert err.value.exit_code == 2


def test_a_report_into_a_read_only_folder_is_one_line(host, tmp_path, monkeypatch):
    import harness._core.io as io

    def read_only(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs["dir"])

    monkeypatch.setattr(io.tempfile, "mkdtemp", read_only)
    with pytest.raises(HarnessError) as err:
        write_report([], tmp_path / "report", host.registry, title="t", failed={"a": "boom"})
    assert str(err.value) == (f"{tmp_path}: not writable (Read-only file system); the report goes in "
                              f"{tmp_path / 'report'}: make it writable, or choose another place "
                              f"(harness compare --out, harness run --output).")
    assert err.value.exit_code == 2


@pytest.fixture(scope="module")
def local_model(tiny_cache, host):
    """A saved copy of the embedded micro model (built once per session, in the session's model cache)."""
    import shutil

    exp = load_experiment(TINY, host.registry)
    with harness_cache(tiny_cache):
        source = Path(host.hook.resolve_model(base=exp.model.base, experiment=exp))
    return lambda tmp: Path(shutil.copytree(source, tmp / "model"))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "model.safetensors: 3000 bytes, but its header says"),
    ("model_type", "config.json: model_type 'nosuchtype' is not a model type transformers"),
    ("config", "config.json: not valid JSON"),
])
def test_a_damaged_local_model_is_one_line(host, tmp_path, local_model, damage, message):
    model = local_model(tmp_path)
    if damage == "truncate":
        os.truncate(model / "model.safetensors", 3000)
    elif damage == "model_type":
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "model_type": "nosuchtype"}))
    else:
        os.truncate(model / "config.json", 40)
    line = _one_line(_cli(host, "validate", str(TINY), *_sets(f"model.base='{model}'")), 2)
    assert f"[model] base = '{model}': {message}" in line
    with pytest.raises(HarnessError, match=f"cannot load model '{model}'") as err:
        from harness._core.models import load_causal_lm

        load_causal_lm(model)  # what a run meets if the directory is damaged after validation
    assert "\n" not in str(err.value)


def test_a_judge_cache_line_of_the_wrong_shape_is_skipped_not_trusted(tmp_path):
    from harness_builtins.judges.client import VerdictCache

    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "model": "m", "text": 5}\n{"key": "b", "model": "m", "text": "A"}\n[1]\n')
    cache = VerdictCache(path)
    assert cache.get("a") is None and cache.get("b") == "A" and cache.skipped == 2


def test_a_plugin_that_fails_to_load_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('plugin bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    for module, message in (("no_such_plugin_module", "-p no_such_plugin_module: cannot import it"),
                            ("broken_plugin", "-p broken_plugin: importing it failed: RuntimeError: plugin bug (at ")):
        with pytest.raises(SystemExit) as exit_:
            main(["validate", str(TINY), "-p", module])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and message in err and len(err.splitlines()) == 1, err


def test_an_unknown_component_family_is_one_line_listing_the_families(host):
    with pytest.raises(HarnessError) as err:
        build_component(host.registry, "feedback", "ranking", source="x.toml")
    assert str(err.value) == ("x.toml: a plugin built feedback 'ranking': no component family 'feedback' (did you mean "
                              "`feedback_format`?); the families are world, feedback_format, reward_source, optimizer, "
                              "stage, evaluator, judge, logger.")


# ----------------------------------------------------------------- rows 9 and 10: keys
LLM = "evaluation.win_rate.llm={{base_url='http://127.0.0.1:9/v1', model='m', api_key_env='{}'}}"


def test_an_unset_key_variable_fails_validate_and_run_before_training(host, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_UNSET_KEY", raising=False)
    sets = _sets("evaluation.win_rate.judge='llm'", LLM.format("HARNESS_TEST_UNSET_KEY"))
    line = _one_line(_cli(host, "validate", str(TINY), *sets), 2)
    assert line == (f"error: {TINY}: [evaluation.win_rate.llm] api_key_env = 'HARNESS_TEST_UNSET_KEY': the environment "
                    f"variable HARNESS_TEST_UNSET_KEY is not set; export it with the API key before the run (export "
                    f"HARNESS_TEST_UNSET_KEY=…), or set api_key_env = \"\" for an endpoint that needs none.")
    assert _one_line(_cli(host, "run", str(TINY), "--output", str(tmp_path / "OUT"), *sets), 2) == line
    assert not (tmp_path / "OUT").exists()
    unused = _cli(host, "validate", str(TINY), *_sets(LLM.format("HARNESS_TEST_UNSET_KEY")))  # judge = gold
    assert unused.exit_code == 0, unused.output


def test_a_groq_key_in_api_key_env_reaches_no_error_and_no_file(host, tmp_path, tiny_cache, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", tiny_cache)  # the full run below uses the session's micro model
    for sets in ([LLM.format(GROQ)], ["reward.name='llm_judge'", f"reward.llm_judge={{base_url='u', model='m', "
                                                                  f"api_key_env='{GROQ}'}}"]):
        failed = _cli(host, "validate", str(TINY), *_sets(*sets))  # a valid variable name, but shaped like a key
        assert "api_key_env must be the NAME of an environment variable" in _one_line(failed, 2)
        assert GROQ[4:20] not in failed.output
    # The error a run records when it fails (the stage manifest and the results.json marker):
    store = RunStore(tmp_path / "failed")
    error = HarnessError(f"judge 'llm': environment variable {GROQ} is not set (api_key_env = {GROQ!r})")
    store.fail(store.begin("evaluation", "e1", seed=0), error)
    mark_ended(tmp_path / "failed", "tiny", "h", error)
    for path in (tmp_path / "failed" / "evaluation" / "manifest.json", tmp_path / "failed" / "results.json"):
        assert GROQ[4:20] not in path.read_text() and "***" in path.read_text()
    # A full run with the key in tables it keeps (the unused llm judge's, the description): the resolved
    # config, experiment.toml, every stage manifest (their inputs hold the config) and results.json.
    out = tmp_path / "OUT"
    kept = "evaluation.win_rate.llm={{base_url='http://127.0.0.1:9/v1', model='{}'}}".format(GROQ)
    run = _cli(host, "run", str(TINY), "--output", str(out), "--no-progress",
               *_sets(*FAST, kept, f"experiment.description='key {GROQ}'"))
    assert run.exit_code == 0 and GROQ[4:20] not in run.output, run.output
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".toml", ".jsonl")]
    names = {p.name for p in written}
    assert {"resolved_config.json", "experiment.toml", "manifest.json", "results.json"} <= names
    leaked = [p for p in written if GROQ[4:20] in p.read_text(errors="replace")]
    assert leaked == [] and "key ***" in (out / "tiny" / "resolved_config.json").read_text()


# ----------------------------------------------------------------- row 11: reports are atomic and never stale
def test_a_report_killed_halfway_leaves_the_old_one_whole(host, tmp_path, monkeypatch):
    import harness._core.report as report

    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("old report")
    (out / "old-plot.png").write_bytes(b"png")
    runs = [{"label": "a", "dir": tmp_path / "a", "results": {"components": {"optimizer": "ppo"}}, "curve": []}]

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_html", killed)
    with pytest.raises(KeyboardInterrupt):
        report.render_report(runs, out, host.registry, title="t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left behind
    assert sorted(p.name for p in out.iterdir()) == ["old-plot.png", "report.md"]
    assert (out / "report.md").read_text() == "old report"
    monkeypatch.undo()
    report.render_report(runs, out, host.registry, title="t", failed={"b": "boom"})
    assert not (out / "old-plot.png").exists() and "- b: boom" in (out / "report.md").read_text()


def test_a_comparison_whose_variants_all_failed_says_so_in_its_report(host, tmp_path):
    path = tmp_path / "cmp.toml"
    path.write_text(f'[experiment]\nname = "c"\nextends = "{TINY}"\n[model]\nbase = "{tmp_path}/no/such/model"\n'
                    '[compare.variants.a]\n[compare.variants.b]\n"optimizer.ppo.lr" = 2e-5\n')
    old = tmp_path / "runs" / "c" / "report"
    old.mkdir(parents=True)
    (old / "report.md").write_text("| a | 0.9 |")  # a successful comparison's report, from before
    (old / "win_rate.png").write_bytes(b"png")
    with pytest.raises(HarnessError, match=r"every variant of 'c' failed \(.*report.md says so\); first: .*no such"):
        run_comparison(load_experiment(path, host.registry), host, tmp_path / "runs", show_progress=False,
                       echo=lambda s: None)
    text = (old / "report.md").read_text()
    assert "**No variant finished**" in text and "- a: " in text and "- b: " in text and "0.9" not in text
    assert sorted(p.name for p in old.iterdir()) == ["report.html", "report.md"]
    summary = json.loads((tmp_path / "runs" / "c" / "comparison.json").read_text())
    assert set(summary["failed"]) == {"a", "b"} and summary["report"] == str(old / "report.md")


def test_write_report_of_no_finished_runs_replaces_the_old_report(host, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.csv").write_text("old")
    written = write_report([], out, host.registry, title="t", failed={"x": "boom"})
    assert written.report == out / "report.md" and written.runs == [] and written.statistics == ""
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


def test_run_experiment_holds_the_folder_lock_while_it_runs(host, tmp_path, monkeypatch):
    """The API takes the same lock as the command line (the holder here is this very process)."""
    seen = []

    def fake_run(experiment, host_, root, show_progress, echo):
        lock = FileLock(root / experiment.name / ".lock")
        seen.append((lock.acquire(wait=False), lock.holder()))
        return {}

    import harness._core.runner as runner

    monkeypatch.setattr(runner, "_run", fake_run)
    run_experiment(load_experiment(TINY, host.registry), host, tmp_path, echo=lambda s: None)
    assert seen == [(False, os.getpid())]
