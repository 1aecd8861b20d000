"""Feedback formats on a fake world: record schema, C(K,2) weighting, Likert derived pairs, agreement."""
import json
import random
from math import comb

import pluggy
import pytest
from pydantic import ValidationError

from harness._core import hookspecs
from harness._core.contracts import FeedbackRecord, Prompt
from harness_builtins.feedback import likert, pairwise, ranking
from harness_builtins.feedback.likert import Likert, derived_pairs
from harness_builtins.feedback.pairwise import Pairwise
from harness_builtins.feedback.ranking import Ranking


def quality(response: str) -> int:
    return int(response.split()[-1])


class FakeAnnotator:
    """Prefers higher 'quality' (the number a response ends with); flips with probability ``noise``."""

    def __init__(self, name, noise=0.0, offset=0):
        self.name, self.noise, self.offset = name, noise, offset

    def _utility(self, response, rng):
        return quality(response) + (rng.uniform(-100, 100) if rng.random() < self.noise else 0)

    def choose(self, prompt, a, b, rng):
        return 0 if self._utility(a, rng) >= self._utility(b, rng) else 1

    def rank(self, prompt, responses, rng):
        utilities = [self._utility(r, rng) for r in responses]
        return sorted(range(len(responses)), key=lambda i: -utilities[i])

    def rate(self, prompt, response, rng):
        # own cut points: ``offset`` shifts this annotator's use of the scale
        return max(1, min(7, 1 + self.offset + int(self._utility(response, rng)) // 15))


class FakeWorld:
    name = "fake"

    def __init__(self, annotators):
        self._annotators = annotators

    def annotators(self):
        return self._annotators

    def candidate_responses(self, prompt, k, rng):
        return [f"answer {q}" for q in rng.sample(range(100), k)]


PROMPTS = [Prompt(id=f"p{i}", kind="toy", text=f"question {i}?", answer="x") for i in range(40)]
FORMATS = [Pairwise(), Ranking(Ranking.Options(k=5)), Likert()]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: type(f).__name__)
def test_record_schema_and_overlap(fmt):
    world = FakeWorld([FakeAnnotator(f"a{i}") for i in range(5)])
    records = fmt.collect_from(world, PROMPTS, random.Random(0))
    # 10% overlap: 4 items labelled by 3 annotators, the other 36 by one
    assert len(records) == 36 + 4 * 3
    for r in records:
        data = json.loads(json.dumps(r.to_json()))
        assert list(data) == ["prompt_id", "prompt", "responses", "annotator", fmt.field]
        assert Prompt(**data["prompt"]).id == data["prompt_id"] and len(data["responses"]) == fmt.k
        assert r.field == fmt.field and FeedbackRecord.from_json(data) == r
    assert fmt.agreement(records)["n_items"] == 4


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: type(f).__name__)
def test_collect_is_deterministic(fmt):
    world = FakeWorld([FakeAnnotator(f"a{i}", noise=0.3) for i in range(5)])
    assert fmt.collect_from(world, PROMPTS, random.Random(7)) == fmt.collect_from(world, PROMPTS, random.Random(7))


def test_pairwise_pairs_follow_choice():
    world = FakeWorld([FakeAnnotator("a")])
    records = Pairwise().collect_from(world, PROMPTS[:5], random.Random(1))
    for r, group in zip(records, Pairwise().preference_groups(records)):
        (w, l, weight), = group.pairs
        assert weight == 1.0 and w == r.answer and quality(group.responses[w]) > quality(group.responses[l])


@pytest.mark.parametrize("k", [4, 6, 9])
def test_ranking_gives_all_pairs_weighted_one_over_k_choose_2(k):
    fmt = Ranking(Ranking.Options(k=k, overlap=0.0))
    records = fmt.collect_from(FakeWorld([FakeAnnotator("a")]), PROMPTS[:3], random.Random(2))
    for group in fmt.preference_groups(records):
        assert len(group.pairs) == comb(k, 2)
        assert {(w, l) for w, l, _ in group.pairs} | {(l, w) for w, l, _ in group.pairs} == {
            (i, j) for i in range(k) for j in range(k) if i != j
        }
        assert all(weight == pytest.approx(1 / comb(k, 2)) for *_, weight in group.pairs)
        assert all(quality(group.responses[w]) > quality(group.responses[l]) for w, l, _ in group.pairs)


@pytest.mark.parametrize("k", [3, 10])
def test_ranking_k_outside_4_to_9_is_rejected(k):
    with pytest.raises(ValidationError):
        Ranking.Options(k=k)


def test_options_forbid_unknown_keys():
    with pytest.raises(ValidationError):
        Pairwise.Options(overlapp=0.2)


def test_likert_derived_pairs_drop_ties_and_share_weight():
    pairs = derived_pairs([5, 3, 5, 1])
    assert {(w, l) for w, l, _ in pairs} == {(0, 1), (0, 3), (2, 1), (2, 3), (1, 3)}  # 0~2 tie dropped
    assert all(weight == pytest.approx(1 / 5) for *_, weight in pairs)
    assert derived_pairs([4, 4, 4]) == ()


def test_likert_pairs_are_within_annotator_so_scale_offsets_do_not_matter():
    fmt = Likert(Likert.Options(k=4, overlap=1.0))
    harsh, lenient = FakeAnnotator("harsh", offset=0), FakeAnnotator("lenient", offset=2)
    records = fmt.collect_from(FakeWorld([harsh, lenient]), PROMPTS[:10], random.Random(3))
    for r, group in zip(records, fmt.preference_groups(records)):
        assert all(1 <= x <= 7 for x in r.answer)
        assert all(quality(group.responses[w]) > quality(group.responses[l]) for w, l, _ in group.pairs)
    # same order, different cut points: derived pairs agree, ratings differ
    assert fmt.agreement(records)["pair_agreement"] > 0.9


def test_likert_rejects_rating_off_scale():
    class Wild(FakeAnnotator):
        def rate(self, prompt, response, rng):
            return 9

    with pytest.raises(ValueError, match="1..7"):
        Likert().collect_from(FakeWorld([Wild("w")]), PROMPTS[:2], random.Random(0))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: type(f).__name__)
def test_agreement_is_perfect_for_identical_noiseless_annotators(fmt):
    fmt.options = fmt.Options(**{**fmt.options.model_dump(), "overlap": 1.0})
    records = fmt.collect_from(FakeWorld([FakeAnnotator(f"a{i}") for i in range(3)]), PROMPTS, random.Random(4))
    stats = fmt.agreement(records)
    assert stats["n_items"] == len(PROMPTS) and stats["pair_agreement"] == 1.0
    assert all(v == pytest.approx(1.0) for k, v in stats.items() if k in ("fleiss_kappa", "kendall_tau", "krippendorff_alpha"))


class CoinFlipper(FakeAnnotator):
    def choose(self, prompt, a, b, rng):
        return rng.randrange(2)


def test_pairwise_agreement_of_coin_flipping_annotators_is_near_chance():
    fmt = Pairwise(Pairwise.Options(overlap=1.0))
    prompts = [Prompt(id=f"q{i}", kind="toy", text="?") for i in range(400)]
    records = fmt.collect_from(FakeWorld([CoinFlipper(f"a{i}") for i in range(3)]), prompts, random.Random(5))
    stats = fmt.agreement(records)
    assert stats["pair_agreement"] == pytest.approx(0.5, abs=0.06)
    assert abs(stats["fleiss_kappa"]) < 0.1


def test_ranking_agreement_by_hand():
    item = [FeedbackRecord(Prompt("p", "toy", "?"), list("abcd"), n, "ranking", order)
            for n, order in [("x", [0, 1, 2, 3]), ("y", [1, 0, 2, 3])]]
    stats = Ranking().agreement(item)
    # 6 response pairs, the two rankings disagree on one (0 vs 1): agreement 5/6, tau (5-1)/6
    assert stats["pair_agreement"] == pytest.approx(5 / 6) and stats["kendall_tau"] == pytest.approx(4 / 6)


def test_no_overlap_means_no_agreement_stats():
    fmt = Pairwise(Pairwise.Options(overlap=0.0))
    records = fmt.collect_from(FakeWorld([FakeAnnotator("a"), FakeAnnotator("b")]), PROMPTS, random.Random(0))
    assert fmt.agreement(records) == {"n_items": 0}


def test_formats_register_through_the_hook():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module in (pairwise, ranking, likert):
        pm.register(module)
    registered = {}
    pm.hook.register_feedback_formats(register=lambda name, factory: registered.setdefault(name, factory))
    assert registered == {"pairwise": Pairwise, "ranking": Ranking, "likert": Likert}


# ----------------------------------------------------------------- the record
def test_a_record_is_frozen_and_its_json_is_the_documented_line(tmp_path):
    from harness._core.errors import CorruptFileError
    from harness._core.records import read_feedback, write_feedback

    record = FeedbackRecord(PROMPTS[0], ["a b", "c"], "ann", "ranking", [1, 0], sources=["sft", "world"])
    assert record.responses == ("a b", "c") and record.answer == (1, 0) and record.sources == ("sft", "world")
    with pytest.raises(AttributeError):
        record.answer = (0, 1)
    assert list(record.to_json()) == ["prompt_id", "prompt", "responses", "annotator", "ranking", "sources"]
    path = tmp_path / "feedback.jsonl"
    write_feedback(path, [record, FeedbackRecord(PROMPTS[1], ["x", "y"], "b", "choice", 0)])
    assert path.read_text().splitlines()[1] == json.dumps(
        {"prompt_id": "p1", "prompt": {"id": "p1", "kind": "toy", "text": "question 1?", "answer": "x", "harmful": False},
         "responses": ["x", "y"], "annotator": "b", "choice": 0})
    assert read_feedback(path)[0] == record
    path.write_text(json.dumps({"prompt_id": "p0", "prompt": {"id": "p0", "kind": "t", "text": "?"}, "responses": [],
                                "annotator": "a", "choice": 0, "ranking": [0]}) + "\n")
    with pytest.raises(CorruptFileError, match=r"record 1: not a feedback record .*answers: choice, ranking"):
        read_feedback(path)
    with pytest.raises(ValueError, match="cannot be named 'prompt'"):
        FeedbackRecord(PROMPTS[0], ["a"], "ann", "prompt", 1)


# ----------------------------------------------------------------- the feedback stage
class StageWorld(FakeWorld):
    def prompts(self, split):
        assert split == "rm"
        return PROMPTS


def stage_ctx(tmp_path, fmt, seed=0):
    from harness._core.contracts import Components, StageContext
    from tests.fakes import make_experiment

    return StageContext(experiment=make_experiment(seed), stage="feedback", stage_dir=tmp_path / "feedback",
                        world=StageWorld([FakeAnnotator(f"a{i}", noise=0.2) for i in range(4)]),
                        log=lambda m, s: None, artifacts={"feedback": tmp_path / "feedback"},
                        components=Components(feedback=fmt))


def test_the_feedback_stage_collects_once_and_keeps_an_earlier_attempts_records(tmp_path, capsys, monkeypatch):
    from harness._core.feedback import feedback_stage

    fmt = Ranking(Ranking.Options(k=4))
    ctx = stage_ctx(tmp_path, fmt, seed=3)
    summary = feedback_stage(ctx)
    expected = fmt.collect_from(ctx.world, PROMPTS, random.Random(3))  # collect(ctx) = the rm prompts, Random(seed)
    assert ctx.feedback_records() == expected and summary == {"n_records": len(expected), "n_prompts": len(PROMPTS),
                                                              "agreement": fmt.agreement(expected)}
    assert [g.pairs for g in ctx.preference_groups()] == [g.pairs for g in fmt.preference_groups(expected)]
    path = ctx.stage_dir / "feedback.jsonl"
    written = path.read_text()
    monkeypatch.setattr(Ranking, "collect", lambda self, ctx: pytest.fail("collected again"))
    assert feedback_stage(ctx) == summary and path.read_text() == written  # an earlier attempt's file is kept
    monkeypatch.undo()
    path.write_text(written[: len(written) // 2])  # torn by hand: moved aside, collected anew
    assert feedback_stage(ctx) == summary and path.read_text() == written
    assert "moved it to feedback.jsonl.corrupt-" in capsys.readouterr().err


def test_preference_groups_must_be_one_per_record(tmp_path):
    from harness._core.errors import HarnessError
    from harness._core.feedback import feedback_stage

    class Lossy(Pairwise):
        def preference_groups(self, records):
            return super().preference_groups(records)[1:]

    ctx = stage_ctx(tmp_path, Lossy())
    feedback_stage(ctx)
    with pytest.raises(HarnessError, match=r"Lossy: preference_groups returned 47 groups for 48 records"):
        ctx.preference_groups()
