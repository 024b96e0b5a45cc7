"""A character-level GRU sentiment classifier, written with torch alone (no rnnserve code).

It keeps rnnserve's classify contract: forward(tokens int64[B, T], lengths int64[B]) returns
logits [B, C]. It reads the GRU's state at each sequence's last real character, so padding
after a sequence never changes its answer.
"""

from __future__ import annotations

import torch
from torch import nn


class CharGRU(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, pad_id: int, embedding_dim: int = 32,
                 hidden_size: int = 64) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embedding(tokens))  # (B, T, H)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
        return self.head(states.gather(1, last).squeeze(1))  # (B, C)


def build(**config: int) -> CharGRU:
    """What `rnnserve export --module model.py:build --config config.json` calls."""
    return CharGRU(**config)
