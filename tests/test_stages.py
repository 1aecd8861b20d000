"""SFT, feedback and reward-model stages (and the learned reward source) on a toy world with a tiny Llama.

The toy world: prompts "tell me about <topic>", demonstrations "<topic> are good", candidate
responses "<topic> are <adjective>". Gold quality and the annotators' taste are a value per
adjective, so a reward model only has to learn which adjective is better to beat chance.
"""
import json
from dataclasses import replace
from math import comb
from types import SimpleNamespace

import pluggy
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from harness._core import hookspecs
from harness._core.compute import ComputeOptions
from harness._core.config import Choice
from harness._core.models import load_causal_lm
from harness._core.candidates import candidate_source, sample_distinct
from harness._core.contracts import Components, Demonstration, FeedbackRecord, Prompt, StageContext
from harness._core.errors import HarnessError
from harness._core.feedback import feedback_stage
from harness._core.text import encode_prompt, encode_response
from harness_builtins.feedback.pairwise import Pairwise
from harness_builtins.feedback.ranking import Ranking
from harness_builtins.rewards.learned import LearnedReward
from harness_builtins.stages.common import IGNORE, lm_batch, sample_responses, token_loss_sum
from harness_builtins.stages.reward_model import BradleyTerryRM, Encoded, bt_loss
from harness_builtins.stages.sft import NextTokenSFT
from tests.fakes import make_experiment
from tests.tiny_models import save_tiny_llama

TOPICS = ["cats", "dogs", "birds", "fish", "trees", "rivers", "stars", "roads"]
VALUE = {"good": 3.0, "great": 2.5, "nice": 2.0, "fine": 1.0, "odd": 0.0, "dull": -1.0, "poor": -2.0, "bad": -3.0}
WORDS = ["User", "Assistant", ":", "tell", "me", "about", "are", *TOPICS, *VALUE]


def quality(response: str) -> float:
    return sum(VALUE.get(w, 0.0) for w in response.split())


class ToyGold:
    def score(self, prompt, response):
        return quality(response)

    def compare(self, prompt, a, b):
        qa, qb = quality(a), quality(b)
        return 0.5 if qa == qb else float(qa > qb)

    preference = compare  # a toy gold stands for no panel: its preference is its verdict


class ToyAnnotator:
    def __init__(self, name, noise):
        self.name, self.noise = name, noise

    def _u(self, response, rng):
        return quality(response) + rng.gauss(0, self.noise)

    def choose(self, prompt, a, b, rng):
        return 0 if self._u(a, rng) > self._u(b, rng) else 1

    def rank(self, prompt, responses, rng):
        u = [self._u(r, rng) for r in responses]
        return sorted(range(len(responses)), key=lambda i: -u[i])

    def rate(self, prompt, response, rng):
        return max(1, min(7, round(4 + self._u(response, rng))))


class ToyWorld:
    name = "toy"
    SIZES = {"sft": 64, "rm": 120, "rl": 8, "eval": 16}

    def chat_text(self, prompt):
        return f"User : {prompt.text}\nAssistant :"

    def prompts(self, split):
        return [Prompt(id=f"{split}-{i}", kind="toy", text=f"tell me about {TOPICS[i % len(TOPICS)]}")
                for i in range(self.SIZES[split])]

    def demonstrations(self):
        return [Demonstration(p, f"{p.text.split()[-1]} are good", "demo") for p in self.prompts("sft")]

    def candidate_responses(self, prompt, k, rng):
        return [f"{prompt.text.split()[-1]} are {adj}" for adj in rng.sample(sorted(VALUE), k)]

    def annotators(self):
        return [ToyAnnotator(f"a{i}", noise=0.5) for i in range(3)]

    def gold(self):
        return ToyGold()


# ----------------------------------------------------------------- fixtures
def make_tokenizer():
    vocab = {w: i for i, w in enumerate(["<unk>", "<bos>", "<eos>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # no pad token: like many causal LMs, padding reuses EOS (the hard case for masks and read-outs)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """The stages set torch's (process-wide) thread count from ComputeOptions; put it back for other modules."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("base"), make_tokenizer(), tie=True)


def make_ctx(tmp_path, stage, artifacts, seed=0, **components):
    """A StageContext as the runner builds it; one CPU thread keeps tiny ops fast on a busy 2-core box."""
    logged = []
    ctx = StageContext(experiment=make_experiment(seed, compute=ComputeOptions(backend="cpu", threads=1)),
                       stage=stage, stage_dir=tmp_path / stage, world=ToyWorld(),
                       log=lambda metrics, step: logged.append((step, dict(metrics))),
                       artifacts=dict(artifacts), checkpoint_dir=tmp_path / stage / "checkpoints",
                       components=Components(**components))
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    return ctx, logged


def collect_feedback(run_dir, feedback, artifacts):
    """The feedback stage, as the runner runs it: ``artifacts`` with its directory added, and its summary."""
    ctx, _ = make_ctx(run_dir, "feedback", artifacts, feedback=feedback)
    summary = feedback_stage(ctx)
    return {**artifacts, "feedback": ctx.stage_dir}, summary


def metric(logged, name):
    return [m[name] for _, m in logged if name in m]


SFT_OPTIONS = NextTokenSFT.Options(epochs=3, lr=1e-2, batch_size=8, eval_samples=16, max_new_tokens=6)


@pytest.fixture(scope="module")
def sft_run(base_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    ctx, logged = make_ctx(tmp, "sft", {"base": base_dir})
    summary = NextTokenSFT(SFT_OPTIONS).run(ctx)
    return SimpleNamespace(dir=tmp, ctx=ctx, logged=logged, summary=summary, model_dir=ctx.stage_dir / "model")


# ----------------------------------------------------------------- SFT
def test_sft_labels_mask_exactly_the_prompt():
    tok = make_tokenizer()
    world = ToyWorld()
    prompts = world.prompts("sft")[:3]
    examples = [(encode_prompt(tok, world.chat_text(p)), encode_response(tok, r))
                for p, r in zip(prompts, ["cats are good", "dogs are bad bad bad", "fish"])]
    batch = lm_batch(examples, pad_id=tok.eos_token_id, max_length=64)
    for row, (prompt_ids, response_ids) in enumerate(examples):
        labels, n = batch["labels"][row].tolist(), len(prompt_ids) + len(response_ids)
        assert labels[: len(prompt_ids)] == [IGNORE] * len(prompt_ids)
        assert labels[len(prompt_ids) : n] == response_ids  # ends with EOS, which is also the pad id
        assert labels[n:] == [IGNORE] * (len(labels) - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (len(labels) - n)


def test_sft_loss_is_the_mean_over_response_tokens_only(base_dir):
    model = LlamaForCausalLM.from_pretrained(base_dir)
    tok = make_tokenizer()
    world = ToyWorld()
    prompt = world.prompts("sft")[0]
    prompt_ids, response_ids = encode_prompt(tok, world.chat_text(prompt)), encode_response(tok, "cats are good")
    loss_sum, n = token_loss_sum(model, lm_batch([(prompt_ids, response_ids)], tok.eos_token_id, 64))
    logits = model(torch.tensor([prompt_ids + response_ids])).logits[0]
    log_probs = logits.log_softmax(-1)
    expected = -sum(log_probs[len(prompt_ids) - 1 + t, y] for t, y in enumerate(response_ids))
    assert n == len(response_ids) and loss_sum.item() == pytest.approx(expected.item(), rel=1e-4)


def test_sft_loss_over_prompts_of_different_lengths_is_the_full_forwards(base_dir):
    """The LM head skips the columns before the first labelled token; the loss is that of every column's logits."""
    model = LlamaForCausalLM.from_pretrained(base_dir)
    tok = make_tokenizer()
    world = ToyWorld()
    examples = [(encode_prompt(tok, world.chat_text(p)), encode_response(tok, r))
                for p, r in zip(world.prompts("sft")[:3], ["cats are good", "dogs are bad bad bad", "fish"])]
    examples[1] = ([tok.bos_token_id] * 3 + examples[1][0], examples[1][1])  # a longer prompt
    batch = lm_batch(examples, tok.eos_token_id, 64)
    loss_sum, n = token_loss_sum(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                             batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum")
    assert n == sum(len(r) for _, r in examples)
    assert loss_sum.item() == pytest.approx(full.item(), rel=1e-5)


def test_sft_loss_falls_and_the_model_is_saved(sft_run):
    train_losses = metric(sft_run.logged, "sft/train_loss")
    val_losses = metric(sft_run.logged, "sft/val_loss")
    assert len(val_losses) == SFT_OPTIONS.epochs
    assert train_losses[-1] < 0.5 * train_losses[0] and val_losses[-1] < val_losses[0]
    assert (sft_run.model_dir / "config.json").exists() and (sft_run.model_dir / "tokenizer.json").exists()
    summary = sft_run.summary
    assert set(summary) == {"train_loss", "val_loss", "gold_score", "base_gold_score", "n_demonstrations"}
    assert summary["n_demonstrations"] == 64 and summary["val_loss"] == val_losses[-1]
    assert summary["gold_score"] > summary["base_gold_score"]  # demonstrations say "good"
    json.dumps(summary)


def test_sft_killed_after_an_epoch_resumes_to_the_same_result(sft_run, tmp_path, monkeypatch):
    options = SFT_OPTIONS.model_copy(update={"epochs": 2, "eval_samples": 2})
    straight, _ = make_ctx(tmp_path / "straight", "sft", {"base": sft_run.ctx.artifacts["base"]})
    expected = NextTokenSFT(options).run(straight)
    ctx, _ = make_ctx(tmp_path / "killed", "sft", {"base": sft_run.ctx.artifacts["base"]})
    real_epoch = NextTokenSFT._epoch

    def dies_in_epoch_1(self, ctx, *args):
        if args[5] == 1:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(self, ctx, *args)

    monkeypatch.setattr(NextTokenSFT, "_epoch", dies_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        NextTokenSFT(options).run(ctx)
    monkeypatch.setattr(NextTokenSFT, "_epoch", real_epoch)
    resumed = NextTokenSFT(options).run(ctx)
    assert resumed["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert resumed["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)


def test_sft_resumes_from_its_last_checkpoint(sft_run, tmp_path):
    # a finished checkpoint means nothing is left to train: the resumed stage reports the same losses
    ctx, logged = make_ctx(sft_run.dir, "sft", {"base": sft_run.ctx.artifacts["base"]})
    summary = NextTokenSFT(SFT_OPTIONS).run(ctx)
    assert metric(logged, "sft/train_loss") == []
    assert summary["train_loss"] == sft_run.summary["train_loss"]
    assert summary["gold_score"] == sft_run.summary["gold_score"]  # same weights, same sampling seed


# ----------------------------------------------------------------- reward model
RM_OPTIONS = BradleyTerryRM.Options(epochs=4, lr=2e-3, batch_size=8, val_fraction=0.25, patience=2,
                                    normalization_samples=48, max_new_tokens=6)


@pytest.fixture(scope="module")
def rm_run(sft_run):
    feedback = Ranking(Ranking.Options(k=4, overlap=0.2))
    artifacts, collected = collect_feedback(sft_run.dir, feedback, {"base": sft_run.ctx.artifacts["base"],
                                                                    "sft": sft_run.model_dir})
    ctx, logged = make_ctx(sft_run.dir, "reward_model", artifacts, feedback=feedback)
    summary = BradleyTerryRM(RM_OPTIONS).run(ctx)
    return SimpleNamespace(ctx=ctx, logged=logged, summary=summary, feedback=feedback, collected=collected)


def test_rm_beats_chance_on_heldout_pairs(rm_run):
    s = rm_run.summary
    assert s["accuracy"] > 0.75 and s["gold_accuracy"] > 0.75
    assert s["n_records"] == 120 + 24 * 2 and s["agreement"]["n_items"] == 24
    assert metric(rm_run.logged, "rm/train_loss") and metric(rm_run.logged, "rm/val_accuracy")
    json.dumps(s)


def test_the_feedback_stage_writes_the_records_the_rm_reads(rm_run):
    feedback_dir = rm_run.ctx.artifacts["feedback"]
    records = [json.loads(line) for line in (feedback_dir / "feedback.jsonl").read_text().splitlines()]
    assert len(records) == rm_run.summary["n_records"] == rm_run.collected["n_records"] and "ranking" in records[0]
    assert rm_run.collected["agreement"] == rm_run.summary["agreement"] and rm_run.collected["n_prompts"] == 120
    read = rm_run.ctx.feedback_records()
    assert [r.to_json() for r in read] == records and all(isinstance(r, FeedbackRecord) for r in read)
    assert len(rm_run.ctx.preference_groups()) == len(records)
    assert not (rm_run.ctx.stage_dir / "feedback.jsonl").exists()  # one copy, in the feedback stage
    norm = json.loads((rm_run.ctx.stage_dir / "model" / "reward_normalization.json").read_text())
    assert norm["offset"] == pytest.approx(rm_run.summary["offset"])


def test_a_stage_without_a_feedback_stage_before_it_is_told_so(tmp_path):
    ctx, _ = make_ctx(tmp_path, "reward_model", {}, feedback=Pairwise())
    with pytest.raises(HarnessError, match="no feedback stage ran before it"):
        ctx.feedback_records()


def test_learned_reward_centres_sft_samples_at_zero(rm_run, sft_run):
    reward = LearnedReward(LearnedReward.Options(batch_size=16))
    reward.prepare(make_ctx(sft_run.dir, "prepare", {"reward_model": rm_run.ctx.stage_dir})[0])
    prompts = ToyWorld().prompts("rm")[: RM_OPTIONS.normalization_samples]
    policy, tok = load_causal_lm(sft_run.model_dir)
    texts = sample_responses(policy, tok, ToyWorld(), prompts, max_new_tokens=6, seed=0)
    scores = reward.score(prompts, texts)
    assert scores.shape == (len(prompts),) and abs(scores.mean().item()) < 1e-4
    good, bad = reward.score(prompts[:2], ["cats are good", "dogs are good"]), reward.score(prompts[:2], ["cats are bad", "dogs are bad"])
    assert (good > bad).all()



def test_bt_loss_weights_each_of_the_k_choose_2_pairs_by_its_inverse():
    k = 4
    record = FeedbackRecord(Prompt("p", "toy", "?"), list("abcd"), "x", "ranking", [2, 0, 3, 1])
    group = Ranking().preference_groups([record])[0]
    rewards = torch.tensor([0.3, -1.0, 2.0, 0.5])
    loss = bt_loss([Encoded(group, [1], [[1]] * k)], rewards)
    pairs = [(2, 0), (2, 3), (2, 1), (0, 3), (0, 1), (3, 1)]
    expected = sum(-torch.nn.functional.logsigmoid(rewards[w] - rewards[l]) for w, l in pairs) / comb(k, 2)
    assert loss.item() == pytest.approx(expected.item())


def test_bt_loss_is_a_mean_over_groups_and_pairwise_weight_is_one():
    group = Pairwise().preference_groups([FeedbackRecord(Prompt("p", "toy", "?"), ["a", "b"], "x", "choice", 1)])[0]
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0])
    one = -torch.nn.functional.logsigmoid(torch.tensor(1.0)).item()
    assert bt_loss([Encoded(group, [1], [[1], [2]])] * 2, rewards).item() == pytest.approx(one)


def test_rm_stops_early_when_heldout_accuracy_stalls(sft_run, tmp_path):
    artifacts, _ = collect_feedback(tmp_path, Pairwise(), {"sft": sft_run.model_dir})
    ctx, logged = make_ctx(tmp_path, "reward_model", artifacts, feedback=Pairwise())
    options = RM_OPTIONS.model_copy(update={"lr": 1e-12, "patience": 1, "epochs": 6, "normalization_samples": 4})
    summary = BradleyTerryRM(options).run(ctx)
    # epoch 0 is the best; epoch 1 does not improve; patience 1 -> no epoch 2
    assert len(metric(logged, "rm/val_accuracy")) == 2 and summary["best_epoch"] == 0


def test_rm_rerun_reuses_feedback_and_resumes_from_checkpoint(rm_run, sft_run, monkeypatch):
    feedback_file = rm_run.ctx.artifacts["feedback"] / "feedback.jsonl"
    before = feedback_file.read_text()
    monkeypatch.setattr(Ranking, "collect", lambda self, ctx: pytest.fail("collected again"))
    artifacts, collected = collect_feedback(sft_run.dir, rm_run.feedback, rm_run.ctx.artifacts)
    assert collected == rm_run.collected
    ctx, logged = make_ctx(sft_run.dir, "reward_model", artifacts, feedback=rm_run.feedback)
    summary = BradleyTerryRM(RM_OPTIONS).run(ctx)
    assert feedback_file.read_text() == before and metric(logged, "rm/train_loss") == []
    assert summary["accuracy"] == rm_run.summary["accuracy"] and summary["offset"] == pytest.approx(rm_run.summary["offset"])


def test_stages_and_reward_register_through_the_hooks():
    from harness_builtins.rewards import learned
    from harness_builtins.stages import reward_model, sft

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module in (sft, reward_model, learned):
        pm.register(module)
    stages, rewards = {}, {}
    pm.hook.register_stages(register=stages.__setitem__)
    pm.hook.register_reward_sources(register=rewards.__setitem__)
    assert stages == {"next_token": NextTokenSFT, "bradley_terry": BradleyTerryRM} and rewards == {"learned": LearnedReward}


# ----------------------------------------------------------------- feedback on π_SFT samples
def test_sft_candidates_are_distinct_samples_whatever_the_batching(sft_run):
    policy, tok = load_causal_lm(sft_run.model_dir)
    prompts = ToyWorld().prompts("rm")[:6]
    big = sample_distinct(policy, tok, ToyWorld(), prompts, 3, seed=5, max_new_tokens=6, batch_size=64)
    small = sample_distinct(policy, tok, ToyWorld(), prompts, 3, seed=5, max_new_tokens=6, batch_size=4)
    assert big == small and set(big) == {p.id for p in prompts}
    assert all(len(set(texts)) == len(texts) and all(t.strip() for t in texts) for texts in big.values())
    assert sample_distinct(policy, tok, ToyWorld(), prompts, 3, seed=6, max_new_tokens=6) != big


def test_mixed_candidates_take_half_from_sft_and_top_up_from_the_world():
    import random

    prompt = ToyWorld().prompts("rm")[0]
    samples = {prompt.id: ["cats are good", "cats are nice", "cats are odd"]}
    mixed, sources = candidate_source(ToyWorld(), "mixed", samples)(prompt, 5, random.Random(0))
    assert mixed[:3] == samples[prompt.id] and sources == ["sft"] * 3 + ["world"] * 2 and len(set(mixed)) == 5
    short = {prompt.id: ["cats are good"]}  # the model repeated itself: the world's writers fill the rest
    texts, sources = candidate_source(ToyWorld(), "sft", short)(prompt, 4, random.Random(0))
    assert texts[0] == "cats are good" and sources == ["sft", "world", "world", "world"] and len(set(texts)) == 4


def test_rm_trained_on_sft_samples_records_their_source(sft_run, tmp_path):
    feedback = Ranking(Ranking.Options(k=4, overlap=0.2, candidates="sft", max_new_tokens=6))
    artifacts, _ = collect_feedback(tmp_path, feedback, {"sft": sft_run.model_dir})
    ctx, _ = make_ctx(tmp_path, "reward_model", artifacts, feedback=feedback)
    summary = BradleyTerryRM(RM_OPTIONS).run(ctx)
    records = [json.loads(line) for line in (artifacts["feedback"] / "feedback.jsonl").read_text().splitlines()]
    policy, tok = load_causal_lm(sft_run.model_dir)
    prompts = ToyWorld().prompts("rm")
    drawn = sample_distinct(policy, tok, ToyWorld(), prompts, 4, seed=0, max_new_tokens=6)
    for r in records:
        own = [t for t, s in zip(r["responses"], r["sources"]) if s == "sft"]
        assert own == drawn[r["prompt_id"]] and len(set(r["responses"])) == 4
    assert summary["n_records"] == len(records) and summary["accuracy"] > 0.5


def test_sft_candidates_with_recorded_feedback_name_the_option(tmp_path):
    class Recorded(ToyWorld):
        def recorded_feedback(self, field):
            return []

    feedback = Ranking(Ranking.Options(candidates="sft"))
    ctx, _ = make_ctx(tmp_path, "feedback", {}, feedback=feedback)
    ctx.world = Recorded()
    ctx.experiment = replace(ctx.experiment, slots={"feedback": Choice("feedback", "ranking", feedback.options)})
    with pytest.raises(HarnessError, match=r"\[feedback.ranking\] candidates = 'sft'.*recorded feedback"):
        feedback_stage(ctx)
