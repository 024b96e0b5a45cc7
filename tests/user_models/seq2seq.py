"""A user's character seq2seq model for the tests (torch alone): a GRU encoder and a decoder
step with dot-product attention, keeping the seq2seq contract; and a decoder that breaks it."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, vocab_size: int, size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size, padding_idx=0)
        self.gru = nn.GRU(size, size, batch_first=True)

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor):
        memory, _ = self.gru(self.embedding(chars))  # (B, S, H): causal, padding comes after
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, memory.shape[-1])
        return memory, memory.gather(1, last).squeeze(1)  # memory, state (B, H)


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size)
        self.cell = nn.GRUCell(2 * size, size)
        self.out = nn.Linear(2 * size, vocab_size)

    def forward(self, token, state, memory, mask):
        scores = torch.bmm(memory, state.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, -1e9)
        attention = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.bmm(attention.unsqueeze(1), memory).squeeze(1)
        state = self.cell(torch.cat([self.embedding(token), context], -1), state)
        return self.out(torch.cat([state, context], -1)), state, attention


class NoAttention(Decoder):
    def forward(self, token, state, memory, mask):
        logits, state, _ = super().forward(token, state, memory, mask)
        return logits, state


class Model(nn.Module):
    """What `--module seq2seq.py:build` returns: `encoder` and `decoder` submodules."""

    def __init__(self, input_size: int, output_size: int, size: int = 16, decoder: str = "Decoder"):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = Encoder(input_size, size)
        self.decoder = {"Decoder": Decoder, "NoAttention": NoAttention}[decoder](output_size, size)


def build(**config) -> Model:
    return Model(**config)
