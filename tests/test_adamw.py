"""``harness.api.adamw``: torch's fused AdamW where the parameters allow it, the same steps as the loop."""
from __future__ import annotations

import torch

from tests.test_generation import tiny_llama


def test_adamw_is_fused_on_float_parameters_and_steps_as_the_loop_does():
    from harness._core.compute import adamw

    model = tiny_llama(vocab_size=40)
    twin = tiny_llama(vocab_size=40)
    for p, q in zip(model.parameters(), twin.parameters()):
        p.grad = torch.full_like(p, 0.01)
        q.grad = p.grad.clone()
    fused = adamw(model.parameters(), lr=1e-2, weight_decay=0.1)
    loop = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    for _ in range(3):
        fused.step()
        loop.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert not adamw([torch.zeros(2, dtype=torch.float64, requires_grad=True)], lr=1e-3).defaults["fused"]
