"""Export a user's seq2seq model (an encoder module and a decoder-step module) like ours.

The contract, the same graphs our own seq2seq models have (`export/seq2seq.py`):
- encoder `forward(chars: int64[B, S], lengths: int64[B])` -> `(memory float[B, S, M],
  state float[B, D])`;
- decoder step `forward(token: int64[B], state float[B, D], memory float[B, S, M],
  mask bool[B, S])` -> `(logits float[B, V], next_state float[B, D], attention float[B, S])`,
  V the output vocabulary's size.
Text in and out goes through the user's own tokenisation (characters, words, a regex or a
tokenizer.json, as for a classifier) and vocabularies, with the user's own special tokens
named: padding, unknown (optional), start and end; the decoder starts from the start token and
a sequence ends at the end token. A row's decode must not depend on the padding of the others:
the service encodes and decodes many inputs together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.manifest import GraphSpec, Seq2SeqTokensPreprocessing
from contract.seq2seq_text import Seq2SeqText, joiner_of
from contract.text import HFEncoder, TextEncoder
from export.classifier import TextInput, make_encoder, save_text, text_preprocessing
from export.driver import Exporter, Parity
from export.seq2seq import export_graphs, graph_specs, onnx_greedy, pad_batch, torch_step_logits
from export.tokenization import TokenizerExamples, check_tokenizer
from export.user_module import ContractError, call_forward, describe, export_onnx

ENCODER = "(chars: int64[B, S], lengths: int64[B]) -> (memory [B, S, M], state [B, D])"
DECODER = (
    "(token: int64[B], state [B, D], memory [B, S, M], mask: bool[B, S]) -> "
    "(logits [B, V], next_state [B, D], attention [B, S])"
)


@dataclass(frozen=True)
class Seq2SeqTokens:
    """The user's special tokens, by name in their vocabularies (the PyTorch tutorial's: pad
    and start "SOS", end "EOS", no unknown token, every input ending with "EOS")."""

    pad: str = "<pad>"
    unk: str | None = "<unk>"  # the default may be absent: then unknown tokens are refused
    bos: str = "<s>"
    eos: str = "</s>"
    append_eos: bool = False  # end every input with `eos`


def seq2seq_side(text: TextInput, tokens: Seq2SeqTokens, what: str) -> TextEncoder:
    """One side's encoder; a default unknown token the vocabulary lacks means none."""
    vocab = set(text.vocab)
    unk = tokens.unk
    if unk == Seq2SeqTokens.unk and text.vocab and unk not in vocab:
        unk = None
    try:
        return make_encoder(replace(text, pad_token=tokens.pad, unk_token=unk))
    except ContractError as error:
        raise ContractError(f"the {what} side: {error}") from None


def special_id(encoder: TextEncoder, token: str, what: str, side: str) -> int:
    """The id of a special token named by the user, or a refusal saying which option names it."""
    i = _id_of(encoder, token)
    if i is None:
        raise ContractError(
            f"the {what} token {token!r} is not in the {side} vocabulary; name it with "
            f"--{what}-token"
        )
    return i


def _id_of(encoder: TextEncoder, token: str) -> int | None:
    if isinstance(encoder, HFEncoder):
        return encoder.tokenizer.token_to_id(token)
    try:
        return encoder.vocab.id_of(token, "")  # type: ignore[attr-defined]
    except ValueError:
        return None


def _check(value: Any, shape: list[int], what: str, floating: bool = True) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or list(value.shape) != shape:
        raise ContractError(f"expected {what} of shape {shape}, got {describe(value)}")
    if floating and not value.is_floating_point():
        raise ContractError(f"expected float {what}, got {describe(value)}")
    return value


class UserSeq2SeqExporter(Exporter):
    """The seq2seq task's exporter for a user's modules: contract, padding and decode parity."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        source: TextInput,
        target: TextInput,
        tokens: Seq2SeqTokens = Seq2SeqTokens(),
        tokenizer_examples: TokenizerExamples = (),
    ) -> None:
        self.model = SimpleNamespace(encoder=encoder.eval(), decoder=decoder.eval())
        self.source_input, self.target_input = source, target
        source_encoder = seq2seq_side(source, tokens, "input")
        target_encoder = seq2seq_side(target, tokens, "output")
        input_eos = None
        if tokens.append_eos:
            input_eos = special_id(source_encoder, tokens.eos, "eos", "input")
        self.text = Seq2SeqText(
            source_encoder,
            target_encoder,
            special_id(target_encoder, tokens.bos, "bos", "output"),
            special_id(target_encoder, tokens.eos, "eos", "output"),
            input_eos,
            source.max_tokens,
            target.max_tokens,
            "tokens",
            joiner_of(text_preprocessing(target_encoder, target)),
        )
        check_tokenizer(self.text, tokenizer_examples, "input ")
        self.specials = (source_encoder.pad_id, self.text.bos_id, self.text.eos_id)
        self.batch = self._parity_batch()
        self.state_size, self.memory_size = self._check_contract()

    def _parity_batch(self) -> list[list[int]]:
        """Random ids of mixed lengths, without padding (and ending as inputs end)."""
        rng = np.random.default_rng(0)
        special = {self.text.pad_id, self.text.input_eos_id}
        real = [i for i in range(self.text.source.vocab_size) if i not in special]
        end = [] if self.text.input_eos_id is None else [self.text.input_eos_id]
        room = self.text.max_input - len(end)
        if not real or room < 1:
            raise ContractError("expected an input vocabulary and a limit with room for a token")
        return [
            rng.choice(real, size=min(n, room)).tolist() + end for n in (5, 1, min(room, 24), 9)
        ]

    def _run_encoder(self, ids: list[list[int]]) -> tuple[Any, ...]:
        chars, lengths = (torch.from_numpy(a) for a in pad_batch(ids, self.text.pad_id))
        out = call_forward(self.model.encoder, (chars, lengths), ENCODER, "the encoder's ")
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise ContractError(
                f"expected the encoder to return (memory, state), got {describe(out)}"
            )
        return chars, lengths, *out

    def _step_logits(self, ids: list[list[int]], steps: int) -> list[np.ndarray]:
        pad, bos, _ = self.specials
        return torch_step_logits(self.model, ids, steps, pad, bos)  # type: ignore[arg-type]

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
        token = torch.full((b,), self.text.bos_id, dtype=torch.long)
        out = call_forward(
            self.model.decoder, (token, state, memory, mask), DECODER, "the decoder's "
        )
        if not isinstance(out, tuple | list) or len(out) != 3:
            raise ContractError(
                "expected the decoder to return (logits, next_state, attention), got "
                + describe(out)
            )
        vocab = self.text.target.vocab_size
        _check(out[0], [b, vocab], "logits (one per output vocabulary token)")
        _check(out[1], list(state.shape), "next_state (the shape of state)")
        _check(out[2], [b, s], "attention")
        together = self._step_logits(self.batch, 3)
        for row, ids in enumerate(self.batch):
            alone = self._step_logits([ids], 3)
            diff = max(
                float(np.abs(a[0] - t[row]).max()) for a, t in zip(alone, together, strict=True)
            )
            if diff > 1e-4:
                raise ContractError(
                    f"expected a row's decode not to depend on the padding of the batch, got "
                    f"logits differing by {diff:.3g} for an input of {len(ids)} tokens padded "
                    f"to {s}; mask padded positions with `lengths` and `mask`"
                )
        return int(state.shape[1]), int(memory.shape[2])

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        pad, bos, _ = self.specials
        example = [self.batch[0][:3], self.batch[0][:2]]
        export_onnx(
            self.model.decoder,
            lambda: export_graphs(self.model, folder, example, pad, bos),  # type: ignore[arg-type]
        )
        return graph_specs(self.state_size, self.memory_size, self.text.target.vocab_size)

    def parity(self, folder: Path) -> Parity:
        """A whole greedy decode of the batch: logits along PyTorch's path, and the outputs."""
        got, onnx_logits = onnx_greedy(folder, self.batch, self.text.max_output, self.specials)
        reference = self._step_logits(self.batch, len(onnx_logits))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, onnx_logits, strict=True))
        expected = []
        for row in range(len(self.batch)):
            ids = []
            for step in reference:
                token = int(step[row].argmax())
                if token == self.text.eos_id:
                    break
                ids.append(token)
            expected.append(ids)
        what = "onnxruntime's greedy decode differs from PyTorch's: logits"
        return Parity(diff, what=what, outputs_agree=got == expected)

    def write_files(self, folder: Path) -> list[str]:
        return [
            save_text(self.text.source, folder, "input_"),
            save_text(self.text.target, folder, "output_"),
        ]

    def manifest_parts(self) -> dict[str, Any]:
        return {
            "origin": "module",
            "preprocessing": Seq2SeqTokensPreprocessing(
                input=text_preprocessing(self.text.source, self.source_input, "input_"),
                output=text_preprocessing(self.text.target, self.target_input, "output_"),
                bos_id=self.text.bos_id,
                eos_id=self.text.eos_id,
                input_eos_id=self.text.input_eos_id,
            ),
        }
