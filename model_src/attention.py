"""Bahdanau (additive) attention with a padding mask."""

from __future__ import annotations

import torch
from torch import nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True at real positions: (B,) lengths -> (B, T) bool."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where padding gets exactly zero weight."""
    # finfo.min rather than -inf: exp underflows to an exact 0 without NaNs in the graph.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


class AdditiveAttention(nn.Module):
    """score_t = v^T tanh(W_k k_t + W_q q): one query against every key.

    With no query (attention pooling for classification) the score is v^T tanh(W_k k_t).
    """

    def __init__(self, key_size: int, attention_size: int, query_size: int = 0) -> None:
        super().__init__()
        self.w_k = nn.Linear(key_size, attention_size, bias=True)
        self.w_q = nn.Linear(query_size, attention_size, bias=False) if query_size else None
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(
        self, keys: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """keys (B, T, K), mask (B, T), query (B, Q) -> context (B, K), weights (B, T)."""
        energy = self.w_k(keys)  # (B, T, A)
        if self.w_q is not None and query is not None:
            energy = energy + self.w_q(query).unsqueeze(1)
        scores = self.v(torch.tanh(energy)).squeeze(-1)  # (B, T)
        weights = masked_softmax(scores, mask)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (B, K)
        return context, weights
