"""Export a user's seq2seq model (an encoder module and a decoder-step module) like ours.

The contract, the same graphs our own seq2seq models have (`export/seq2seq.py`):
- encoder `forward(chars: int64[B, S], lengths: int64[B])` -> `(memory float[B, S, M],
  state float[B, D])`;
- decoder step `forward(token: int64[B], state float[B, D], memory float[B, S, M],
  mask bool[B, S])` -> `(logits float[B, V], next_state float[B, D], attention float[B, S])`,
  V the output vocabulary's size.
Both vocabularies are characters whose first four symbols are `<pad>`, `<unk>`, `<s>`, `</s>`
(ids 0-3: the decoder starts from `<s>` and a sequence ends at `</s>`). A row's decode must not
depend on the padding of the others: the service encodes and decodes many inputs together.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.chars import BOS_ID, EOS_ID, CharVocabulary
from contract.manifest import GraphSpec
from export.driver import Exporter, Parity
from export.seq2seq import (
    INPUT_VOCAB_FILE,
    OUTPUT_VOCAB_FILE,
    char_preprocessing,
    export_graphs,
    graph_specs,
    onnx_greedy,
    pad_batch,
    torch_step_logits,
)
from export.user_module import ContractError, call_forward, describe, export_onnx

ENCODER = "(chars: int64[B, S], lengths: int64[B]) -> (memory [B, S, M], state [B, D])"
DECODER = (
    "(token: int64[B], state [B, D], memory [B, S, M], mask: bool[B, S]) -> "
    "(logits [B, V], next_state [B, D], attention [B, S])"
)


def char_vocabulary(symbols: Any, what: str) -> CharVocabulary:
    try:
        return CharVocabulary(tuple(symbols))
    except ValueError as error:
        raise ContractError(f"the {what} vocabulary: {error}, got {list(symbols)[:4]}") from None


def _check(value: Any, shape: list[int], what: str, floating: bool = True) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or list(value.shape) != shape:
        raise ContractError(f"expected {what} of shape {shape}, got {describe(value)}")
    if floating and not value.is_floating_point():
        raise ContractError(f"expected float {what}, got {describe(value)}")
    return value


class UserSeq2SeqExporter(Exporter):
    """The seq2seq task's exporter for a user's modules: contract, padding and decode parity."""

    checkpoint: dict[str, Any] = {"training": None}  # noqa: RUF012 (no training facts)

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        input_vocab: Any,
        output_vocab: Any,
        max_input_chars: int = 64,
        max_output_chars: int = 64,
    ) -> None:
        self.model = SimpleNamespace(encoder=encoder.eval(), decoder=decoder.eval())
        self.source = char_vocabulary(input_vocab, "input")
        self.target = char_vocabulary(output_vocab, "output")
        self.max_in, self.max_out = max_input_chars, max_output_chars
        rng = np.random.default_rng(0)
        self.batch = [
            rng.integers(4, len(self.source), size=n).tolist()
            for n in (5, 1, min(max_input_chars, 24), 9)
        ]
        self.state_size, self.memory_size = self._check_contract()

    def _run_encoder(self, ids: list[list[int]]) -> tuple[Any, ...]:
        chars, lengths = (torch.from_numpy(a) for a in pad_batch(ids))
        out = call_forward(self.model.encoder, (chars, lengths), ENCODER, "the encoder's ")
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise ContractError(
                f"expected the encoder to return (memory, state), got {describe(out)}"
            )
        return chars, lengths, *out

    def _check_contract(self) -> tuple[int, int]:
        """Run both modules on a batch of mixed lengths: kinds, shapes, and padding."""
        chars, lengths, memory, state = self._run_encoder(self.batch)
        b, s = chars.shape
        if not isinstance(memory, torch.Tensor) or memory.dim() != 3:
            raise ContractError(f"expected memory of shape [{b}, {s}, M], got {describe(memory)}")
        if not isinstance(state, torch.Tensor) or state.dim() != 2:
            raise ContractError(f"expected state of shape [{b}, D], got {describe(state)}")
        _check(memory, [b, s, memory.shape[2]], "memory")
        _check(state, [b, state.shape[1]], "state")
        mask = torch.arange(s).unsqueeze(0) < lengths.unsqueeze(1)
        token = torch.full((b,), BOS_ID, dtype=torch.long)
        out = call_forward(
            self.model.decoder, (token, state, memory, mask), DECODER, "the decoder's "
        )
        if not isinstance(out, tuple | list) or len(out) != 3:
            raise ContractError(
                "expected the decoder to return (logits, next_state, attention), got "
                + describe(out)
            )
        _check(out[0], [b, len(self.target)], "logits (one per output vocabulary symbol)")
        _check(out[1], list(state.shape), "next_state (the shape of state)")
        _check(out[2], [b, s], "attention")
        together = torch_step_logits(self.model, self.batch, 3)
        for row, ids in enumerate(self.batch):
            alone = torch_step_logits(self.model, [ids], 3)
            diff = max(
                float(np.abs(a[0] - t[row]).max()) for a, t in zip(alone, together, strict=True)
            )
            if diff > 1e-4:
                raise ContractError(
                    f"expected a row's decode not to depend on the padding of the batch, got "
                    f"logits differing by {diff:.3g} for an input of {len(ids)} characters padded "
                    f"to {s}; mask padded positions with `lengths` and `mask`"
                )
        return int(state.shape[1]), int(memory.shape[2])

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        export_onnx(self.model.decoder, lambda: export_graphs(self.model, folder))
        return graph_specs(self.state_size, self.memory_size, len(self.target))

    def parity(self, folder: Path) -> Parity:
        """A whole greedy decode of the batch: logits along PyTorch's path, and the outputs."""
        got, onnx_logits = onnx_greedy(folder, self.batch, self.max_out)
        reference = torch_step_logits(self.model, self.batch, len(onnx_logits))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, onnx_logits, strict=True))
        expected = []
        for row in range(len(self.batch)):
            ids = []
            for step in reference:
                token = int(step[row].argmax())
                if token == EOS_ID:
                    break
                ids.append(token)
            expected.append(ids)
        what = "onnxruntime's greedy decode differs from PyTorch's: logits"
        return Parity(diff, what=what, outputs_agree=got == expected)

    def write_files(self, folder: Path) -> list[str]:
        self.source.save(folder / INPUT_VOCAB_FILE)
        self.target.save(folder / OUTPUT_VOCAB_FILE)
        return [INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE]

    def manifest_parts(self) -> dict[str, Any]:
        return {
            "origin": "module",
            "preprocessing": char_preprocessing(self.max_in, self.max_out),
        }
