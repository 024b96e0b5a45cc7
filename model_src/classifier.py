"""Text classifier: embedding -> recurrent encoder -> additive attention pooling -> logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from contract.words import PAD_ID
from model_src.attention import AdditiveAttention, length_mask
from model_src.encoder import Cell, RNNEncoder


@dataclass
class ClassifierConfig:
    vocab_size: int
    num_classes: int
    cell: Cell = "lstm"
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    attention_size: int = 128
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


class TextClassifier(nn.Module):
    """Returns class logits and the attention weights over the input tokens: the classify
    task's module contract (export.classifier), which a user's classifier keeps too."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.encoder = RNNEncoder(
            config.embedding_dim,
            config.hidden_size,
            cell=config.cell,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.attention = AdditiveAttention(self.encoder.output_size, config.attention_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_classes)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) int64, lengths (B,) -> logits (B, C), attention (B, T)."""
        mask = length_mask(lengths, tokens.shape[1])  # (B, T)
        states = self.encoder(self.dropout(self.embedding(tokens)), lengths)  # (B, T, H)
        pooled, weights = self.attention(states, mask)  # (B, H), (B, T)
        return self.head(self.dropout(pooled)), weights
