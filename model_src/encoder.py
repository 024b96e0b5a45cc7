"""Recurrent encoder (LSTM or GRU) whose outputs depend only on each sequence's real tokens."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Cell = Literal["lstm", "gru"]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `length` steps, leaving its padding in place.

    x (B, T, D). Used for the backward direction: running a forward RNN over the
    reversed real steps makes trailing padding unable to leak into any real output.
    """
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    index = torch.where(steps <= last, last - steps, steps)  # (B, T)
    return torch.gather(x, 1, index.unsqueeze(-1).expand_as(x))


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional LSTM/GRU over padded batches.

    Each layer and direction is its own single-layer RNN so the backward direction can
    start at each sequence's last real token; that keeps the graph a plain ONNX LSTM/GRU
    (fast in onnxruntime) instead of packed sequences.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell: Cell = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else self.output_size
            self.layers.append(
                nn.ModuleList(
                    rnn_class(size, hidden_size, batch_first=True) for _ in range(self.directions)
                )
            )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), lengths (B,) -> outputs (B, T, H * directions); padding rows are junk."""
        for i, directions in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            forward_out, _ = directions[0](x)  # (B, T, H): causal, so padding cannot leak back
            if self.directions == 1:
                x = forward_out
                continue
            backward_out, _ = directions[1](reverse_within_length(x, lengths))
            x = torch.cat([forward_out, reverse_within_length(backward_out, lengths)], dim=-1)
        return x
