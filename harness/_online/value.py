"""The critic V(s_t): a linear value head on a transformer's last hidden state.

``separate``: its own trunk, initialised from π_SFT (InstructGPT initialises it from the RM; a
separate trunk keeps value-loss gradients out of the policy). ``shared``: the head reads the
policy's own hidden states, saving a model's memory and a forward pass per batch, at the price
of the value loss also moving the policy (``vf_coef`` weighs it).
Both return values at the T positions that predict the T response tokens: V(s_t) is the value of
the state before token t is chosen. ``none`` (GRPO, RLOO): no critic at all, values are 0.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harness._core.generation import response_inputs


class ValueHead(nn.Module):
    """hidden → scalar, initialised to zero so the first advantages are the rewards themselves."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


class SharedCritic(nn.Module):
    """Value head on the policy's hidden states (passed in from the policy's forward)."""

    shares_trunk = True

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = ValueHead(hidden_size)

    def forward(self, query_ids, query_mask, response_ids, response_mask, policy_hidden):  # noqa: ARG002
        return self.head(policy_hidden)


class SeparateCritic(nn.Module):
    """A trunk of its own (the SFT model without its LM head) plus a value head."""

    shares_trunk = False

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = ValueHead(hidden_size)

    def forward(self, query_ids, query_mask, response_ids, response_mask, policy_hidden=None):  # noqa: ARG002
        out = self.trunk(**response_inputs(query_ids, query_mask, response_ids, response_mask), use_cache=False)
        width = response_ids.shape[1]
        return self.head(out.last_hidden_state[:, -width - 1:-1])


class NoCritic(nn.Module):
    """No critic (GRPO, RLOO): no parameters, no forward pass; every V(s_t) is 0."""

    shares_trunk = False

    def forward(self, query_ids, query_mask, response_ids, response_mask, policy_hidden=None):  # noqa: ARG002
        return torch.zeros(response_ids.shape, dtype=torch.float32, device=response_ids.device)


def build_critic(kind: str, sft_dir: Path, hidden_size: int) -> nn.Module:
    """``kind`` is the options' ``critic()``: ``none``, ``separate`` or ``shared``."""
    if kind == "none":
        return NoCritic()
    if kind == "shared":
        return SharedCritic(hidden_size)
    from transformers import AutoModelForCausalLM

    trunk = AutoModelForCausalLM.from_pretrained(str(sft_dir)).base_model  # the transformer without its LM head
    trunk.eval()  # no dropout: values must be a deterministic function of the state
    return SeparateCritic(trunk, hidden_size)
