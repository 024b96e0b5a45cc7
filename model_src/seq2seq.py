"""Encoder-decoder with Bahdanau attention: characters in, characters out.

At each output step the decoder scores every encoder state against its previous state
(`v^T tanh(W_k k_t + W_q q)`), takes the masked-softmax-weighted sum of the encoder states
as context, and feeds [embedding of the previous output; context] to its recurrent cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from contract.chars import BOS_ID, EOS_ID, PAD_ID
from model_src.attention import AdditiveAttention, length_mask
from model_src.encoder import Cell, RNNEncoder


@dataclass
class Seq2SeqConfig:
    input_vocab_size: int
    output_vocab_size: int
    cell: Cell = "gru"
    embedding_dim: int = 64
    hidden_size: int = 128  # encoder, per direction
    num_layers: int = 1
    bidirectional: bool = True
    decoder_hidden_size: int = 160
    output_embedding_dim: int = 32
    attention_size: int = 128
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def state_size(self) -> int:
        """The decoder state as one tensor: h for a GRU, [h; c] for an LSTM."""
        return self.decoder_hidden_size * (2 if self.cell == "lstm" else 1)


class Seq2SeqEncoder(nn.Module):
    """chars -> encoder states (the attention memory) and the decoder's first state."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(
            config.input_vocab_size, config.embedding_dim, padding_idx=PAD_ID
        )
        self.rnn = RNNEncoder(
            config.embedding_dim,
            config.hidden_size,
            cell=config.cell,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.bridge = nn.Linear(self.rnn.output_size, config.state_size)

    def forward(
        self, chars: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """chars (B, T), lengths (B,) -> memory (B, T, E), state (B, S)."""
        mask = length_mask(lengths, chars.shape[1]).unsqueeze(-1)  # (B, T, 1)
        memory = self.rnn(self.dropout(self.embedding(chars)), lengths)  # (B, T, E)
        memory = memory * mask  # padding rows zeroed: junk never reaches the decoder
        mean = memory.sum(1) / lengths.unsqueeze(-1).to(memory.dtype)  # (B, E)
        return memory, torch.tanh(self.bridge(mean))


class DecoderStep(nn.Module):
    """One output step: previous token, state, memory, mask -> logits, new state, attention."""

    def __init__(self, config: Seq2SeqConfig, memory_size: int) -> None:
        super().__init__()
        self.lstm = config.cell == "lstm"
        self.hidden = config.decoder_hidden_size
        self.embedding = nn.Embedding(config.output_vocab_size, config.output_embedding_dim)
        self.attention = AdditiveAttention(memory_size, config.attention_size, self.hidden)
        cell_class = nn.LSTMCell if self.lstm else nn.GRUCell
        self.cell = cell_class(config.output_embedding_dim + memory_size, self.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(self.hidden + memory_size, config.output_vocab_size)

    def forward(
        self,
        token: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """token (B,), state (B, S), memory (B, T, E), mask (B, T) bool
        -> logits (B, V), state (B, S), attention (B, T)."""
        h = state[:, : self.hidden]  # (B, H): the query is the previous hidden state
        context, weights = self.attention(memory, mask, h)  # (B, E), (B, T)
        x = torch.cat([self.dropout(self.embedding(token)), context], dim=-1)  # (B, D + E)
        if self.lstm:
            h, c = self.cell(x, (h, state[:, self.hidden :]))
            state = torch.cat([h, c], dim=-1)
        else:
            h = state = self.cell(x, h)
        logits = self.out(self.dropout(torch.cat([h, context], dim=-1)))  # (B, V)
        return logits, state, weights


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Seq2SeqEncoder(config)
        self.decoder = DecoderStep(config, self.encoder.rnn.output_size)

    def forward(
        self, chars: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: targets (B, U) start with <s> -> logits (B, U - 1, V) for
        targets[:, 1:]."""
        memory, state = self.encoder(chars, lengths)
        mask = length_mask(lengths, chars.shape[1])
        logits = []
        for t in range(targets.shape[1] - 1):
            step, state, _ = self.decoder(targets[:, t], state, memory, mask)
            logits.append(step)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(
        self, chars: torch.Tensor, lengths: torch.Tensor, max_len: int
    ) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Output ids (without </s>) and attention (U_i, T_i) per sequence."""
        memory, state = self.encoder(chars, lengths)
        mask = length_mask(lengths, chars.shape[1])
        batch = chars.shape[0]
        token = torch.full((batch,), BOS_ID, dtype=torch.long)
        outputs: list[list[int]] = [[] for _ in range(batch)]
        weights: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        done = [False] * batch
        for _ in range(max_len):
            logits, state, attention = self.decoder(token, state, memory, mask)
            token = logits.argmax(-1)
            for i in range(batch):
                if done[i]:
                    continue
                if token[i].item() == EOS_ID:
                    done[i] = True
                    continue
                outputs[i].append(int(token[i]))
                weights[i].append(attention[i, : lengths[i]])
            if all(done):
                break
        empty = [torch.zeros(0, int(n)) for n in lengths]
        return outputs, [torch.stack(w) if w else e for w, e in zip(weights, empty, strict=True)]

    @torch.no_grad()
    def beam_search(
        self, chars: torch.Tensor, lengths: torch.Tensor, max_len: int, width: int
    ) -> tuple[list[int], float]:
        """One sequence (B = 1): the best hypothesis by summed log-probability and its score.

        The beam keeps `width` rows; a finished row can only extend itself with </s> at no
        cost, so it competes with the live rows until every row has finished.
        """
        memory, state = self.encoder(chars, lengths)  # (1, T, E), (1, S)
        mask = length_mask(lengths, chars.shape[1])
        memory, mask, state = (x.expand(width, *x.shape[1:]) for x in (memory, mask, state))
        token = torch.full((width,), BOS_ID, dtype=torch.long)
        scores = torch.full((width,), float("-inf"))
        scores[0] = 0.0  # all rows start equal: expand only the first
        history = torch.zeros(width, 0, dtype=torch.long)
        finished = torch.zeros(width, dtype=torch.bool)
        for _ in range(max_len):
            logits, state, _ = self.decoder(token, state, memory, mask)
            logp = torch.log_softmax(logits, -1)  # (K, V)
            logp[finished] = float("-inf")
            logp[finished, EOS_ID] = 0.0
            total = (scores.unsqueeze(1) + logp).view(-1)  # (K * V,)
            scores, flat = total.topk(width)
            row, token = flat // logp.shape[1], flat % logp.shape[1]
            state, history = state[row], torch.cat([history[row], token.unsqueeze(1)], 1)
            finished = finished[row] | (token == EOS_ID)
            if finished.all():
                break
        best = int(scores.argmax())
        ids = [int(i) for i in history[best]]
        return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids, float(scores[best])
