"""World ``hf_data``: real RLHF data from local JSONL/Parquet (never the hub), recorded feedback, no gold.

Fixtures in ``tests/data/hf_world/``: Anthropic-HH transcripts (pairwise, single- and
multi-turn, one row whose transcripts continue different dialogues), and plain columns for
pairwise (under non-default column names), ranking and rating data, demonstrations, prompts
and pretraining text. The end-to-end test trains a tiny Llama through SFT → RM → PPO →
evaluation on the HH fixture.
"""
from __future__ import annotations

import json
import math
import random
import re
from types import SimpleNamespace
from pathlib import Path

import pytest

from harness._core.config import load_experiment
from harness._core.contracts import RecordedFeedback, StageContext
from harness._core.errors import ConfigError, HarnessError
from harness._core.plugins import get_plugin_manager
from harness_builtins.feedback.likert import Likert
from harness_builtins.feedback.pairwise import Pairwise
from harness_builtins.feedback.ranking import Ranking
from harness_builtins.worlds.hf_data.options import HFDataOptions
from harness_builtins.worlds.hf_data.transcripts import TranscriptError, split_transcript, turns
from harness_builtins.worlds.hf_data.world import HFDataWorld
from tests.fakes import judge_builder, make_experiment
from tests.tiny_models import save_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "hf_world"
RECIPE = ROOT / "experiments" / "hh-pythia-gpu.toml"
RECORD_KEYS = {"prompt_id", "prompt", "responses", "annotator"}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """``datasets`` writes Arrow caches of local files: keep them out of the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets")


def world(seed=0, **tables) -> HFDataWorld:
    return HFDataWorld(HFDataOptions.model_validate(tables), seed=seed)


def hh_world(**extra) -> HFDataWorld:
    return world(feedback={"path": str(DATA / "hh_pairwise.jsonl"), "format": "pairwise", "hh_format": True}, **extra)


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


# ----------------------------------------------------------------- HH transcripts
def test_split_transcript_cuts_at_the_final_assistant_turn():
    text = "\n\nHuman: hi\n\nAssistant: hello .\n\nHuman: and cats ?\n\nAssistant: cats are nice ."
    assert split_transcript(text) == ("hi\n\nAssistant: hello .\n\nHuman: and cats ?", "cats are nice .")
    assert split_transcript(text.lstrip("\n")) == split_transcript(text)  # without the leading blank line
    assert split_transcript("\n\nHuman: just a question ?", require_reply=False) == ("just a question ?", "")
    with pytest.raises(TranscriptError):
        split_transcript("\n\nHuman: no reply here")
    with pytest.raises(TranscriptError):
        split_transcript("Assistant: who asked ?")
    assert turns("hi\n\nAssistant: hello .\n\nHuman: and cats ?") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello ."},
        {"role": "user", "content": "and cats ?"}]


def test_every_reader_skips_and_counts_empty_cells_and_broken_transcripts():
    from harness_builtins.worlds.hf_data import records

    good, broken = "\n\nHuman: hi ?\n\nAssistant: hello .", "Assistant: who asked ?"
    rows = [{"prompt": text, "response": text, "rating": 5} for text in (good, None, broken)]
    feedback = lambda rows, table, skipped: records.feedback_records(rows, table, "feedback", skipped)  # noqa: E731
    for read in (records.prompts_from_rows, records.demonstrations_from_rows, feedback):
        skipped = records.Skipped()
        assert len(read(rows, SimpleNamespace(hh_format=True, format="rating"), skipped)) == 1
        assert skipped.reasons == {"empty cell": 1, "not an HH transcript": 1}


def test_hh_pairwise_rows_become_pairwise_records():
    w = hh_world()
    rows = jsonl("hh_pairwise.jsonl")
    records = w.recorded_feedback("choice")
    assert w.skipped == {"feedback": {"transcripts with different prompts": 1}}
    assert all(set(r.to_json()) == RECORD_KEYS | {"choice"} and r.answer == 0 for r in records)
    # the multi-turn row: prompt = every earlier turn, responses = the two final replies
    multi = next(r for r in records if r.prompt.text.startswith("do you know cats"))
    assert multi.prompt.text == "do you know cats ?\n\nAssistant: yes , cats are nice .\n\nHuman: and what else ?"
    assert multi.prompt.kind == "dialogue"
    assert multi.responses == ("cats are kind too .", "cats are odd .")
    # the default template rebuilds the transcript's prefix exactly
    source = next(r for r in rows if r["chosen"].startswith("\n\nHuman: do you know cats"))
    chat = w.chat_text(next(p for p in w.prompts("rm") if p.id == multi.prompt.id))
    assert "\n\n" + chat == source["chosen"][: source["chosen"].rfind("\n\nAssistant:") + len("\n\nAssistant:")]


def test_eval_prompts_are_held_out_of_feedback_and_demonstrations():
    w = hh_world(eval_fraction=0.25)
    rm, ev, rl = ({p.id for p in w.prompts(s)} for s in ("rm", "eval", "rl"))
    assert len(rm) + len(ev) == 40 and len(ev) == 10 and not rm & ev
    assert rl == rm  # no [rl] source and rl_fraction = 0: RL samples the rm prompts
    assert {r.prompt.id for r in w.recorded_feedback("choice")} == rm
    demos = w.demonstrations()  # no [sft] source: the chosen reply of each rm item
    assert {d.prompt.id for d in demos} == rm == {p.id for p in w.prompts("sft")}
    chosen = {r.prompt.id: r.responses[0] for r in w.recorded_feedback("choice")}
    assert all(d.response == chosen[d.prompt.id] for d in demos)
    again = hh_world(eval_fraction=0.25)
    assert [p.id for p in again.prompts("eval")] == [p.id for p in w.prompts("eval")]  # seeded
    assert {p.id for p in hh_world(eval_fraction=0.25, seed=1).prompts("eval")} != ev


def test_sources_for_sft_rl_eval_and_pretraining():
    hh = {"path": str(DATA / "hh_pairwise.jsonl"), "hh_format": True}
    w = world(feedback={**hh, "format": "pairwise"},
              eval={**hh, "limit": 8, "columns": {"prompt": "chosen"}},  # the first 8 dialogues
              rl={"path": str(DATA / "prompts.jsonl"), "split": "train[:5]"}, sft={"path": str(DATA / "sft.jsonl")},
              pretraining={"path": str(DATA / "pretraining.jsonl"), "heldout_fraction": 0.05})
    eval_ids = {p.id for p in w.prompts("eval")}
    assert len(eval_ids) == 8 and not eval_ids & {r.prompt.id for r in w.recorded_feedback("choice")}
    assert [p.text for p in w.prompts("rl")] == [r["prompt"] for r in jsonl("prompts.jsonl")][:5]
    assert [(d.prompt.text, d.response) for d in w.demonstrations()] == [(r["prompt"], r["response"]) for r in jsonl("sft.jsonl")]
    texts = [r["text"] for r in jsonl("pretraining.jsonl")]
    assert w.pretraining_texts("train") == texts[:38] and w.pretraining_texts("heldout") == texts[38:]
    with pytest.raises(ConfigError, match=r"PPO-ptx.*\[world.hf_data.pretraining\].*ptx_coef = 0"):
        hh_world().pretraining_texts("train")


def test_rl_fraction_holds_rl_prompts_out_of_the_reward_model():
    w = hh_world(eval_fraction=0.1, rl_fraction=0.5)
    rm, rl, ev = ({p.id for p in w.prompts(s)} for s in ("rm", "rl", "eval"))
    assert len(ev) == 4 and len(rl) == 20 and len(rm) == 16 and not (rm & rl or rm & ev or rl & ev)


# ----------------------------------------------------------------- plain columns, every format
def test_plain_pairwise_from_jsonl_and_parquet_with_a_column_mapping(tmp_path):
    import pandas as pd

    parquet = tmp_path / "pairwise.parquet"
    pd.DataFrame(jsonl("pairwise.jsonl")).to_parquet(parquet)
    mapping = {"prompt": "question", "chosen": "better", "rejected": "worse", "annotator": "rater"}
    by_file = [world(feedback={"path": str(path), "format": "pairwise", "columns": mapping}, eval_fraction=0.2)
               for path in (DATA / "pairwise.jsonl", parquet)]
    a, b = (w.recorded_feedback("choice") for w in by_file)
    assert a == b and len(a) == 8
    rows = {r["question"]: r for r in jsonl("pairwise.jsonl")}
    for record in a:
        row = rows[record.prompt.text]
        assert list(record.responses) == [row["better"], row["worse"]] and record.annotator == row["rater"]
    groups = Pairwise().preference_groups(Pairwise().collect_from(by_file[0], by_file[0].prompts("rm"), random.Random(0)))
    assert len(groups) == 8 and all(g.pairs == ((0, 1, 1.0),) for g in groups)


def test_ranking_records_feed_the_ranking_format():
    w = world(feedback={"path": str(DATA / "ranking.jsonl"), "format": "ranking"}, eval_fraction=0.2)
    fmt = Ranking()
    records = fmt.collect_from(w, w.prompts("rm"), random.Random(0))
    assert isinstance(w, RecordedFeedback) and records == w.recorded_feedback("ranking") and len(records) == 8
    rows = {r["prompt"]: r for r in jsonl("ranking.jsonl")}
    for record, group in zip(records, fmt.preference_groups(records)):
        row = rows[record.prompt.text]
        assert list(record.answer) == row["ranking"] and list(group.responses) == row["responses"]
        best = row["ranking"][0]
        assert len(group.pairs) == 6 and all(w_ == best for w_, _, _ in group.pairs[:3])
        assert all(math.isclose(weight, 1 / 6) for _, _, weight in group.pairs)
        assert group.responses[best].endswith(tuple(f"{g} ." for g in ("nice", "great", "good", "kind")))


def test_rating_rows_become_one_likert_record_per_prompt_and_annotator():
    w = world(feedback={"path": str(DATA / "rating.jsonl"), "format": "rating"}, eval_fraction=0.2)
    fmt = Likert()
    records = fmt.collect_from(w, w.prompts("rm"), random.Random(0))
    assert len(records) == 2 * len(w.prompts("rm")) == 16
    assert {r.annotator for r in records} == {"a", "b"} and all(len(r.answer) == 3 for r in records)
    a = next(r for r in records if r.annotator == "a")
    assert a.field == "ratings" and a.answer == (6, 4, 2)
    groups = fmt.preference_groups(records)
    assert all({(w_, l) for w_, l, _ in g.pairs} == {(0, 1), (0, 2), (1, 2)} for g in groups)
    agreement = fmt.agreement(records)  # both annotators rated the same responses of every prompt
    assert agreement["n_items"] == 8 and agreement["pair_agreement"] == 1.0
    assert 0 < agreement["krippendorff_alpha"] < 1  # same order, shifted scale: agreement below perfect
    demos = w.demonstrations()
    assert all(d.response == next(r for r in records if r.prompt.id == d.prompt.id).responses[0] for d in demos)


def test_feedback_format_that_does_not_match_the_data_names_the_right_one():
    ranking = world(feedback={"path": str(DATA / "ranking.jsonl"), "format": "ranking"})
    with pytest.raises(ConfigError, match=r"format = 'ranking'.*reads 'choice' records. Set \[feedback\] name = 'ranking'"):
        Pairwise().collect_from(ranking, ranking.prompts("rm"), random.Random(0))
    rating = world(feedback={"path": str(DATA / "rating.jsonl"), "format": "rating"})
    with pytest.raises(ConfigError, match=r"Set \[feedback\] name = 'likert'"):
        Ranking().collect_from(rating, rating.prompts("rm"), random.Random(0))


# ----------------------------------------------------------------- errors a user can cause
def test_a_missing_column_names_table_role_file_and_the_columns_that_exist():
    w = world(feedback={"path": str(DATA / "hh_pairwise.jsonl"), "format": "pairwise", "hh_format": True,
                        "columns": {"chosen": "better"}})
    with pytest.raises(ConfigError) as err:
        w.prompts("rm")
    msg = str(err.value)
    assert "[world.hf_data.feedback] columns.chosen = 'better'" in msg and "hh_pairwise.jsonl" in msg
    assert "its columns are: chosen, rejected" in msg
    plain = world(feedback={"path": str(DATA / "pairwise.jsonl"), "format": "pairwise"})  # default names
    with pytest.raises(ConfigError, match=r"role 'prompt' \(column 'prompt' by default\).*question, better, worse, rater"):
        plain.prompts("rm")


def test_bad_tables_fail_at_validation(tmp_path):
    registry = get_plugin_manager(autoload=False).registry

    def validate(world_table: str):
        path = tmp_path / "exp.toml"
        path.write_text(f'[experiment]\nname = "x"\n[world]\nname = "hf_data"\n{world_table}')
        return load_experiment(path, registry)

    with pytest.raises(ConfigError, match=r"\[world.hf_data\] feedback.*unknown role 'answer'; roles of this table: "
                                          r"prompt, chosen, rejected, annotator"):
        validate('[world.hf_data.feedback]\npath = "x.jsonl"\nformat = "pairwise"\ncolumns = {answer = "a"}\n')
    with pytest.raises(ConfigError, match=r"hh_format = true the prompt is the transcripts' shared prefix"):
        validate('[world.hf_data.feedback]\npath = "x.jsonl"\nformat = "pairwise"\nhh_format = true\ncolumns = {prompt = "p"}\n')
    with pytest.raises(ConfigError, match=r"\[world.hf_data\] feedback.format: expected 'pairwise', 'ranking' or 'rating'"):
        validate('[world.hf_data.feedback]\npath = "x.jsonl"\nformat = "votes"\n')
    with pytest.raises(ConfigError, match=r"\[world.hf_data\] feedback.*is required"):
        validate("")
    with pytest.raises(ConfigError, match=r"chat_template = 'tokenizer' needs tokenizer"):
        validate('[world.hf_data]\nchat_template = "tokenizer"\n[world.hf_data.feedback]\npath = "x.jsonl"\nformat = "rating"\n')
    with pytest.raises(ConfigError, match=r"has no \{prompt\} placeholder"):
        validate('[world.hf_data]\nchat_template = "Q: A:"\n[world.hf_data.feedback]\npath = "x.jsonl"\nformat = "rating"\n')


def test_a_ranking_that_is_no_permutation_names_its_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}) + "\n")
    with pytest.raises(ConfigError, match=r"row 0: ranking \[0, 0, 1\] is not a permutation of 0..2"):
        world(feedback={"path": str(path), "format": "ranking"}).prompts("rm")
    with pytest.raises(ConfigError, match=r"path = '.*missing.jsonl': no such file"):
        world(feedback={"path": str(tmp_path / "missing.jsonl"), "format": "ranking"}).prompts("rm")


# ----------------------------------------------------------------- no gold, no annotators, no models
def test_a_real_data_world_has_no_gold_annotators_or_models():
    w = hh_world()
    assert w.gold() is None and w.annotators() == [] and w.lm_eval_tasks() == (None, [])
    with pytest.raises(HarnessError, match=r"\[model\] base"):
        w.base_model("tiny")
    with pytest.raises(HarnessError, match="recorded_feedback"):
        w.candidate_responses(w.prompts("rm")[0], 2, random.Random(0))


def _ctx(w, tmp_path):
    return StageContext(experiment=make_experiment(), stage="evaluation", stage_dir=tmp_path, world=w,
                        log=lambda m, s: None, artifacts={}, build=judge_builder())


def test_win_rate_with_the_gold_judge_says_to_use_another_judge(tmp_path):
    from harness_builtins.evaluators.win_rate import WinRate

    evaluator = WinRate(WinRate.Options(judge="gold"))
    with pytest.raises(HarnessError, match=r'no gold judge.*judge = "reward" or "llm"'):
        evaluator.judge(_ctx(hh_world(), tmp_path))


def test_lm_eval_tax_without_tasks_says_where_to_name_them(tmp_path):
    from harness_builtins.evaluators.lm_eval_tax import LmEvalTax

    with pytest.raises(HarnessError, match=r"no lm-eval tasks.*\[evaluation.lm_eval_tax\] tasks"):
        LmEvalTax(LmEvalTax.Options()).task_manager(_ctx(hh_world(), tmp_path))


# ----------------------------------------------------------------- chat templates
def test_tokenizer_chat_template_renders_dialogue_turns(tmp_path):
    tokenizer = _word_tokenizer(["hi", "hello", "cats"])
    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    tokenizer.save_pretrained(tmp_path / "tok")
    w = hh_world(chat_template="tokenizer", tokenizer=str(tmp_path / "tok"))
    multi = next(p for p in w.prompts("rm") + w.prompts("eval") if p.text.startswith("do you know cats"))
    assert w.chat_text(multi) == ("<user>do you know cats ?\n<assistant>yes , cats are nice .\n"
                                  "<user>and what else ?\n<assistant>")
    single = next(p for p in w.prompts("rm") if p.kind == "single_turn")
    assert w.chat_text(single) == f"<user>{single.text}\n<assistant>"
    custom = hh_world(chat_template="### Q: {prompt}\n### A:")
    assert custom.chat_text(single) == f"### Q: {single.text}\n### A:"


# ----------------------------------------------------------------- the GPU recipe
def test_gpu_recipe_validates_offline(monkeypatch):
    """``harness validate`` on the recipe resolves every name and option and reads no data, no model."""
    import datasets
    import transformers
    from click.testing import CliRunner

    from harness._core.cli import build_cli

    def no_network(*args, **kwargs):
        raise AssertionError("validation must not load data or models")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_network)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_network)
    host = get_plugin_manager(autoload=False)
    out = CliRunner().invoke(build_cli(host), ["validate", str(RECIPE)])
    assert out.exit_code == 0, out.output
    assert "world=hf_data" in out.output and "feedback=pairwise" in out.output and "optimizer=ppo" in out.output
    exp = load_experiment(RECIPE, host.registry)
    hf = exp.choice("world").options
    assert hf.feedback.path == "Anthropic/hh-rlhf" and hf.feedback.hh_format and hf.feedback.format == "pairwise"
    assert exp.compute.backend == "deepspeed" and exp.compute.zero_stage == 2 and exp.compute.mixed_precision == "bf16"
    assert exp.evaluators["win_rate"].judge == "reward" and exp.choice("reward").name == "learned"
    assert not re.match(r"embedded:", exp.model.base)


# ----------------------------------------------------------------- end to end
def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<bos>", "<eos>", *sorted(set(words))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    text = (DATA / "hh_pairwise.jsonl").read_text()
    tok = _word_tokenizer(re.findall(r"\w+|[^\w\s]", json.dumps([json.loads(l) for l in text.splitlines()])))
    return save_tiny_llama(tmp_path_factory.mktemp("hf-base"), tok, positions=128, tie=True)


TINY_RUN = """
[experiment]
name = "hf-tiny"
[model]
base = "{base}"
[world]
name = "hf_data"
[world.hf_data]
eval_fraction = 0.2
[world.hf_data.feedback]
path = "{data}"
format = "pairwise"
hh_format = true
[sft.next_token]
epochs = 1
batch_size = 8
[feedback]
name = "pairwise"
[reward_model.bradley_terry]
epochs = 1
batch_size = 8
normalization_samples = 4
max_new_tokens = 6
[optimizer.ppo]
steps = 2
batch_size = 4
minibatch_size = 2
max_new_tokens = 6
value_model = "shared"
ppo_epochs = 1
checkpoint_every = 0
[evaluation]
evaluators = ["rewards", "win_rate"]
prompts = 4
max_new_tokens = 6
batch_size = 4
[evaluation.win_rate]
judge = "reward"
[compute]
backend = "cpu"
threads = 1
"""


def test_pipeline_runs_on_recorded_feedback_without_gold(tiny_base, tmp_path):
    from harness._core.runner import run_experiment

    path = tmp_path / "hf.toml"
    path.write_text(TINY_RUN.format(base=tiny_base, data=DATA / "hh_pairwise.jsonl"))
    host = get_plugin_manager(autoload=False)
    results = run_experiment(load_experiment(path, host.registry), host, tmp_path / "runs",
                             show_progress=False, echo=lambda s: None)
    run_dir = tmp_path / "runs" / "hf-tiny"
    feedback = [json.loads(line) for line in (run_dir / "feedback" / "feedback.jsonl").read_text().splitlines()]
    recorded = hh_world(eval_fraction=0.2).recorded_feedback("choice")
    assert feedback == [r.to_json() for r in recorded]  # the recorded labels, as they are
    assert results["feedback"]["n_records"] == 32
    assert results["rm"]["n_records"] == 32 and results["rm"].get("gold_accuracy") is None  # absent: no gold
    assert 0.0 <= results["rm"]["accuracy"] <= 1.0
    assert not {"gold_score", "base_gold_score"} & set(results["sft"]) and results["sft"]["n_demonstrations"] == 32
    assert {"reward_proxy", "sft_reward_proxy", "kl"} <= set(results["policy"])
    assert not any("gold" in key for key in results["policy"])
    win = results["win_rate_vs_sft"]
    assert win["judge"] == "reward" and win["n"] == 4 and win["ci_low"] <= win["rate"] <= win["ci_high"]
    metrics = [json.loads(line) for line in (run_dir / "policy" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "reward/proxy" in m]
    assert len(steps) == 2 and not any("reward/gold" in m for m in metrics)
