"""Users' classifier modules for the tests: one that keeps the classify contract with attention,
and one for each way of breaking it (each refused at export with its own message)."""

from __future__ import annotations

import torch
from torch import nn


class AttentionLSTM(nn.Module):
    """Word LSTM with masked attention pooling: logits [B, C] and attention [B, T]."""

    def __init__(self, vocab_size: int, num_classes: int = 2, pad_id: int = 0, size: int = 16):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size, padding_idx=pad_id)
        self.lstm = nn.LSTM(size, size, batch_first=True)
        self.score = nn.Linear(size, 1)
        self.head = nn.Linear(size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        states, _ = self.lstm(self.embedding(tokens))  # (B, T, H)
        steps = torch.arange(tokens.shape[1]).unsqueeze(0)
        scores = self.score(states).squeeze(-1).masked_fill(steps >= lengths.unsqueeze(1), -1e9)
        attention = torch.softmax(scores, dim=-1)  # (B, T), zero on padding
        return self.head((attention.unsqueeze(-1) * states).sum(1)), attention


class MaxPoolGRU(nn.Module):
    """GRU with max pooling over real positions: logits only."""

    def __init__(self, vocab_size: int, num_classes: int = 2, pad_id: int = 0, size: int = 16):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size, padding_idx=pad_id)
        self.gru = nn.GRU(size, size, batch_first=True)
        self.head = nn.Linear(size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embedding(tokens))
        steps = torch.arange(tokens.shape[1]).unsqueeze(0)
        padded = (steps >= lengths.unsqueeze(1)).unsqueeze(-1)
        return self.head(states.masked_fill(padded, -1e9).max(dim=1).values)


class WrongClasses(MaxPoolGRU):
    def forward(self, tokens, lengths):
        return torch.cat([super().forward(tokens, lengths)] * 2, dim=-1)  # [B, 2C]


class IntegerLogits(MaxPoolGRU):
    def forward(self, tokens, lengths):
        return super().forward(tokens, lengths).argmax(-1, keepdim=True).repeat(1, 2)


class NeedsMask(MaxPoolGRU):
    def forward(self, tokens, lengths, mask):
        return super().forward(tokens, lengths)


class ReadsPadding(MaxPoolGRU):
    """Mean over every position, padding included: a text's answer depends on its batch."""

    def forward(self, tokens, lengths):
        states, _ = self.gru(self.embedding(tokens))
        return self.head(states.mean(dim=1))


class NotExportable(MaxPoolGRU):
    """A running maximum: an operator the ONNX exporter has no translation for (opset 17)."""

    def forward(self, tokens, lengths):
        return torch.cummax(super().forward(tokens, lengths), dim=-1).values


class Probabilities(MaxPoolGRU):
    """Returns softmax(logits), as some tutorials' forward does: softmaxed again, they lie."""

    def forward(self, tokens, lengths):
        return torch.softmax(super().forward(tokens, lengths), dim=-1)


MODULES = {
    cls.__name__: cls
    for cls in (AttentionLSTM, MaxPoolGRU, WrongClasses, IntegerLogits, NeedsMask, ReadsPadding,
                NotExportable, Probabilities)
}  # fmt: skip


def build(kind: str = "AttentionLSTM", **config) -> nn.Module:
    """`--module tests/user_models/modules.py:build --config {"kind": ..., ...}`."""
    torch.manual_seed(0)
    return MODULES[kind](**config)
