"""Trustworthy under faults: no secret echoed, files read back validated, results current or visibly not."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness._core.cli import build_cli
from harness._core.errors import CorruptFileError, HarnessError
from harness._core.io import atomic_write_json, read_json, read_jsonl, read_rebuildable_jsonl
from harness._core.plugins import get_plugin_manager
from harness._core.results import check_current, config_hash, load_current, mark_ended, mark_started
from harness._core.runner import ensure_writable
from harness._core.runstore import RunStore
from harness._core.secrets import scrub, scrub_data

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"
SECRET = "sk-test-SECRET123"
LLM = ["evaluation.win_rate.llm.base_url='http://127.0.0.1:9/v1'", "evaluation.win_rate.llm.model='m'"]
JUDGE = ["reward.name='llm_judge'", "reward.llm_judge.base_url='http://127.0.0.1:9/v1'", "reward.llm_judge.model='m'"]


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


def _validate(host, *sets: str, show: bool = False):
    args = ["validate", str(TINY), *(a for s in sets for a in ("--set", s))] + (["--show"] if show else [])
    return CliRunner().invoke(build_cli(host), args)


# ----------------------------------------------------------------- secrets
@pytest.mark.parametrize("sets", [
    [*LLM, f"evaluation.win_rate.llm.api_key_env={SECRET}"],  # the repro: the whole [llm] table was echoed
    [*JUDGE, f"reward.llm_judge.api_key_env={SECRET}"],
    [f"evaluation.win_rate.llm={{base_url='u', model='m', api_key_env='{SECRET}', concurrency=0}}"],
    [f"optimizer.ppo.steps={SECRET}"],
    [f"optimizer.ppo.no_such_key={SECRET}"],
    [f"evaluation.win_rate.judge={SECRET}"],
    [f"world.embedded={{seed_text='{SECRET}'}}"],
    [f"model.base=/{SECRET}/model"],
    [f"{SECRET}.x=1"],
])
def test_no_error_path_that_prints_config_echoes_a_key(host, sets):
    result = _validate(host, *sets)
    assert SECRET not in result.output and "SECRET123" not in result.output, result.output
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_a_key_shaped_hub_id_is_not_echoed_in_the_validate_note(host):
    result = _validate(host, f"model.base={SECRET}")
    assert result.exit_code == 0 and SECRET not in result.output and "[model] base = '***': hub id" in result.output


def test_validate_show_masks_key_shaped_values(host):
    result = _validate(host, f"experiment.description='key {SECRET}'", show=True)
    assert result.exit_code == 0 and SECRET not in result.output and "key ***" in result.output


def test_scrub_masks_keys_but_not_hashes_paths_or_names():
    assert scrub(f"Bearer abcdefgh12345 and {SECRET} and hf_abcdefghijklmnop") == "Bearer *** and *** and ***"
    kept = "/tmp/pytest-of-x/test_run_interrupted_after_rm_r0 sha 0123456789abcdef0123456789abcdef01234567"
    assert scrub(kept) == kept
    masked = scrub_data({"api_key": "plain", "api_key_env": "OPENAI_API_KEY", "max_tokens": 5, "tokenizer": "gpt2"})
    assert masked == {"api_key": "***", "api_key_env": "OPENAI_API_KEY", "max_tokens": 5, "tokenizer": "gpt2"}


def test_manifests_and_result_markers_never_hold_a_key(tmp_path):
    store = RunStore(tmp_path)
    record = store.begin("sft", "h1", seed=0)
    store.fail(record, HarnessError(f"endpoint refused key {SECRET}"))
    mark_started(tmp_path, "x", "h")
    mark_ended(tmp_path, "x", "h", RuntimeError(f"Incorrect API key provided: {SECRET}"))
    for path in (tmp_path / "sft" / "manifest.json", tmp_path / "results.json"):
        assert SECRET not in path.read_text() and "***" in path.read_text()


# ----------------------------------------------------------------- files read back
@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"), (b'{"status": "fini', "not valid JSON (line 1"), (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
])
def test_a_corrupt_json_file_is_one_line_naming_it_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError) as err:
        read_json(path, fix="delete it")
    assert str(err.value).startswith(f"{path}: {problem}") and str(err.value).endswith("; delete it")


def test_a_corrupt_manifest_moves_the_stage_aside_and_redoes_it(tmp_path):
    store = RunStore(tmp_path / "run")
    store.finish(store.begin("sft", "h1", seed=0), {"loss": 1.0}, wall_s=1.0)
    (tmp_path / "run" / "sft" / "model.bin").write_text("weights")
    (tmp_path / "run" / "sft" / "manifest.json").write_text("")  # the repro: an empty manifest blocked every rerun
    again = store.begin("sft", "h1", seed=0)
    assert not again.reused and not again.resumed and again.manifest["status"] == "running"
    entry = tmp_path / ".stages" / "sft-h1"
    assert len(store.notes) == 1 and f"{entry / 'manifest.json'}: empty file" in store.notes[0]
    moved = list((tmp_path / ".stages" / ".stale").glob("sft-corrupt-*"))
    assert len(moved) == 1 and (moved[0] / "model.bin").read_text() == "weights"


def test_jsonl_errors_name_the_line_and_rebuildable_files_are_moved_aside(tmp_path, capsys):
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(CorruptFileError, match=rf"^{path}:3: not valid JSON"):
        read_jsonl(path)
    assert read_rebuildable_jsonl(path, "collecting it again") is None and not path.exists()
    assert "moved it to feedback.jsonl.corrupt-" in capsys.readouterr().err
    path.write_text('{"a": 1}\n')
    assert read_rebuildable_jsonl(path, "x") == [{"a": 1}]


def test_an_unwritable_run_directory_is_one_clear_error(tmp_path, monkeypatch):
    def denied(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", denied)  # tests run as root, where chmod would not stop a write
    with pytest.raises(HarnessError, match=r"not writable \(Permission denied\).*chmod -R u\+w .*--output"):
        ensure_writable(tmp_path / "run")


# ----------------------------------------------------------------- results current or not
def _finished_run(root: Path, config: dict) -> Path:
    atomic_write_json(root / "resolved_config.json", config)
    store = RunStore(root)
    store.finish(store.begin("evaluation", "e1", seed=0), {}, wall_s=1.0)
    atomic_write_json(root / "results.json", {"status": "complete", "config_hash": config_hash(config),
                                              "stage_hashes": {"evaluation": "e1"}, "experiment": "x"})
    return root


def test_results_are_current_only_for_the_config_and_stages_they_came_from(tmp_path):
    run = _finished_run(tmp_path / "run", {"evaluation": {"judge": "gold"}})
    assert check_current(run, load_current(run)) is None
    legacy = json.loads((run / "results.json").read_text())  # what the old code left: old numbers, new config
    atomic_write_json(run / "resolved_config.json", {"evaluation": {"judge": "llm"}})
    assert "a rerun with a changed config did not finish" in check_current(run, legacy)
    atomic_write_json(run / "resolved_config.json", {"evaluation": {"judge": "gold"}})
    RunStore(run).begin("evaluation", "e2", seed=0)  # a changed evaluation stage, left running
    assert "stage 'evaluation' is now running with config e2" in check_current(run, legacy)
    mark_started(run, "x", "h")
    assert "its last run is running" in check_current(run, read_json(run / "results.json"))
    assert list((run / ".stale").glob("results-*.json"))  # the old results are kept aside, not shown


def test_compare_refuses_stale_and_corrupt_results_in_one_line(host, tmp_path):
    good = _finished_run(tmp_path / "good", {"a": 1})
    failed = _finished_run(tmp_path / "failed", {"a": 1})
    mark_ended(failed, "x", "h", HarnessError("judge down"))
    corrupt = _finished_run(tmp_path / "corrupt", {"a": 1})
    (corrupt / "results.json").write_text("{")
    result = CliRunner().invoke(build_cli(host), ["compare", str(good), str(failed), str(corrupt)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"{failed}: not comparable: its last run is failed (HarnessError: judge down)" in result.output
    assert f"{corrupt / 'results.json'}: not valid JSON (line 1" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------- validate checks local inputs
HF = """[experiment]
name = "hf"
[model]
base = "{base}"
[world]
name = "hf_data"
[world.hf_data.feedback]
path = "{path}"
format = "pairwise"
[feedback]
name = "pairwise"
"""


def _hf(tmp_path, host, data: bytes | None, base: str = "", env=None):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"x")
    path = tmp_path / "fb.jsonl"
    if data is not None:
        path.write_bytes(data)
    exp = tmp_path / "exp.toml"
    exp.write_text(HF.format(base=base or model, path=path))
    return CliRunner().invoke(build_cli(host), ["validate", str(exp)], env=env)


ROW = b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'


@pytest.mark.parametrize("data, message", [
    (ROW + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n', "fb.jsonl:2: not UTF-8 text"),
    (b"", "the file has no rows"),
    (ROW + ROW + b'{"prompt": "p", "chosen": \n', "fb.jsonl:3: not valid JSON (character 28: Expecting value)"),
    (b'{"prompt": "p", "chosen": "a"}\n', "role 'rejected' (column 'rejected' by default): no such column"),
    (None, "path = '{tmp}/fb.jsonl': no such file"),
])
def test_validate_reads_local_data_files(host, tmp_path, data, message):
    result = _hf(tmp_path, host, data)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "[world.hf_data.feedback]" in result.output and message.format(tmp=tmp_path) in result.output


def test_the_same_data_errors_stop_a_run_with_the_same_line(tmp_path):
    from harness._core.errors import ConfigError
    from harness_builtins.worlds.hf_data.options import FeedbackTable
    from harness_builtins.worlds.hf_data.sources import load

    path = tmp_path / "fb.jsonl"
    path.write_bytes(ROW + b"\xff\n")
    with pytest.raises(ConfigError, match=r"\[w\] .*fb.jsonl:2: not UTF-8 text.*fix or remove that line"):
        load(FeedbackTable(path=str(path), format="pairwise"), "w")


@pytest.mark.parametrize("base, message", [
    ("{tmp}/missing-model", "'{tmp}/missing-model': no such directory"),
    ("{tmp}/fb.jsonl", "a file, not a model directory"),
    ("{tmp}/empty", "no config.json in it"),
])
def test_validate_checks_a_local_base_model(host, tmp_path, base, message):
    (tmp_path / "empty").mkdir()
    result = _hf(tmp_path, host, ROW, base=base.format(tmp=tmp_path))
    assert result.exit_code == 2 and "[model] base" in result.output, result.output
    assert message.format(tmp=tmp_path) in result.output and "Repo id" not in result.output


def test_hub_ids_are_reported_as_such_and_offline_mode_is_honoured_at_once(host, tmp_path):
    online = _hf(tmp_path, host, ROW, base="someone/not-cached-model")
    assert online.exit_code == 0 and "hub id, not checked here" in online.output, online.output
    offline = _hf(tmp_path, host, ROW, base="someone/not-cached-model",
                  env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert offline.exit_code == 2 and "not in the local cache, and HF_HUB_OFFLINE is set" in offline.output


def test_a_plugins_check_experiment_problems_fail_validate(tmp_path):
    class Strict:
        @hookimpl
        def check_experiment(self, experiment):
            return [f"{experiment.source}: [model] base: not allowed here; pick another."]

    host = get_plugin_manager(extra=[Strict()], autoload=False)
    result = _validate(host)
    assert result.exit_code == 2 and result.output.strip() == f"error: {TINY}: [model] base: not allowed here; pick another."


# ----------------------------------------------------------------- strict option types
@pytest.mark.parametrize("setting, message", [
    ("optimizer.ppo.steps=true", "[optimizer.ppo] steps = true: expected an integer"),
    ("optimizer.ppo.steps='3'", "[optimizer.ppo] steps = '3': expected an integer"),
    ("optimizer.ppo.adaptive_kl='off'", "[optimizer.ppo] adaptive_kl = 'off': expected true or false"),
    ("optimizer.ppo.adaptive_kl=1", "[optimizer.ppo] adaptive_kl = 1: expected true or false"),
    ("optimizer.ppo.clip=true", "[optimizer.ppo] clip = true: expected a number"),
    ("optimizer.ppo.clip='0.2'", "[optimizer.ppo] clip = '0.2': expected a number"),
    ("optimizer.ppo.nokey=1", "[optimizer.ppo] unknown key 'nokey'"),
])
def test_option_types_are_strict_and_a_bad_set_is_blamed_on_the_set(host, setting, message):
    result = _validate(host, setting)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output and result.output.strip().endswith(f"(from --set {setting}).")


def test_integers_are_still_numbers_for_float_options(host):
    from harness._core.config import load_experiment

    exp = load_experiment(TINY, host.registry, ["optimizer.ppo.clip=1", "optimizer.ppo.lr=1"])
    assert exp.choice("optimizer").options.clip == 1.0 and isinstance(exp.choice("optimizer").options.clip, float)


# ----------------------------------------------------------------- resumed metrics
def test_a_resumed_stage_drops_the_killed_attempts_metrics_from_its_checkpoint_on(tmp_path):
    from harness_builtins.loggers import jsonl

    stage = tmp_path / "policy"
    stage.mkdir()
    lines = [json.dumps({"step": s, "time": 0, "ppo/kl": s}) for s in (1, 2, 3, 4)]
    (stage / "metrics.jsonl").write_text("\n".join(lines + [json.dumps({"step": 3, "eval/win": 1})]) + '\n{"step": 5, "pp')
    logger = jsonl.JsonlLogger(jsonl.JsonlLogger.Options())  # a fresh logger: the resumed run's
    for step in (3, 4):  # resumed from the checkpoint at step 2
        logger.metrics_logged(experiment=None, stage="policy", stage_dir=stage, metrics={"ppo/kl": step * 10}, step=step)
    rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("ppo/kl")) for r in rows] == [(1, 1), (2, 2), (3, None), (3, 30), (4, 40)]


def test_lm_eval_prints_no_git_error_outside_a_checkout(tmp_path, monkeypatch, capfd):
    """lm-eval asks git for a commit hash; outside a checkout git's 'fatal: not a git repository' stays out of the run output."""
    import lm_eval.evaluator as evaluator

    from harness_builtins.evaluators.lm_eval_tax import quiet_git_hash

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    original = evaluator.get_git_commit_hash
    with quiet_git_hash():
        assert evaluator.get_git_commit_hash() is None
    assert evaluator.get_git_commit_hash is original
    assert "fatal" not in capfd.readouterr().err


def test_unreachable_hub_id_fails_fast_with_one_line(monkeypatch, tmp_path):
    """A hub id the hub cannot be asked about is one error naming the fix, in seconds (not a minute of retries)."""
    import time

    from harness._core.errors import HarnessError
    from harness._core.models import load_causal_lm

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(HarnessError, match="'someorg/somemodel': the hub is unreachable from this machine.*HF_HUB_OFFLINE=1"):
        load_causal_lm("someorg/somemodel")
    assert time.perf_counter() - start < 15
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="not in the local cache"):
        load_causal_lm("someorg/somemodel")
