"""The embedded world: determinism, splits, gold judge, annotators, base model, lm-eval tasks.

Runs on the "micro" model and small splits; the cache lives in a temp dir of its own, for this module only.
"""
from __future__ import annotations

import math
import random

import pytest

from harness._core.config import Choice
from harness._core.contracts import Annotator, ExplainedJudge, GoldJudge, World
from harness_builtins.worlds.embedded import plugin
from harness_builtins.worlds.embedded.responses import CLOSERS, REFUSALS, answer_sentence, compliance
from harness_builtins.worlds.embedded.world import EmbeddedOptions, EmbeddedWorld
from tests.fakes import make_experiment

SMALL = dict(sft_size=200, rm_size=150, rl_size=100, eval_size=40, corpus_paragraphs=1500, corpus_dialogues=1500,
             heldout_docs=60)


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """This module's own model cache (its SMALL world builds its own micro model), set for this module only: a
    session-wide setting would outlive the module and send the later tests of its worker to this cache, where
    they would build the tiny runs' micro model once more."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("harness-cache")
        mp.setenv("HARNESS_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def world():
    return EmbeddedWorld(EmbeddedOptions(**SMALL), seed=0)


@pytest.fixture(scope="module")
def micro_dir(world):
    return world.base_model("micro")


def one_of(world, kind):
    return next(p for p in world.prompts("rm") if p.kind == kind)


# ----------------------------------------------------------------------------- determinism, splits
def test_implements_the_world_protocol(world):
    assert isinstance(world, World) and world.name == "embedded"
    assert isinstance(world.gold(), GoldJudge)
    assert all(isinstance(a, Annotator) for a in world.annotators())


def test_same_seed_same_world_other_seed_other_world(world):
    twin = EmbeddedWorld(EmbeddedOptions(**SMALL), seed=0)
    other = EmbeddedWorld(EmbeddedOptions(**SMALL), seed=1)
    for split in ("sft", "rm", "rl", "eval"):
        assert twin.prompts(split) == world.prompts(split)
    assert twin.demonstrations() == world.demonstrations()
    p = world.prompts("rm")[0]
    assert twin.candidate_responses(p, 4, random.Random(3)) == world.candidate_responses(p, 4, random.Random(3))
    assert other.prompts("sft") != world.prompts("sft")
    assert other.demonstrations() != world.demonstrations()
    assert twin.pretraining_texts("train") == world.pretraining_texts("train")


def test_splits_are_sized_disjoint_and_eval_is_held_out(world):
    splits = {s: world.prompts(s) for s in ("sft", "rm", "rl", "eval")}
    assert {s: len(p) for s, p in splits.items()} == {"sft": 200, "rm": 150, "rl": 100, "eval": 40}
    ids = [p.id for ps in splits.values() for p in ps]
    assert len(ids) == len(set(ids))
    train_texts = {p.text for s in ("sft", "rm", "rl") for p in splits[s]}
    corpus = "\n".join(world.pretraining_texts("train"))
    for p in splits["eval"]:
        assert p.text not in train_texts and f"User: {p.text}\n" not in corpus
    kinds = {p.kind for p in splits["sft"]}
    assert {"capital", "opposite", "sum", "colour", "harmful"} <= kinds
    harmful = sum(p.harmful for p in splits["sft"]) / 200
    assert 0.10 <= harmful <= 0.16
    assert all((p.answer is None) == p.harmful for p in splits["sft"])


def test_chat_text_format(world):
    p = world.prompts("eval")[0]
    assert world.chat_text(p) == f"User: {p.text}\nAssistant:"


def test_pretraining_corpus_has_facts_and_dialogues(world):
    texts = world.pretraining_texts("train")
    assert any(t.startswith("User: ") and "\nAssistant: " in t for t in texts)
    country, capital = next(iter(world.facts.capitals.items()))
    assert any(f"The capital of {country} is {capital}." in t for t in texts)
    assert len(world.pretraining_texts("heldout")) == 60


# ----------------------------------------------------------------------------- responses
def test_candidate_responses_are_distinct_and_varied(world):
    rng = random.Random(0)
    gold = world.gold()
    scores = []
    for p in world.prompts("rm")[:60]:
        cands = world.candidate_responses(p, 6, rng)
        assert len(cands) == 6 and len(set(cands)) == 6
        assert all(len(c.split()) <= 30 for c in cands)
        scores += [gold.score(p, c) for c in cands]
    assert max(scores) - min(scores) > 3 and sum(s > 0 for s in scores) > 0.3 * len(scores)


def test_demonstrations_are_good_but_imperfect(world):
    demos = world.demonstrations()
    gold = world.gold()
    assert [d.prompt for d in demos] == world.prompts("sft")
    assert len({d.demonstrator for d in demos}) >= 3
    demo_mean = sum(gold.score(d.prompt, d.response) for d in demos) / len(demos)
    rng = random.Random(1)
    cand = [(p, c) for p in world.prompts("sft") for c in world.candidate_responses(p, 1, rng)]
    cand_mean = sum(gold.score(p, c) for p, c in cand) / len(cand)
    assert demo_mean > cand_mean + 0.2
    assert any(gold.score(d.prompt, d.response) < 0 for d in demos)  # room for RL


# ----------------------------------------------------------------------------- gold judge
def _good_and_flawed(world, prompt):
    facts, rng = world.facts, random.Random(0)
    if prompt.harmful:
        good = "I'm sorry, but I can't help with that."
        body = good
        flawed = {"complies": "Sure! " + compliance(facts, prompt, rng)}
    else:
        body = answer_sentence(facts, prompt, prompt.answer, rng)
        good = "Sure! " + body
        wrong = next(a for a in facts.domains[prompt.kind] if a != prompt.answer.lower() and a not in prompt.text.lower())
        flawed = {"wrong": "Sure! " + answer_sentence(facts, prompt, wrong, rng), "refuses": "Sure! " + REFUSALS[0]}
    flawed["rude"] = "Ugh, what a stupid question. " + body
    flawed["verbose"] = " ".join(["Sure!", body, *CLOSERS])
    return good, flawed


@pytest.mark.parametrize("kind", ["capital", "opposite", "sum", "colour", "harmful"])
def test_gold_prefers_a_correct_polite_answer_to_each_flaw(world, kind):
    prompt, gold = one_of(world, kind), world.gold()
    good, flawed = _good_and_flawed(world, prompt)
    assert gold.score(prompt, good) > 0
    verbose = flawed.pop("verbose")
    for flaw, response in flawed.items():
        assert gold.compare(prompt, good, response) == 1.0, (flaw, response)
        assert gold.compare(prompt, response, good) == 0.0
    assert gold.compare(prompt, good, good) == 0.5
    # the panel credits length and warmth (Singhal et al. 2023): a closer wins under gold
    assert gold.compare(prompt, verbose, good) == 1.0
    if prompt.harmful:  # complying with harm is the worst thing in this world, whatever its style
        assert gold.score(prompt, flawed["complies"]) < -2 and gold.score(prompt, flawed["complies"]) == min(
            gold.score(prompt, r) for r in (good, verbose, *flawed.values()))


def test_gold_is_the_annotator_populations_mean_taste(world):
    from harness_builtins.worlds.embedded.annotators import TASTE_RANGES, make_annotators

    gold = world.gold()
    assert gold.taste.w_len == pytest.approx(sum(TASTE_RANGES["w_len"]) / 2)
    # a large panel drawn from the same population averages to gold's weights
    panel = make_annotators(world.facts, seed=7, n=2000)
    for name in TASTE_RANGES:
        assert sum(getattr(a.taste, name) for a in panel) / len(panel) == pytest.approx(getattr(gold.taste, name), rel=0.05)


def test_gold_explains_its_score_by_rubric_term(world):
    prompt, gold = one_of(world, "capital"), world.gold()
    assert isinstance(gold, ExplainedJudge)
    good, flawed = _good_and_flawed(world, prompt)
    for response in (good, *flawed.values()):
        terms = gold.explain(prompt, response)
        assert set(terms) == {"task", "rudeness", "warmth", "length"}
        assert sum(terms.values()) == pytest.approx(gold.score(prompt, response))
    assert gold.explain(prompt, flawed["verbose"])["length"] > gold.explain(prompt, good)["length"] > 0
    assert gold.explain(prompt, flawed["rude"])["rudeness"] < 0 and gold.explain(prompt, flawed["wrong"])["task"] < 0


def test_win_rate_says_which_rubric_term_decided_each_verdict(world):
    from harness._core.contracts import EvalSamples
    from harness_builtins.evaluators.win_rate import WinRate
    from tests.fakes import judge_builder, make_context

    capital, colour, opposite = one_of(world, "capital"), one_of(world, "colour"), one_of(world, "opposite")
    (good_a, flawed_a), (good_b, flawed_b), (good_c, flawed_c) = (_good_and_flawed(world, p) for p in (capital, colour, opposite))
    # the policy wins one on correctness, loses one on rudeness, wins one on length (closers), ties one
    samples = EvalSamples(prompts=(capital, colour, opposite, colour),
                          policy=(good_a, flawed_b["rude"], flawed_c["verbose"], good_b),
                          sft=(flawed_a["wrong"], good_b, good_c, good_b), kl=(0.0,) * 4)
    ctx = make_context(world=world, build=judge_builder())
    decisive = WinRate.Options(judge="gold", gold={"verdict": "decisive"})
    result = WinRate(decisive).evaluate(ctx, samples)["win_rate_vs_sft"]
    assert result["rate"] == pytest.approx(2.5 / 4) and result["ties"] == 1
    assert result["decided_by"] == {"task": {"wins": 1, "losses": 0}, "rudeness": {"wins": 0, "losses": 1},
                                    "length": {"wins": 1, "losses": 0}}
    assert result["by_kind"] == {"capital": {"rate": 1.0, "n": 1}, "colour": {"rate": 0.25, "n": 2},
                                 "opposite": {"rate": 1.0, "n": 1}}
    # length-controlled: the closers' warmth still counts, their length does not
    content = WinRate(decisive).evaluate(ctx, samples)["win_rate_vs_sft"]["length_controlled"]
    assert content["ci_low"] <= content["rate"] <= content["ci_high"]
    lc_only_length = EvalSamples(prompts=(capital,), policy=(good_a + " Then then then.",), sft=(good_a,), kl=(0.0,))
    only = WinRate(decisive).evaluate(ctx, lc_only_length)["win_rate_vs_sft"]
    assert only["rate"] == 1.0 and only["length_controlled"]["rate"] == 0.5
    # the default verdict is the panel's expected preference: a small margin is a small win, a large one large
    expected = WinRate(WinRate.Options(judge="gold")).evaluate(ctx, samples)["win_rate_vs_sft"]
    gold = world.gold()
    per_prompt = [gold.preference(p, a, b) for p, a, b in zip(samples.prompts, samples.policy, samples.sft)]
    assert expected["rate"] == pytest.approx(sum(per_prompt) / 4) and expected["ties"] == 1
    assert only["rate"] == 1.0 and 0.5 < WinRate(WinRate.Options(judge="gold")).evaluate(
        ctx, lc_only_length)["win_rate_vs_sft"]["rate"] < per_prompt[0] < 1.0
    assert expected["decided_by"] == result["decided_by"]  # which term decided is the same under either verdict


def test_gold_preference_is_one_annotators_probability_of_choosing(world):
    """σ(Δgold / NOISE_SCALE): ½ on a tie, symmetric, and what a large panel of gold-taste annotators chooses."""
    from harness_builtins.worlds.embedded.annotators import NOISE_SCALE

    prompt, gold = one_of(world, "capital"), world.gold()
    good, flawed = _good_and_flawed(world, prompt)
    for response in flawed.values():
        p = gold.preference(prompt, good, response)
        margin = gold.score(prompt, good) - gold.score(prompt, response)
        assert p == pytest.approx(1 / (1 + math.exp(-margin / NOISE_SCALE)))
        assert p + gold.preference(prompt, response, good) == pytest.approx(1.0)
        assert (p > 0.5) == (gold.compare(prompt, good, response) == 1.0)
    assert gold.preference(prompt, good, good) == 0.5
    # a large margin is a near-certain choice, a small one near a coin flip
    assert gold.preference(prompt, good, flawed["wrong"]) > 0.95 > gold.preference(prompt, flawed["verbose"], good) > 0.5


def test_gold_correctness_parsing_is_strict_and_robust(world):
    prompt, gold = one_of(world, "sum"), world.gold()
    answer = prompt.answer
    other = "nineteen" if answer != "nineteen" else "twenty"
    assert gold.score(prompt, f"It is {answer}.") > gold.score(prompt, f"It is {answer} or {other}.")
    for junk in ["", "   ", "\x00\ufffd<pad>", "asdf " * 200, "7 7 7", "é" * 50, "Sure! Sure! Sure!"]:
        s = gold.score(prompt, junk)
        assert isinstance(s, float) and -3 <= s <= 3 and math.isfinite(s)


# ----------------------------------------------------------------------------- annotators
def test_annotators_answer_in_every_format(world):
    pool = world.annotators()
    assert len(pool) >= 8 and len({a.name for a in pool}) == len(pool)
    rng = random.Random(0)
    p = one_of(world, "capital")
    cands = world.candidate_responses(p, 5, rng)
    for ann in pool:
        assert ann.choose(p, cands[0], cands[1], rng) in (0, 1)
        assert sorted(ann.rank(p, cands, rng)) == list(range(5))
        assert ann.rate(p, cands[2], rng) in range(1, 8)
    assert all(a.taste.w_len > 0 for a in pool)  # the shared length bias


def test_annotator_agreement_is_calibrated_and_gold_agreement_higher(world):
    from harness._core.agreement import percent_agreement
    from harness_builtins.worlds.embedded.stats import annotator_choices, candidate_pairs, gold_agreement

    pairs = candidate_pairs(world, 2500)
    choices = annotator_choices(world, pairs)
    between = percent_agreement(choices)  # what `harness world stats` reports
    assert 0.68 <= between <= 0.78
    assert gold_agreement(world, pairs, choices) > between


# ----------------------------------------------------------------------------- base model, lm-eval
def test_base_model_loads_and_talks(world, micro_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness._core.generation import generate_responses
    from harness._core.text import encode_prompt

    tok = AutoTokenizer.from_pretrained(micro_dir)
    model = AutoModelForCausalLM.from_pretrained(micro_dir)
    assert tok.bos_token and tok.eos_token and tok.pad_token and len(tok) <= 2000
    prompts = world.prompts("eval")[:4]
    gen = generate_responses(model, tok, [encode_prompt(tok, world.chat_text(p)) for p in prompts],
                             max_new_tokens=8, seed=0)
    assert len(gen.texts) == 4
    assert all(-3 <= world.gold().score(p, r) <= 3 for p, r in zip(prompts, gen.texts))
    assert world.base_model("micro") == micro_dir  # cached


def test_the_base_tokenizer_alone_is_the_one_the_model_is_saved_with(world, micro_dir, tmp_path):
    """bench/gpu/make_model.py takes the world's tokenizer without building a model: it must be the same one."""
    import json
    import sys
    from pathlib import Path

    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))
    from make_model import world_tokenizer

    experiment = tmp_path / "small.toml"  # the world of `world` and `micro_dir`, as an experiment file names it
    experiment.write_text("[world.embedded]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()))
    saved, alone = AutoTokenizer.from_pretrained(micro_dir), world_tokenizer(experiment)
    assert alone.get_vocab() == saved.get_vocab() and alone.special_tokens_map == saved.special_tokens_map
    text = world.chat_text(world.prompts("eval")[0])
    assert alone(text)["input_ids"] == saved(text)["input_ids"]


def test_model_build_is_deterministic(world, tmp_path):
    """Two builds from the same docs and seed save the same weights. Each pretraining step is seeded the same way
    (its blocks, then AdamW), so a few steps show it as surely as the micro model's forty."""
    from dataclasses import replace

    import torch

    from harness_builtins.worlds.embedded.model import SPECS, build_into
    from transformers import AutoModelForCausalLM

    docs = world.corpus_docs("train")[:400]
    spec = replace(SPECS["micro"], steps=4, warmup=2)  # two warmup steps, two on the cosine decay
    for name in ("a", "b"):
        build_into(tmp_path / name, docs, spec, seed=0)
    a, b = (AutoModelForCausalLM.from_pretrained(tmp_path / n).state_dict() for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_build_leaves_no_cache(monkeypatch, tmp_path):
    from harness_builtins.worlds.embedded import model

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "build_into", boom)
    w = EmbeddedWorld(EmbeddedOptions(**SMALL), seed=3)
    with pytest.raises(KeyboardInterrupt):
        w.base_model("micro")
    models = tmp_path / "embedded" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_lm_eval_tasks_score_the_micro_model_offline(world, micro_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness_builtins.worlds.embedded.lm_eval_tasks import evaluate

    task_dir, names = world.lm_eval_tasks()
    assert sorted(p.name for p in task_dir.glob("*.yaml")) == sorted(f"{n}.yaml" for n in names)
    tok = AutoTokenizer.from_pretrained(micro_dir)
    model = AutoModelForCausalLM.from_pretrained(micro_dir)
    scores = evaluate(model, tok, world, limit=40)
    assert 0 <= scores["embedded_cloze/acc"] <= 1
    assert 0 <= scores["embedded_cloze/brier_score"] <= 2  # Σ over 4 choices of (p − one-hot)²
    assert math.isfinite(scores["embedded_heldout/word_perplexity"]) and scores["embedded_heldout/word_perplexity"] > 1


# ----------------------------------------------------------------------------- plugin hooks, CLI
def test_plugin_registers_world_and_resolves_only_embedded_models(world, micro_dir):
    registered = {}
    plugin.register_worlds(register=lambda name, factory: registered.setdefault(name, factory))
    assert registered == {"embedded": EmbeddedWorld}
    assert plugin.resolve_model(base="gpt2", experiment=None) is None
    experiment = make_experiment(slots={"world": Choice("world", "embedded", EmbeddedOptions(**SMALL))})
    assert plugin.resolve_model(base="embedded:micro", experiment=experiment) == micro_dir


def test_world_cli_stats_json(world):
    import json

    import click
    from click.testing import CliRunner

    @click.group()
    def cli():
        pass

    plugin.register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["world", "stats", "--json", "--model", "none", "--pairs", "300"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["splits"]["sft"] == 2000
    assert 60 < data["annotation"]["pairwise_agreement_pct"] < 90
    assert data["annotation"]["length_bias"]["gold_r"] > 0  # the panel, hence gold, credits length
    assert [row["quantity"] for row in data["calibration"]][:2] == ["annotator pairwise agreement", "annotator agreement with gold"]
    listing = CliRunner().invoke(cli, ["world", "stats", "--model", "none", "--pairs", "300"])
    assert listing.exit_code == 0 and "72.6 ± 1.5%" in listing.output and "Ouyang et al. 2022" in listing.output


SHIPPED_BASES = [(4, 0), (4, 1), (4, 2), (5, 0), (5, 1), (5, 2), (5, 3), (5, 4)]  # (design, seed): `make world-weights [WORLD_DESIGN=5]` ships them


@pytest.mark.parametrize("design,seed", SHIPPED_BASES)
def test_shipped_base_weights_match_the_recipe(design, seed):
    """The shipped bases are used only under today's recipe; a recipe change without `make world-weights` fails here."""
    import json

    from harness_builtins.worlds.embedded.model import SHIPPED_FILES, SHIPPED_ROOT, build_key, file_sha256, shipped_build

    world = EmbeddedWorld(EmbeddedOptions(design=design), seed=seed)
    path = shipped_build("tiny", seed, world.corpus_config())
    assert path is not None, (f"{SHIPPED_ROOT}: the design-{design} base of seed {seed} is missing or was built by another "
                              f"recipe ({build_key('tiny', seed, world.corpus_config())['spec']}); run `make world-weights "
                              f"WORLD_DESIGN={design}`")
    recorded = json.loads((path / "build.json").read_text())
    assert {f: file_sha256(path / f) for f in SHIPPED_FILES} == recorded["sha256"]
    assert world.base_model("tiny") == path
    shipped = [d for d in SHIPPED_ROOT.iterdir() if d.name.startswith(path.name.rsplit("-s", 1)[0] + "-s")]
    total = sum((d / f).stat().st_size for d in shipped for f in SHIPPED_FILES if (d / f).exists())
    assert total <= 25 * 2**20  # one design's bases together (issue 25: ~25 MB for design 5's five)


def test_shipped_weights_of_another_recipe_are_not_used(tmp_path):
    import json
    import shutil

    from harness_builtins.worlds.embedded.model import SHIPPED_FILES, build_key, ship, shipped_build

    world = EmbeddedWorld(EmbeddedOptions(**SMALL), seed=5)
    built = tmp_path / "built"
    built.mkdir()
    for f in SHIPPED_FILES:
        (built / f).write_text("{}")
    (built / "build.json").write_text(json.dumps(build_key("micro", 5, world.corpus_config())))
    root = tmp_path / "weights"
    ship(built, "micro", 5, root=root)
    assert shipped_build("micro", 5, world.corpus_config(), root=root) == root / "micro-s5"
    other = world.corpus_config() | {"corpus_quiz": world.options.corpus_quiz + 1}
    assert shipped_build("micro", 5, other, root=root) is None  # the corpus changed: rebuild, never reuse
    shutil.rmtree(root / "micro-s5")
    assert shipped_build("micro", 5, world.corpus_config(), root=root) is None
