"""DPO end to end on the tiny world of ``tests/test_ppo.py``: pairwise feedback that prefers ``good`` words.

The feedback stage here is just its ``feedback.jsonl``; the policy is the random tiny Llama.
After a few steps the policy's implicit reward margin β·[(log π_θ − log π_SFT)(y_w) − (…)(y_l)] on the
training pairs must be positive, measured independently of trl with the harness's own tokenization.
The pairs' weights (1/C(K,2) for a ranking) must reach the loss: a batch's loss is Σ w·ℓ / Σ w, checked
against the pairs' losses computed here by hand, and up-weighted pairs are learned more.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from harness._core.records import PreferenceGroup
from harness._core.text import encode_prompt, encode_response
from tests.test_ppo import FakeWorld, make_ctx, sft_dir  # noqa: F401  (fixtures)

FAST = dict(epochs=3, batch_size=8, lr=1e-3, log_every=1, max_length=64)


def write_feedback(feedback_dir, n: int = 24, seed: int = 0, repeat_first: bool = True) -> list:
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
    if repeat_first:
        records.append(records[0])  # the same vote twice: counts twice
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
    assert summary["optimizer"] == "dpo" and summary["pairs"] == 25  # the repeated record is a second vote
    assert summary["steps"] == 3 * 4 and summary["wall_s"] > 0  # ⌈25 / 8⌉ batches per epoch
    # metrics forwarded under the harness's names, every step
    assert [s for s, _ in logged] == list(range(1, 13))
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


def test_prompts_that_fill_max_length_are_a_clear_error(tmp_path, sft_dir):
    from harness._core.errors import HarnessError
    from harness_builtins.optimizers.dpo import DPO

    write_feedback(tmp_path / "feedback")
    with pytest.raises(HarnessError, match=r"every prompt fills max_length = 3 tokens"):
        DPO(DPO.Options(max_length=3)).train(dpo_ctx(tmp_path, sft_dir, []), None)


def test_dpo_stands_on_public_apis_only():
    """Only harness.api of the harness, and of trl's DPOTrainer only its public ``compute_loss`` overridden."""
    from harness_builtins.optimizers import dpo
    from tests.test_import_graph import GRAPH

    assert not {t for t in GRAPH["harness_builtins.optimizers.dpo"]
                if t.startswith("harness_builtins")}
    assert {name for name in vars(dpo._trainer_class()) if not name.startswith("__")} == {"compute_loss"}


# ----------------------------------------------------------------- the pairs' weights
def pair_losses(policy, reference, tokenizer, world, pairs, beta: float) -> torch.Tensor:
    """−log σ(β·[(log π_θ − log π_ref)(chosen) − (log π_θ − log π_ref)(rejected)]) per pair, outside trl."""
    def logratio(prompt, response):
        return sequence_logprob(policy, tokenizer, world, prompt, response) - \
            sequence_logprob(reference, tokenizer, world, prompt, response)

    margins = torch.tensor([logratio(p.prompt, p.chosen) - logratio(p.prompt, p.rejected) for p in pairs])
    return -F.logsigmoid(beta * margins)


def test_the_batch_loss_is_the_weighted_mean_of_the_pair_losses(tmp_path, sft_dir):
    from harness._core.feedback import pairs_from_order
    from harness._core.models import load_causal_lm
    from harness_builtins.optimizers import dpo

    world = FakeWorld()
    first, second = world.prompts("rm")[:2]
    groups = [PreferenceGroup(first, ("good yes", "bad no", "cat", "cat"), pairs_from_order([0, 1, 2, 3])),
              PreferenceGroup(second, ("good", "dog runs"), ((0, 1, 1.0),))]
    pairs = dpo.preference_pairs(groups)  # the ranking's tie "cat" vs "cat" has nothing to learn: left out
    assert [(p.chosen, p.rejected, p.weight) for p in pairs] == [
        ("good yes", "bad no", 1 / 6), ("good yes", "cat", 1 / 6), ("good yes", "cat", 1 / 6),
        ("bad no", "cat", 1 / 6), ("bad no", "cat", 1 / 6), ("good", "dog runs", 1.0)]
    options = dpo.DPO.Options(**FAST)
    policy, tokenizer = load_causal_lm(sft_dir, trainable=True)
    with torch.no_grad():  # π_θ ≠ π_SFT, so the pairs' losses differ from log 2 and from each other
        torch.manual_seed(0)
        for param in policy.parameters():
            param.add_(0.05 * torch.randn_like(param))
    reference, _ = load_causal_lm(sft_dir)
    dataset = dpo.build_dataset(world, tokenizer, pairs, options.max_length)
    collate = dpo.preference_collator(tokenizer.pad_token_id, options.max_length)
    args = dpo.dpo_config(make_ctx(tmp_path, sft_dir, []), options)
    trainer = dpo._trainer_class()(model=policy, ref_model=reference, args=args, train_dataset=dataset,
                                   data_collator=collate, processing_class=tokenizer, equal_weights=False)
    batch = collate([dataset[i] for i in range(len(dataset))])
    # trl trains on the harness's tokens (BOS first, " " + response, EOS), not on its own tokenization
    sequence = encode_prompt(tokenizer, world.chat_text(first)) + encode_response(tokenizer, "good yes")
    assert sequence[0] == tokenizer.bos_token_id and batch["input_ids"][0, :len(sequence)].tolist() == sequence

    policy.eval()
    losses = pair_losses(policy, reference, tokenizer, world, pairs, options.beta)
    weights = torch.tensor([p.weight for p in pairs])
    weighted = float((weights * losses).sum() / weights.sum())
    assert abs(weighted - float(losses.mean())) > 0.01  # dropping the weights would be seen
    assert float(trainer.compute_loss(trainer.model, batch).detach()) == pytest.approx(weighted, abs=1e-5)
    # equal weights: trl's plain mean, whether trl gets the pairs one at a time or the batch whole
    batch["weight"] = torch.full((len(pairs),), 0.5)
    assert float(trainer.compute_loss(trainer.model, batch).detach()) == pytest.approx(float(losses.mean()), abs=1e-5)
    trainer.equal_weights = True
    assert float(trainer.compute_loss(trainer.model, batch).detach()) == pytest.approx(float(losses.mean()), abs=1e-5)


class Reweighted:
    """The pairwise format with each record's pair weighted by ``weight(prompt)``."""

    def __init__(self, weight):
        from harness_builtins.feedback.pairwise import Pairwise

        self.format, self.weight = Pairwise(), weight

    def preference_groups(self, records):
        return [PreferenceGroup(g.prompt, g.responses, tuple((w, l, self.weight(g.prompt)) for w, l, _ in g.pairs))
                for g in self.format.preference_groups(records)]


def test_up_weighted_pairs_are_learned_more(tmp_path, sft_dir):
    from harness_builtins.feedback.pairwise import Pairwise
    from harness_builtins.optimizers.dpo import DPO

    records = write_feedback(tmp_path / "feedback", repeat_first=False)
    even = {r.prompt.id for r in records[::2]}
    margins = {}  # favoured half -> (mean implicit margin of the even half, of the odd half)
    for favoured in ("even", "odd"):
        (tmp_path / favoured).mkdir()
        ctx = dpo_ctx(tmp_path / favoured, sft_dir, [])
        ctx.artifacts["feedback"] = tmp_path / "feedback"
        ctx.components.feedback = Reweighted(lambda p, f=favoured: 1.0 if (p.id in even) == (f == "even") else 0.1)
        DPO(DPO.Options(**{**FAST, "epochs": 1})).train(ctx, None)
        per_pair = implicit_margins(tmp_path / favoured / "policy" / "model", sft_dir,
                                    Pairwise().preference_groups(records), FakeWorld())
        halves = [[m for r, m in zip(records, per_pair) if (r.prompt.id in even) == side] for side in (True, False)]
        margins[favoured] = tuple(sum(h) / len(h) for h in halves)
    # each run moves its heavy half further than the other run moves that half
    assert margins["even"][0] > margins["odd"][0] and margins["odd"][1] > margins["even"][1], margins
