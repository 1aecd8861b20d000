"""A2C end to end on the tiny problem of ``tests/test_ppo.py`` (same world, reward and helpers)."""
from __future__ import annotations

import torch

from tests.test_ppo import REQUIRED, names, sft_dir, train  # noqa: F401 - fixtures are used by name


def test_a2c_changes_the_parameters_and_saves_an_hf_policy(tmp_path, sft_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train("a2c", tmp_path, sft_dir, steps=2)
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "policy" / "model")
    AutoTokenizer.from_pretrained(tmp_path / "policy" / "model")
    sft = AutoModelForCausalLM.from_pretrained(sft_dir)
    changed = [n for n, p in policy.state_dict().items() if not torch.equal(p, sft.state_dict()[n])]
    assert changed


def test_a2c_runs_and_logs_its_metrics(tmp_path, sft_dir):
    summary, logged = train("a2c", tmp_path, sft_dir, steps=3, entropy_coef=0.01, value_model="shared")
    assert [s for s, _ in logged] == [1, 2, 3]
    assert REQUIRED <= names(logged[-1][1], "a2c")
    assert "a2c/clipfrac" not in logged[-1][1] and summary["optimizer"] == "a2c"
    assert all(m["a2c/approx_kl"] > 0 for _, m in logged)  # measured after the step: how far it moved
