"""World design 5 (docs/world.md): a base corpus with the world's facts but no chat dialogues.

On the "micro" model and small splits (builds in seconds); the default world stays design 4, whose
build key, and so its shipped weights, must not change.
"""
from __future__ import annotations

import json

import pytest

from harness_builtins.worlds.embedded.corpus import FACT_FORMS, design_counts
from harness_builtins.worlds.embedded.model import SHIPPED_FILES, build_key, config_hash, ship, shipped_build
from harness_builtins.worlds.embedded.world import EmbeddedOptions, EmbeddedWorld
from tests.test_world import SMALL  # the small world test_world.py checks design 4 on


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("harness-cache")
        mp.setenv("HARNESS_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def worlds():
    return {d: EmbeddedWorld(EmbeddedOptions(**SMALL, design=d), seed=0) for d in (4, 5)}


def is_chat(text: str) -> bool:
    return "User:" in text or "Assistant:" in text


def stated(world: EmbeddedWorld, texts: list[str]) -> dict[str, float]:
    """Per fact kind, the share of the world's facts some document states in one of the corpus's phrasings."""
    blob = "\n".join(texts)
    facts = world.facts
    kinds = {"capital": facts.capitals, "colour": facts.colours, "opposite": facts.opposites}
    share = {}
    for kind, table in kinds.items():
        found = [any(form.format(x=x, a=a) in blob or form.format(x=x, a=a).capitalize() in blob for form in FACT_FORMS[kind])
                 for x, a in table.items()]
        share[kind] = sum(found) / len(found)
    return share


def test_design_5_has_no_chat_dialogues_and_the_same_number_of_documents(worlds):
    docs4, docs5 = worlds[4].corpus_docs("train"), worlds[5].corpus_docs("train")
    assert sum(d.context is not None for d in docs4) == 1500 and any(is_chat(d.joined()) for d in docs4)
    assert all(d.context is None and not is_chat(d.joined()) for d in docs5)
    assert len(docs5) == len(docs4)  # the dialogue slots are refilled with prose
    quiz = sum(d.text.startswith("Question: ") for d in docs5)
    assert (len(docs5) - quiz, quiz) == (2000, 4000)  # design 4's prose ratio, 1500 : 3000
    held = worlds[5].pretraining_texts("heldout")
    assert len(held) == 60 and not any(is_chat(t) for t in held)
    assert sum(t.startswith("Question: ") for t in held) == 40  # the training corpus's prose mix


def test_design_5_states_every_fact_of_the_world(worlds):
    assert stated(worlds[5], worlds[5].pretraining_texts("train")) == {"capital": 1.0, "colour": 1.0, "opposite": 1.0}
    assert stated(worlds[4], worlds[4].pretraining_texts("train")) == {"capital": 1.0, "colour": 1.0, "opposite": 1.0}


def test_design_counts():
    assert design_counts(4, 6000, 3000, 3000) == (6000, 3000, 3000)
    assert design_counts(5, 6000, 3000, 3000) == (8000, 0, 4000)  # the shipped world's sizes
    assert design_counts(5, 200, 200, 0, ratio=(6000, 3000)) == (267, 0, 133)  # its held-out part
    with pytest.raises(ValueError, match="design"):
        design_counts(6, 1, 1, 1)


def test_design_5_builds_under_its_own_key_and_design_4s_key_is_unchanged(worlds):
    key4, key5 = (build_key("tiny", 0, worlds[d].corpus_config()) for d in (4, 5))
    assert "design" not in key4["corpus"] and key5["corpus"]["design"] == 5
    assert config_hash(key4) != config_hash(key5)
    assert config_hash(key4) == config_hash(build_key("tiny", 0, EmbeddedWorld(EmbeddedOptions(**SMALL), seed=0).corpus_config()))
    assert shipped_build("tiny", 0, EmbeddedWorld(EmbeddedOptions(design=5), seed=0).corpus_config()).name == "tiny-d5-s0"
    micro5 = worlds[5].base_model("micro")  # design 4's micro is built by tests/test_world.py
    assert micro5.name == f"micro-s0-{config_hash(build_key('micro', 0, worlds[5].corpus_config()))}"
    assert micro5.name != f"micro-s0-{config_hash(build_key('micro', 0, worlds[4].corpus_config()))}"
    assert json.loads((micro5 / "build.json").read_text())["corpus"]["design"] == 5
    from harness.api import load_causal_lm

    model, tok = load_causal_lm(micro5)
    assert tok.eos_token and model.config.vocab_size == len(tok)
    assert worlds[4].lm_eval_tasks()[0] != worlds[5].lm_eval_tasks()[0]  # the held-out text differs: its own tasks


def test_design_5_ships_beside_design_4(worlds, tmp_path):
    root = tmp_path / "weights"
    for design in (4, 5):
        built = tmp_path / f"built{design}"
        built.mkdir()
        for f in SHIPPED_FILES:
            (built / f).write_text("{}")
        (built / "build.json").write_text(json.dumps(build_key("micro", 0, worlds[design].corpus_config())))
        ship(built, "micro", 0, root=root)
    assert sorted(p.name for p in root.iterdir()) == ["micro-d5-s0", "micro-s0"]
    assert shipped_build("micro", 0, worlds[5].corpus_config(), root=root) == root / "micro-d5-s0"
    assert shipped_build("micro", 0, worlds[4].corpus_config(), root=root) == root / "micro-s0"
