"""Packed forwards: sequences without padding, several to a row, one attention mask keeping them apart.

A batch padded to its longest sequence computes the padding too. Measured on the default run
(``docs/performance.md``): a reward-model step on K = 4 rankings ran 1,112 token positions for about
600 real tokens, every response padded to the longest of 32; PPO's log-prob and scoring forwards pad
alike. (SFT's examples are about one length, and packing them measured no faster: SFT stays padded.)

A *tree* is a prefix and the branches that continue it: a ranking's prompt and its K responses, a
GRPO group's prompt and its k samples, a (prompt, response) pair to score. Trees are laid
into rows first-fit decreasing, each row as long as the longest tree. Under a 4D attention mask a
token sees, causally, its own tree's prefix and its own branch and nothing else; position ids
restart at each tree and go on from the prefix into every branch. So each token computes what it
computes in its own unpadded sequence, prefix + branch, to float rounding, and a prefix runs once
for all of its branches, with gradients from every branch flowing back into it.

The mask has to reach the attention as given: transformers passes a 4D mask through unchanged to
its ``sdpa`` and ``eager`` attentions (boolean for the one, additive for the other), not to
flash-attention kernels, and a DDP or DeepSpeed wrapper must see its own forward called. Callers
ask :func:`packable` first and keep their padded forward for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

MASKED_ATTENTIONS = ("sdpa", "eager")  # transformers hands these a custom 4D mask unchanged


def packable(model) -> bool:
    """True when a packed forward computes what the padded one does: a bare Hugging Face model (no DDP,
    DeepSpeed or compile wrapper whose own forward must run) whose attention takes a 4D mask."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):  # DDP, DeepSpeed's engine, torch.compile: wrappers, not models
        return False
    return getattr(model.config, "_attn_implementation", None) in MASKED_ATTENTIONS


@dataclass(frozen=True)
class Packed:
    """Trees laid into rows: the model's inputs and where each tree's prefix and branches landed."""

    input_ids: torch.Tensor  # [rows, width]
    position_ids: torch.Tensor  # [rows, width]
    visible: torch.Tensor  # [rows, width, width] bool: query token i may attend to key token j
    prefix_at: list[tuple[int, int, int]]  # per tree: (row, first column, length)
    branch_at: list[list[tuple[int, int, int]]]  # per tree, per branch: (row, first column, length)

    def flat_positions(self, tree: int, branch: int | None = None) -> list[int]:
        """Where the tokens of prefix (+ branch) sit in ``[rows × width]``, in the sequence's own order."""
        width = self.input_ids.shape[1]
        parts = [self.prefix_at[tree]] + ([self.branch_at[tree][branch]] if branch is not None else [])
        return [row * width + col for row, start, length in parts for col in range(start, start + length)]

    def attention_mask(self, model, device) -> torch.Tensor:
        """The mask in the form ``model``'s attention takes: boolean for sdpa, additive (0 / dtype min) for eager."""
        mask = self.visible[:, None].to(device)
        if model.config._attn_implementation == "eager":
            dtype = next(model.parameters()).dtype
            return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
        return mask

    def inputs(self, model, device) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model`` (or its trunk): ids, the 4D mask, position ids."""
        return {"input_ids": self.input_ids.to(device), "attention_mask": self.attention_mask(model, device),
                "position_ids": self.position_ids.to(device)}


def pack(prefixes: Sequence[Sequence[int]], branches: Sequence[Sequence[Sequence[int]]], pad_id: int) -> Packed:
    """Trees ``(prefixes[i], branches[i])`` packed into rows (see the module's docstring)."""
    if len(prefixes) != len(branches):
        raise ValueError(f"pack: {len(prefixes)} prefixes for {len(branches)} lists of branches")
    sizes = [len(p) + sum(len(b) for b in bs) for p, bs in zip(prefixes, branches)]
    row_of, n_rows = _first_fit_decreasing(sizes, max(sizes, default=0))
    ids, pos, tree, seg = ([[] for _ in range(n_rows)] for _ in range(4))
    prefix_at, branch_at = [], []
    for t, (prefix, its_branches) in enumerate(zip(prefixes, branches)):
        r = row_of[t]
        prefix_at.append((r, len(ids[r]), len(prefix)))
        _append(ids[r], pos[r], tree[r], seg[r], prefix, range(len(prefix)), t, 0)
        spans = []
        for j, branch in enumerate(its_branches):
            spans.append((r, len(ids[r]), len(branch)))
            _append(ids[r], pos[r], tree[r], seg[r], branch, range(len(prefix), len(prefix) + len(branch)), t, j + 1)
        branch_at.append(spans)
    width = max((len(row) for row in ids), default=0)
    as_tensor = lambda rows, fill: torch.tensor([row + [fill] * (width - len(row)) for row in rows],  # noqa: E731
                                                dtype=torch.long).reshape(n_rows, width)
    tree_ids, seg_ids = as_tensor(tree, -1), as_tensor(seg, -1)
    same_tree = (tree_ids[:, :, None] == tree_ids[:, None, :]) & (tree_ids >= 0)[:, :, None]
    on_path = (seg_ids[:, None, :] == 0) | (seg_ids[:, :, None] == seg_ids[:, None, :])  # the prefix, or one's own branch
    visible = same_tree & on_path & torch.ones(width, width, dtype=torch.bool).tril()
    visible |= torch.eye(width, dtype=torch.bool)  # padding sees itself: no row of the softmax is empty
    return Packed(as_tensor(ids, pad_id), as_tensor(pos, 0), visible, prefix_at, branch_at)


def _append(ids: list, pos: list, tree: list, seg: list, tokens, positions, tree_id: int, seg_id: int) -> None:
    ids += list(tokens)
    pos += list(positions)
    tree += [tree_id] * len(tokens)
    seg += [seg_id] * len(tokens)


def _first_fit_decreasing(sizes: list[int], capacity: int) -> tuple[list[int], int]:
    """Row of each item, largest first into the first row with room (a row holds ``capacity`` tokens)."""
    fill: list[int] = []
    row_of = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        row = next((r for r, used in enumerate(fill) if used + sizes[i] <= capacity), None)
        if row is None:
            fill.append(0)
            row = len(fill) - 1
        fill[row] += sizes[i]
        row_of[i] = row
    return row_of, len(fill)
