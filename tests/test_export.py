"""``harness export feedback``: a run's feedback as datasets that trl and the ``hf_data`` world read back.

The session's clean tiny run (conftest's ``clean_tiny_run``: ranking feedback, K = 4) is exported in each
layout it can give and read back by ``datasets``, by the ``hf_data`` world (configured from the dataset
card's own TOML block) and by trl's ``DPOTrainer`` data path (tokenized and one loss evaluated, never
trained). Pairwise and Likert feedback come from runs made here out of the tiny run's records. The last
test loads the run's reward model and policy with plain ``transformers`` Auto classes.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness._core.cli import build_cli
from harness._core.errors import HarnessError
from harness._core.export import CARD, LAYOUT_COLUMNS, export_feedback
from harness._core.plugins import get_plugin_manager
from harness._core.records import FEEDBACK_FILE, FeedbackRecord, read_feedback, write_feedback
from harness_builtins.feedback.likert import Likert
from harness_builtins.feedback.pairwise import Pairwise
from harness_builtins.feedback.ranking import Ranking
from harness_builtins.worlds.embedded.world import EmbeddedWorld
from harness_builtins.worlds.hf_data.options import HFDataOptions
from harness_builtins.worlds.hf_data.world import HFDataWorld

RATING_BY_PLACE = (7, 5, 5, 2)  # best → worst: one tie, so a Likert record has 5 derived pairs, not 6


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """``datasets`` writes Arrow caches of local files: keep them out of the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets")


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


@pytest.fixture(scope="module")
def run_dir(clean_tiny_run) -> Path:
    root, _ = clean_tiny_run
    return root / "tiny"


@pytest.fixture(scope="module")
def records(run_dir) -> list[FeedbackRecord]:
    return read_feedback(run_dir / "feedback" / FEEDBACK_FILE)


def made_run(tmp_path: Path, tiny: Path, kind: str) -> Path:
    """A run directory of pairwise or Likert feedback made from the tiny run's rankings (with sources, and no
    feedback manifest: its format comes from resolved_config.json)."""
    run = tmp_path / f"{kind}-run"
    (run / "feedback").mkdir(parents=True)
    config = json.loads((tiny / "resolved_config.json").read_text())
    made = []
    for r in read_feedback(tiny / "feedback" / FEEDBACK_FILE):
        sources = ["sft", "world"] * 2
        if kind == "pairwise":  # the better of the first two responses
            first, second = r.answer.index(0), r.answer.index(1)
            made.append(FeedbackRecord(r.prompt, r.responses[:2], r.annotator, "choice", int(second < first), sources[:2]))
        else:
            ratings = [RATING_BY_PLACE[r.answer.index(i)] for i in range(len(r.responses))]
            made.append(FeedbackRecord(r.prompt, r.responses, r.annotator, "ratings", ratings, sources))
    write_feedback(run / "feedback" / FEEDBACK_FILE, made)
    config["feedback"] = {"name": kind, kind: {}}
    (run / "resolved_config.json").write_text(json.dumps(config))
    return run


def load_json_rows(path: Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")


def hf_data_world(card: Path, tmp_path: Path) -> HFDataWorld:
    """The ``hf_data`` world the card's TOML block configures, with held-out eval prompts of its own (so every
    exported prompt stays in the ``rm`` split)."""
    block = re.search(r"```toml\n(.*?)```", card.read_text(), re.S).group(1)
    table = tomllib.loads(block)["world"]["hf_data"]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"prompt": "an unrelated held-out prompt"}) + "\n")
    return HFDataWorld(HFDataOptions.model_validate(table | {"eval": {"path": str(eval_file)}}))


def stripped_groups(groups):
    return [(g.prompt.text, tuple(r.strip() for r in g.responses), g.pairs) for g in groups]


# ----------------------------------------------------------------- trl-preference
def test_trl_preference_export_holds_the_pairs_the_reward_model_and_dpo_train_on(run_dir, records, host, tmp_path):
    from transformers import AutoTokenizer

    from harness_builtins.optimizers.dpo import build_dataset, preference_pairs

    done = export_feedback(run_dir, "trl-preference", tmp_path / "out", host.registry)
    data = load_json_rows(done.data)
    assert data.column_names == list(LAYOUT_COLUMNS["trl-preference"])
    groups = Ranking(Ranking.Options(k=4)).preference_groups(records)
    dpo = build_dataset(EmbeddedWorld(), AutoTokenizer.from_pretrained(str(run_dir / "sft" / "model")),
                        preference_pairs(groups), max_length=10_000)
    for column in ("prompt", "chosen", "rejected", "weight"):  # what the harness's DPO hands trl, pair for pair
        assert data[column] == dpo[column]
    assert len(data) + done.left_out == 6 * len(records) and done.records == len(records)
    by_record = Counter()
    for row in data:
        by_record[row["record"]] += row["weight"]
        assert row["annotator"] == records[row["record"]].annotator and row["prompt_id"] == records[row["record"]].prompt.id
    assert all(math.isclose(total, 1.0) for record, total in by_record.items() if records[record].responses[0] not in
               records[record].responses[1:])  # a ranking's pairs share weight 1
    from datasets import load_dataset

    assert load_dataset(str(done.out), split="train")["chosen"] == data["chosen"]  # the card's header names the file


def test_trl_preference_export_round_trips_through_hf_data(run_dir, records, host, tmp_path):
    done = export_feedback(run_dir, "trl-preference", tmp_path / "out", host.registry)
    world = hf_data_world(done.out / CARD, tmp_path)
    back = world.recorded_feedback("choice")
    exported = load_json_rows(done.data)
    assert len(back) == len(exported)
    embedded = EmbeddedWorld()
    assert [world.chat_text(r.prompt) for r in back] == exported["prompt"]  # what the policy saw, unchanged
    assert [world.chat_text(r.prompt) for r in back] == [embedded.chat_text(records[i].prompt) for i in exported["record"]]
    expected = Counter((g.prompt.text, g.responses[w], g.responses[l], r.annotator)
                       for r, g in zip(records, Ranking(Ranking.Options(k=4)).preference_groups(records))
                       for w, l, _ in g.pairs if g.responses[w] != g.responses[l])
    assert Counter((r.prompt.text, *r.responses, r.annotator) for r in back) == expected
    assert {g.pairs for g in Pairwise().preference_groups(back)} == {((0, 1, 1.0),)}  # hf_data: every pair weighs 1


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # trl → transformers
def test_trl_dpo_trainer_tokenizes_the_export(run_dir, host, tmp_path):
    """trl's own data path (DPOTrainer's dataset preparation and collator) takes the export as it is; with the
    policy equal to its reference, DPO's loss on a batch is exactly log 2."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    done = export_feedback(run_dir, "trl-preference", tmp_path / "out", host.registry, file_type="parquet")
    data = load_dataset("parquet", data_files=str(done.data), split="train").select(range(8))
    sft = str(run_dir / "sft" / "model")
    tokenizer = AutoTokenizer.from_pretrained(sft)
    args = DPOConfig(output_dir=str(tmp_path / "trainer"), report_to=[], use_cpu=True, per_device_train_batch_size=4,
                     save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, bf16=False,
                     activation_checkpointing=False)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(sft), ref_model=AutoModelForCausalLM.from_pretrained(sft),
                         args=args, train_dataset=data, processing_class=tokenizer)
    tokenized = trainer.train_dataset
    for row, text in zip(tokenized, data):
        assert tokenizer.decode(row["prompt_ids"] + row["chosen_ids"]) == text["prompt"] + text["chosen"] + tokenizer.eos_token
        assert tokenizer.decode(row["prompt_ids"] + row["rejected_ids"]) == text["prompt"] + text["rejected"] + tokenizer.eos_token
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) >= {"input_ids", "attention_mask", "completion_mask"} and batch["input_ids"].shape[0] == 8  # chosen + rejected
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)


# ----------------------------------------------------------------- ranking and Likert
def test_ranking_export_round_trips_through_hf_data(run_dir, records, host, tmp_path):
    from datasets import load_dataset

    done = export_feedback(run_dir, "ranking", tmp_path / "out", host.registry, file_type="parquet")
    data = load_dataset("parquet", data_files=str(done.data), split="train")
    assert data.column_names == list(LAYOUT_COLUMNS["ranking"]) and len(data) == len(records)
    assert data["ranking"] == [list(r.answer) for r in records] and data["annotator"] == [r.annotator for r in records]
    back = hf_data_world(done.out / CARD, tmp_path).recorded_feedback("ranking")
    ranking = Ranking(Ranking.Options(k=4))
    assert stripped_groups(ranking.preference_groups(back)) == stripped_groups(ranking.preference_groups(records))
    assert [r.annotator for r in back] == [r.annotator for r in records]


def test_likert_export_round_trips_through_hf_data_with_sources(run_dir, host, tmp_path):
    run = made_run(tmp_path, run_dir, "likert")
    records = read_feedback(run / "feedback" / FEEDBACK_FILE)
    done = export_feedback(run, "likert", tmp_path / "out", host.registry)
    data = load_json_rows(done.data)
    assert data.column_names == list(LAYOUT_COLUMNS["likert"]) and len(data) == 4 * len(records)
    assert data["source"][:4] == ["sft", "world", "sft", "world"] and data["rating"][:4] == list(records[0].answer)
    back = hf_data_world(done.out / CARD, tmp_path).recorded_feedback("ratings")
    assert stripped_groups(Likert().preference_groups(back)) == stripped_groups(Likert().preference_groups(records))

    pairs = export_feedback(run, "trl-preference", tmp_path / "pairs", host.registry)
    rows = load_json_rows(pairs.data)
    assert len(rows) + pairs.left_out == 5 * len(records)  # ties left out, as the format's derived pairs leave them
    for row in rows:
        record = records[row["record"]]
        chosen = [r.strip() for r in record.responses].index(row["chosen"].strip())
        assert row["chosen_source"] == record.sources[chosen] and math.isclose(row["weight"], 1 / 5)


def test_a_layout_the_feedback_cannot_give_is_refused(run_dir, host, tmp_path):
    pairwise = made_run(tmp_path, run_dir, "pairwise")
    for layout in ("ranking", "likert"):
        with pytest.raises(HarnessError, match=r"feedback is pairwise \('choice' records\), which exports as "
                                               r"trl-preference, not " + layout):
            export_feedback(pairwise, layout, tmp_path / layout, host.registry)
    with pytest.raises(HarnessError, match="feedback is ranking .* exports as trl-preference or ranking, not likert"):
        export_feedback(run_dir, "likert", tmp_path / "likert", host.registry)
    assert not (tmp_path / "likert").exists()
    done = export_feedback(pairwise, "trl-preference", tmp_path / "pairs", host.registry)
    rows = load_json_rows(done.data)
    assert len(rows) + done.left_out == len(read_feedback(pairwise / "feedback" / FEEDBACK_FILE))
    assert set(rows["weight"]) == {1.0} and set(zip(rows["chosen_source"], rows["rejected_source"])) <= {
        ("sft", "world"), ("world", "sft")}


# ----------------------------------------------------------------- where it reads and writes
def test_out_is_never_overwritten_without_force_nor_a_foreign_directory_with_it(run_dir, host, tmp_path):
    out = tmp_path / "out"
    export_feedback(run_dir, "trl-preference", out, host.registry)
    with pytest.raises(HarnessError, match=f"--out {out} is not empty .* pass --force"):
        export_feedback(run_dir, "ranking", out, host.registry)
    done = export_feedback(run_dir, "ranking", out, host.registry, file_type="parquet", force=True)
    assert sorted(p.name for p in out.iterdir()) == [CARD, "feedback.parquet"] and done.data == out / "feedback.parquet"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="holds 'notes.txt', which no export wrote"):
        export_feedback(run_dir, "ranking", out, host.registry, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "feedback.parquet").is_file()


def test_a_directory_that_is_not_one_run_with_feedback_is_one_clear_error(run_dir, host, tmp_path):
    with pytest.raises(HarnessError, match=f"{tmp_path}: no feedback stage \\(feedback/feedback.jsonl is missing\\); "
                                           f"pass a run directory"):
        export_feedback(tmp_path, "trl-preference", tmp_path / "out", host.registry)
    comparison = tmp_path / "cmp"
    comparison.mkdir()
    (comparison / "comparison.json").write_text("{}")
    (comparison / "ppo").symlink_to(run_dir, target_is_directory=True)
    with pytest.raises(HarnessError, match=f"{comparison} holds a comparison, not one run: export one of its runs "
                                           f"\\(ppo\\), e.g. `harness export feedback {comparison / 'ppo'}"):
        export_feedback(comparison, "trl-preference", tmp_path / "out", host.registry)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir / "feedback", copy / "feedback")
    shutil.copy(run_dir / "resolved_config.json", copy)
    feedback, manifest_path = copy / "feedback" / FEEDBACK_FILE, copy / "feedback" / "manifest.json"
    feedback.write_text(feedback.read_text()[:-200])  # cut short: the manifest's size no longer matches
    with pytest.raises(HarnessError, match=f"{FEEDBACK_FILE}.*; rerun the experiment \\(the feedback stage is redone\\)"):
        export_feedback(copy, "trl-preference", tmp_path / "out", host.registry)
    manifest_path.write_text(json.dumps(json.loads(manifest_path.read_text()) | {"status": "interrupted"}))
    with pytest.raises(HarnessError, match="the feedback stage is interrupted, not finished; rerun the experiment"):
        export_feedback(copy, "trl-preference", tmp_path / "out", host.registry)
    assert not (tmp_path / "out").exists()


def test_the_cli_exports_and_reports_in_one_line(run_dir, host, tmp_path):
    out = tmp_path / "out"
    cli = build_cli(host)
    result = CliRunner().invoke(cli, ["export", "feedback", str(run_dir), "--format", "ranking", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{out / 'feedback.jsonl'}: ") and " ranking rows from " in result.output
    again = CliRunner().invoke(cli, ["export", "feedback", str(run_dir), "--out", str(out)])
    assert again.exit_code != 0 and again.output.count("\n") == 1 and "pass --force" in again.output


# ----------------------------------------------------------------- the saved models in plain transformers
def test_the_runs_reward_model_and_policy_load_with_transformers_auto_classes(run_dir, records):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from harness._core.models import load_causal_lm
    from harness._core.reward_models import load_reward_model, score_texts
    from harness._core.text import encode_prompt, encode_response

    world, prompt, responses = EmbeddedWorld(), records[0].prompt, list(records[0].responses)
    rm_dir = run_dir / "reward_model" / "model"
    rm, tokenizer = AutoModelForSequenceClassification.from_pretrained(str(rm_dir)), AutoTokenizer.from_pretrained(str(rm_dir))
    assert rm.config.num_labels == 1 and rm.config.pad_token_id is not None
    with torch.no_grad():
        plain = torch.stack([rm(input_ids=torch.tensor([encode_prompt(tokenizer, world.chat_text(prompt))
                                                        + encode_response(tokenizer, r)])).logits[0, 0] for r in responses])
        text = rm(**tokenizer(world.chat_text(prompt) + " " + responses[0], return_tensors="pt")).logits
    harness_rm, harness_tok = load_reward_model(rm_dir)
    ours = score_texts(harness_rm, harness_tok, world, [prompt] * len(responses), responses, max_length=512, batch_size=4)
    assert torch.allclose(plain, ours, atol=1e-5) and text.shape == (1, 1) and torch.isfinite(text).all()

    policy_dir = run_dir / "policy" / "model"
    policy, tokenizer = AutoModelForCausalLM.from_pretrained(str(policy_dir)), AutoTokenizer.from_pretrained(str(policy_dir))
    ids = torch.tensor([encode_prompt(tokenizer, world.chat_text(prompt))])
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    out = policy.generate(ids, attention_mask=torch.ones_like(ids), **greedy)
    harness_policy, _ = load_causal_lm(policy_dir)
    assert out.shape[1] > ids.shape[1] and tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert torch.equal(out, harness_policy.generate(ids, attention_mask=torch.ones_like(ids), **greedy))
