"""A user's streaming forecaster for the tests (torch alone): a GRU step module with explicit
state (its hidden state, and a count of values seen); one that forgets its state, and one whose
initial state is not zeros."""

from __future__ import annotations

import torch
from torch import nn


class StepGRU(nn.Module):
    def __init__(self, hidden: int = 16, horizon: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = hidden
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden + 1, horizon)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(batch, self.hidden), torch.zeros(batch, dtype=torch.long)

    def forward(self, values, lengths, state, seen):
        outputs, _ = self.gru(values.unsqueeze(-1), state.unsqueeze(0))  # (B, T, H)
        last = outputs.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.hidden))
        last = last.squeeze(1)  # the state after each row's last real value
        seen = seen + lengths
        features = torch.cat([last, torch.log1p(seen.float()).unsqueeze(-1)], dim=-1)
        return self.head(features), last, seen


class Forgetful(StepGRU):
    """Starts every chunk from zeros: chunks of a series do not add up to the whole."""

    def forward(self, values, lengths, state, seen):
        return super().forward(values, lengths, torch.zeros_like(state), seen)


class Primed(StepGRU):
    """Starts its count of values at one: the service, opening sessions with zeros, could not."""

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        state, seen = super().initial_state(batch)
        return state, seen + 1


def build(kind: str = "StepGRU", **config) -> nn.Module:
    return {"StepGRU": StepGRU, "Forgetful": Forgetful, "Primed": Primed}[kind](**config)
