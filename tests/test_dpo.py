"""DPO end to end on the tiny world of ``tests/test_ppo.py``: pairwise feedback that prefers ``good`` words.

The feedback stage here is just its ``feedback.jsonl``; the policy is the random tiny Llama.
After a few steps the policy's implicit reward margin β·[(log π_θ − log π_SFT)(y_w) − (…)(y_l)] on the
training pairs must be positive, measured independently of trl with the harness's own tokenization.
"""
from __future__ import annotations

import random

import pytest
import torch
from pydantic import ValidationError

from harness._core.text import encode_prompt, encode_response
from tests.test_ppo import FakeWorld, make_ctx, sft_dir  # noqa: F401  (fixtures)

FAST = dict(epochs=3, batch_size=8, lr=1e-3, log_every=1, max_length=64)


def write_feedback(feedback_dir, n: int = 24, seed: int = 0) -> list:
    """Pairwise records, as the feedback stage writes them, where the ``good`` response always wins."""
    from harness._core.contracts import FeedbackRecord
    from harness._core.records import write_feedback as write

    rng = random.Random(seed)
    records = []
    for prompt in FakeWorld().prompts("rm")[:n]:
        good = " ".join(["good"] * rng.randint(1, 3) + rng.choices(["yes", "cat"], k=1))
        bad = " ".join(["bad"] * rng.randint(1, 3) + rng.choices(["no", "dog"], k=1))
        responses, choice = ([good, bad], 0) if rng.random() < 0.5 else ([bad, good], 1)
        records.append(FeedbackRecord(prompt, responses, "a1", "choice", choice))
    records.append(records[0])  # an exact duplicate: kept once
    write(feedback_dir / "feedback.jsonl", records)
    return records


def dpo_ctx(tmp_path, sft, logged):
    from harness_builtins.feedback.pairwise import Pairwise

    ctx = make_ctx(tmp_path, sft, logged)
    ctx.artifacts["feedback"] = tmp_path / "feedback"
    ctx.components.feedback = Pairwise()
    return ctx


@torch.no_grad()
def sequence_logprob(model, tokenizer, world, prompt, response) -> float:
    """log π(response | prompt) by the harness._core.text convention (EOS included)."""
    p, r = encode_prompt(tokenizer, world.chat_text(prompt)), encode_response(tokenizer, response)
    ids = torch.tensor([p + r])
    logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return float(logps[torch.arange(len(p) - 1, ids.size(1) - 1), ids[0, len(p):]].sum())


def implicit_margins(policy_dir, sft, groups, world) -> list[float]:
    """(log π_θ − log π_SFT)(chosen) − (log π_θ − log π_SFT)(rejected), per pair."""
    from harness._core.models import load_causal_lm

    policy, tok = load_causal_lm(policy_dir)
    ref, _ = load_causal_lm(sft)
    out = []
    for g in groups:
        for w, l, _ in g.pairs:
            chosen = sequence_logprob(policy, tok, world, g.prompt, g.responses[w]) - \
                sequence_logprob(ref, tok, world, g.prompt, g.responses[w])
            rejected = sequence_logprob(policy, tok, world, g.prompt, g.responses[l]) - \
                sequence_logprob(ref, tok, world, g.prompt, g.responses[l])
            out.append(chosen - rejected)
    return out


def test_dpo_raises_the_implicit_reward_margin(tmp_path, sft_dir):
    from harness_builtins.feedback.pairwise import Pairwise
    from harness_builtins.optimizers.dpo import DPO

    records = write_feedback(tmp_path / "feedback")
    logged: list = []
    ctx = dpo_ctx(tmp_path, sft_dir, logged)
    summary = DPO(DPO.Options(**FAST)).train(ctx, None)

    model_dir = tmp_path / "policy" / "model"
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer_config.json").is_file()
    assert not list((tmp_path / "policy").glob(".model.*"))  # the atomic temp dir is gone
    assert summary["optimizer"] == "dpo" and summary["pairs"] == 24  # the duplicate record counted once
    assert summary["steps"] == 3 * 3 and summary["wall_s"] > 0
    # metrics forwarded under the harness's names, every step
    assert [s for s, _ in logged] == list(range(1, 10))
    assert {"dpo/loss", "dpo/rewards_margin", "dpo/rewards_accuracy"} <= set(logged[-1][1])
    assert summary["final"]["dpo/loss"] == logged[-1][1]["dpo/loss"]
    assert logged[-1][1]["dpo/loss"] < logged[0][1]["dpo/loss"]
    assert logged[-1][1]["dpo/rewards_margin"] > 0
    # measured outside trl, on the saved model: chosen gained log-prob relative to rejected, vs π_SFT
    margins = implicit_margins(model_dir, sft_dir, Pairwise().preference_groups(records[:-1]), FakeWorld())
    assert sum(margins) / len(margins) > 1.0, margins
    assert sum(m > 0 for m in margins) / len(margins) >= 0.9


def test_options_validate():
    from harness_builtins.optimizers.dpo import DPO

    o = DPO.Options()
    assert (o.beta, o.epochs, o.batch_size, o.max_length, o.loss_type) == (0.1, 1, 16, 256, "sigmoid")
    assert DPO.mode == "offline"
    for bad in ({"beta": 0}, {"epochs": 0}, {"lr": -1.0}, {"loss_type": "nope"}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            DPO.Options(**bad)
    assert all(f.description for f in DPO.Options.model_fields.values())


def test_registered_and_missing_feedback_is_a_clear_error(tmp_path, sft_dir):
    from harness._core.errors import HarnessError
    from harness_builtins.optimizers import dpo

    registered = {}
    dpo.register_optimizers(register=lambda name, factory: registered.setdefault(name, factory))
    assert registered == {"dpo": dpo.DPO}
    ctx = dpo_ctx(tmp_path, sft_dir, [])
    with pytest.raises(HarnessError, match=r"feedback.jsonl: no feedback records"):
        dpo.DPO().train(ctx, None)
    del ctx.artifacts["feedback"]
    with pytest.raises(HarnessError, match="no feedback stage ran before it"):
        dpo.DPO().train(ctx, None)
