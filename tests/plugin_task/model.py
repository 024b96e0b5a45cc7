"""The wordcount task's model, as its author writes it in PyTorch: how many ids are <unk>."""

from __future__ import annotations

import torch
from torch import nn


class UnknownCounter(nn.Module):
    def __init__(self, unk_id: int = 1) -> None:
        super().__init__()
        self.unk_id = unk_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64 -> unknown (B,) float32."""
        return (tokens == self.unk_id).sum(1).float()
