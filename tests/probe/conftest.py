"""Shared fixtures of the probe tests: a small model with every kind of weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class ZooNet(nn.Module):
    """Linear, Conv1d, Conv2d, Embedding, MultiheadAttention and a raw 3-D parameter."""

    def __init__(self, g: torch.Generator) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 12)
        self.conv1 = nn.Conv1d(12, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 4, (3, 2))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.raw = nn.Parameter(torch.empty(3, 4, 5))
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():  # every value from g, not from the global generator
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, tok: torch.Tensor) -> torch.Tensor:  # tok (B, T) int
        h = self.emb(tok).transpose(1, 2)  # (B, 12, T)
        h = torch.relu(self.conv1(h)).transpose(1, 2)  # (B, T, 8)
        a, _ = self.attn(h, h, h)  # (B, T, 8)
        return self.fc(self.norm(a).mean(1)) + 0 * self.raw.sum()  # (B, 5)


EXPECTED_KINDS = {
    "emb.weight": ("embedding", (20, 12)),
    "conv1.weight": ("conv1d", (8, 36)),
    "conv2.weight": ("conv2d", (4, 12)),
    "attn.in_proj_weight": ("attention_in_proj", (24, 8)),
    "attn.out_proj.weight": ("attention_out_proj", (8, 8)),
    "raw": ("other", (3, 20)),
    "fc.weight": ("linear", (5, 8)),
}


@pytest.fixture
def zoo() -> ZooNet:
    return ZooNet(torch.Generator().manual_seed(0))


@pytest.fixture
def expected_kinds() -> dict[str, tuple[str, tuple[int, int]]]:
    """name -> (kind, matrix view shape) of every ≥2-D parameter of :class:`ZooNet`."""
    return dict(EXPECTED_KINDS)
