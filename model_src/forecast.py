"""Streaming forecaster: a causal GRU over the series' steps, additive attention over a bounded
window of its states, and a head that predicts the next `horizon` values.

The state carried from one chunk of observations to the next is fixed in size, whatever the
length of the history, so each step costs O(chunk + window). It is batch first, as the step
contract of `export.forecast` asks of every forecaster (ours is exported as a user's is):

- `state`  (B, L, H): the GRU's hidden state of every layer;
- `memory` (B, W, H): the top layer's outputs for the last W steps, oldest first (a sliding
  window: each step shifts it by the chunk's length; slots never filled sit on the left);
- `last`   (B,): the last observation (scaled), the base of the forecast and of the next
  difference;
- `filled` (B,) int64: how many memory slots hold real steps (0 before the first value).

The network reads first differences (times `diff_scale`), so it is indifferent to the level of
the series, and predicts each future value as an offset from the last observation.

GRU rather than LSTM: a GRU's state is its output, so for a batch of chunks of different
lengths the state after each row's own last value is a gather of the outputs; that is what
lets steps of many sessions with different chunk sizes run as one batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from model_src.attention import AdditiveAttention


@dataclass
class ForecastConfig:
    cell: str = "gru"
    hidden_size: int = 64
    num_layers: int = 1
    attention_size: int = 32
    window: int = 104  # memory slots: steps the attention sees
    horizon: int = 13  # future values each forecast gives
    diff_scale: float = 1.0  # multiplies the scaled first differences fed to the GRU
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell != "gru":
            raise ValueError("the streaming forecaster is a GRU (its state is its output)")

    def to_dict(self) -> dict:
        return asdict(self)


class Forecaster(nn.Module):
    def __init__(self, config: ForecastConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.layers = nn.ModuleList(
            nn.GRU(1 if i == 0 else h, h, batch_first=True) for i in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.attention = AdditiveAttention(h, config.attention_size, query_size=h)
        self.head = nn.Sequential(nn.Linear(2 * h, h), nn.Tanh(), nn.Linear(h, config.horizon))

    def initial_state(
        self, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        return (
            torch.zeros(batch, c.num_layers, c.hidden_size),
            torch.zeros(batch, c.window, c.hidden_size),
            torch.zeros(batch),
            torch.zeros(batch, dtype=torch.long),
        )

    def encode(
        self,
        values: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor,
        last: torch.Tensor,
        filled: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """values (B, T) scaled, right-padded past `lengths` -> top outputs (B, T, H), new state.

        Causal: padding after a row's last value cannot change its outputs or its state.
        """
        prev = torch.where(filled > 0, last, values[:, 0])  # the first value has no difference
        shifted = torch.cat([prev.unsqueeze(1), values[:, :-1]], dim=1)
        x = ((values - shifted) * self.config.diff_scale).unsqueeze(-1)  # (B, T, 1)
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.config.hidden_size)
        states = []
        for i, gru in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x, _ = gru(x, state[:, i].unsqueeze(0).contiguous())  # (B, T, H)
            states.append(torch.gather(x, 1, index).squeeze(1))  # (B, H) at each row's end
        return x, torch.stack(states, dim=1)

    def predict(
        self, memory: torch.Tensor, mask: torch.Tensor, query: torch.Tensor, last: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (N, W, H), mask (N, W), query (N, H), last (N,) -> forecast (N, k), weights."""
        context, weights = self.attention(memory, mask, query)
        offsets = self.head(torch.cat([query, context], dim=-1))  # (N, k), in difference units
        return last.unsqueeze(1) + offsets / self.config.diff_scale, weights

    def forward(
        self,
        values: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        last: torch.Tensor,
        filled: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One chunk per row -> forecast (B, k), attention (B, W), and the new carried state."""
        window = self.config.window
        outputs, state = self.encode(values, lengths, state, last, filled)
        # Slide the window: keep the W newest of [memory, this chunk's real outputs].
        joined = torch.cat([memory, outputs], dim=1)  # (B, W + T, H)
        keep = torch.arange(window, device=values.device).unsqueeze(0) + lengths.unsqueeze(1)
        memory = torch.gather(joined, 1, keep.unsqueeze(-1).expand(-1, -1, joined.shape[-1]))
        filled = torch.clamp(filled + lengths, max=window)
        mask = torch.arange(window, device=values.device).unsqueeze(0) >= (window - filled)[:, None]
        last = torch.gather(values, 1, (lengths - 1).unsqueeze(1)).squeeze(1)
        forecast, weights = self.predict(memory, mask, state[:, -1], last)
        return forecast, weights, state, memory, last, filled

    def forward_training(
        self, values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences from a fresh state, forecasts at `positions` (P,) of every row:
        the same maths as `forward`, with each position's memory cut from the outputs.

        values (B, S) -> forecasts (B, P, k), weights (B, P, W).
        """
        b, s = values.shape
        w, h = self.config.window, self.config.hidden_size
        state, _, last, filled = self.initial_state(b)
        lengths = torch.full((b,), s, dtype=torch.long)
        outputs, _ = self.encode(values, lengths, state, last, filled)  # (B, S, H)
        padded = torch.cat([outputs.new_zeros(b, w - 1, h), outputs], dim=1)
        windows = padded.unfold(1, w, 1)[:, positions].permute(0, 1, 3, 2)  # (B, P, W, H)
        filled = torch.clamp(positions + 1, max=w)  # (P,)
        mask = torch.arange(w).unsqueeze(0) >= (w - filled).unsqueeze(1)  # (P, W)
        p = len(positions)
        forecast, weights = self.predict(
            windows.reshape(b * p, w, h),
            mask.repeat(b, 1),
            outputs[:, positions].reshape(b * p, h),
            values[:, positions].reshape(b * p),
        )
        return forecast.view(b, p, -1), weights.view(b, p, w)
