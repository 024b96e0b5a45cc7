"""Export a seq2seq model (an encoder module and a decoder-step module) as two ONNX graphs,
verify a whole greedy decode against PyTorch, and describe both in a manifest.

The contract, kept by ours (model_src.seq2seq) and a user's alike:
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

Ours (`Seq2SeqExporter.from_checkpoint`) read and write characters as they were trained: NFKC
and trimmed, the specials at ids 0-3 (contract.chars) and dropped from an output, published as
`characters` preprocessing; their held-out pairs join the parity batch and give the graphs'
exact match.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.chars import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharVocabulary
from contract.checkpoint import TextPairs
from contract.manifest import (
    CharPreprocessing,
    GraphSpec,
    Seq2SeqTokensPreprocessing,
    TensorSpec,
)
from contract.seq2seq_text import Seq2SeqText, char_text, joiner_of
from contract.text import HFEncoder, TextEncoder
from export.classifier import TextInput, make_encoder, save_text, text_preprocessing
from export.common import architecture, cpu_session, pad_ids, to_onnx
from export.driver import Exporter, Parity, Trained
from export.tokenization import TokenizerExamples, check_tokenizer
from export.user_module import ContractError, call_forward, describe, export_onnx

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE = "input_vocab.txt", "output_vocab.txt"
MAX_BEAM_WIDTH = 8  # ours: the widest beam the service offers
PARITY_HELDOUT = 64  # held-out texts in the parity batch
HELDOUT_METRIC = "test_heldout_locales_exact_match_onnx"
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


def graph_specs(state_size: int, memory_size: int, vocab_size: int) -> dict[str, GraphSpec]:
    memory = TensorSpec(name="memory", dtype="float32", shape=["batch", "sequence", memory_size])
    state = TensorSpec(name="state", dtype="float32", shape=["batch", state_size])
    return {
        "encoder": GraphSpec(
            file=ENCODER_FILE,
            inputs=[
                TensorSpec(name="chars", dtype="int64", shape=["batch", "sequence"]),
                TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
            ],
            outputs=[memory, state],
        ),
        "decoder": GraphSpec(
            file=DECODER_FILE,
            inputs=[
                TensorSpec(name="token", dtype="int64", shape=["batch"]),
                state,
                memory,
                TensorSpec(name="mask", dtype="bool", shape=["batch", "sequence"]),
            ],
            outputs=[
                TensorSpec(name="logits", dtype="float32", shape=["batch", vocab_size]),
                TensorSpec(name="next_state", dtype="float32", shape=["batch", state_size]),
                TensorSpec(name="attention", dtype="float32", shape=["batch", "sequence"]),
            ],
        ),
    }


def export_graphs(
    encoder: nn.Module,
    decoder: nn.Module,
    folder: Path,
    example: list[list[int]],
    specials: tuple[int, int],
) -> None:
    """Trace both graphs on a batch of two inputs of different lengths; `specials`: the
    padding and start ids."""
    pad_id, bos_id = specials
    chars, lengths = (torch.from_numpy(a) for a in pad_ids(example, pad_id))
    with torch.no_grad():
        memory, state = encoder(chars, lengths)
    mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    token = torch.full((len(example),), bos_id, dtype=torch.long)
    batch, seq = {0: "batch"}, {0: "batch", 1: "sequence"}
    to_onnx(
        encoder,
        (chars, lengths),
        folder / ENCODER_FILE,
        input_names=["chars", "lengths"],
        output_names=["memory", "state"],
        dynamic_axes={"chars": seq, "lengths": batch, "memory": seq, "state": batch},
    )
    to_onnx(
        decoder,
        (token, state, memory, mask),
        folder / DECODER_FILE,
        input_names=["token", "state", "memory", "mask"],
        output_names=["logits", "next_state", "attention"],
        dynamic_axes={
            "token": batch,
            "state": batch,
            "memory": seq,
            "mask": seq,
            "logits": batch,
            "next_state": batch,
            "attention": seq,
        },
    )


def onnx_greedy(
    folder: Path, ids: list[list[int]], max_len: int, specials: tuple[int, int, int]
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy decode with the two graphs: ids (without the end) and every step's logits (B, V).
    `specials`: the padding, start and end ids."""
    pad_id, bos_id, eos_id = specials
    encoder, decoder = cpu_session(folder / ENCODER_FILE), cpu_session(folder / DECODER_FILE)
    chars, lengths = pad_ids(ids, pad_id)
    memory, state = encoder.run(None, {"chars": chars, "lengths": lengths})
    mask = np.arange(chars.shape[1])[None, :] < lengths[:, None]
    token = np.full(len(ids), bos_id, np.int64)
    outputs: list[list[int]] = [[] for _ in ids]
    done = np.zeros(len(ids), bool)
    steps = []
    for _ in range(max_len):
        feed = {"token": token, "state": state, "memory": memory, "mask": mask}
        logits, state, _ = decoder.run(None, feed)
        steps.append(logits)
        token = logits.argmax(-1).astype(np.int64)
        for i in np.flatnonzero(~done):
            if token[i] == eos_id:
                done[i] = True
            else:
                outputs[i].append(int(token[i]))
        if done.all():
            break
    return outputs, steps


def torch_step_logits(
    encoder: nn.Module,
    decoder: nn.Module,
    ids: list[list[int]],
    steps: int,
    specials: tuple[int, int],
) -> list[np.ndarray]:
    """PyTorch's logits along its own greedy path, step by step; `specials`: the padding and
    start ids."""
    pad_id, bos_id = specials
    chars, lengths = (torch.from_numpy(a) for a in pad_ids(ids, pad_id))
    with torch.no_grad():
        memory, state = encoder(chars, lengths)
        mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        token = torch.full((len(ids),), bos_id, dtype=torch.long)
        out = []
        for _ in range(steps):
            logits, state, _ = decoder(token, state, memory, mask)
            out.append(logits.numpy())
            token = logits.argmax(-1)
    return out


def greedy_ids(step_logits: list[np.ndarray], eos_id: int) -> list[list[int]]:
    """The greedy outputs (without the end) that a path of step logits (B, V) takes."""
    outputs = []
    for row in range(step_logits[0].shape[0]):
        ids = []
        for step in step_logits:
            token = int(step[row].argmax())
            if token == eos_id:
                break
            ids.append(token)
        outputs.append(ids)
    return outputs


def char_preprocessing(max_in: int, max_out: int) -> CharPreprocessing:
    """Our characters in and out: the vocabulary files and the special ids every one shares."""
    return CharPreprocessing(
        input_vocab_file=INPUT_VOCAB_FILE,
        output_vocab_file=OUTPUT_VOCAB_FILE,
        max_input_chars=max_in,
        max_output_chars=max_out,
        details={
            "normalization": "NFKC",
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
        },
    )


def trained_text(source: TextInput, target: TextInput) -> Seq2SeqText:
    """Our characters, read and written as the service reads a `characters` manifest."""
    try:
        vocabularies = CharVocabulary(source.vocab), CharVocabulary(target.vocab)
    except ValueError as error:
        raise ContractError(f"our character vocabularies: {error}") from None
    return char_text(*vocabularies, source.max_tokens, target.max_tokens)


def module_text(source: TextInput, target: TextInput, tokens: Seq2SeqTokens) -> Seq2SeqText:
    """A user's text sides, with the special tokens they named."""
    source_encoder = seq2seq_side(source, tokens, "input")
    target_encoder = seq2seq_side(target, tokens, "output")
    input_eos = None
    if tokens.append_eos:
        input_eos = special_id(source_encoder, tokens.eos, "eos", "input")
    return Seq2SeqText(
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


class Seq2SeqExporter(Exporter):
    """The seq2seq task's exporter, for a user's modules and ours: contract, padding and
    greedy-decode parity."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        source: TextInput,
        target: TextInput,
        tokens: Seq2SeqTokens = Seq2SeqTokens(),
        tokenizer_examples: TokenizerExamples = (),
        *,
        trained: Trained | None = None,
        heldout: TextPairs | None = None,
    ) -> None:
        """`trained`: ours (from_checkpoint), whose text is our characters (contract.chars:
        the specials are the tokens' defaults, at ids 0-3). `heldout`: pairs the parity batch
        starts with and the graphs' exact match is measured on."""
        self.encoder, self.decoder = encoder.eval(), decoder.eval()
        self.source_input, self.target_input = source, target
        self.trained, self.heldout = trained, heldout
        if trained:
            self.text = trained_text(source, target)
        else:
            self.text = module_text(source, target, tokens)
        check_tokenizer(self.text, tokenizer_examples, "input ")
        self.specials = (self.text.pad_id, self.text.bos_id, self.text.eos_id)
        self.batch = self._random_batch()
        self.state_size, self.memory_size = self._check_contract()

    @classmethod
    def from_checkpoint(cls, path: Path) -> Seq2SeqExporter:
        """Our trained model, through the constructor a user's modules go through, with the
        checkpoint's facts: training, architecture, held-out pairs."""
        from model_src.train_seq2seq import TRAINER

        model, checkpoint = TRAINER.load_checkpoint(path)
        cfg = checkpoint.config
        details = {
            "decoder_hidden_size": cfg["decoder_hidden_size"],
            "output_embedding_dim": cfg["output_embedding_dim"],
            "state_size": model.config.state_size,
            "memory_size": int(cfg["hidden_size"]) * (2 if cfg["bidirectional"] else 1),
            "max_beam_width": MAX_BEAM_WIDTH,
        }
        trained = Trained(architecture(cfg, details=details), checkpoint.training)
        source = TextInput("chars", vocab=tuple(checkpoint.input_vocab),
                           max_tokens=checkpoint.max_input_chars)  # fmt: skip
        target = TextInput("chars", vocab=tuple(checkpoint.output_vocab),
                           max_tokens=checkpoint.max_output_chars)  # fmt: skip
        return cls(
            model.encoder, model.decoder, source, target, trained=trained,
            heldout=checkpoint.heldout,
        )  # fmt: skip

    def _random_batch(self) -> list[list[int]]:
        """Random ids of mixed lengths up to the longest input served, without padding (and
        ending as inputs end)."""
        rng = np.random.default_rng(0)
        special = {self.text.pad_id, self.text.input_eos_id}
        real = [i for i in range(self.text.source.vocab_size) if i not in special]
        end = [] if self.text.input_eos_id is None else [self.text.input_eos_id]
        room = self.text.max_input - len(end)
        if not real or room < 1:
            raise ContractError("expected an input vocabulary and a limit with room for a token")
        return [rng.choice(real, size=min(n, room)).tolist() + end for n in (5, 1, room, 9)]

    def _parity_batch(self) -> list[list[int]]:
        """Held-out texts (ours), then the random batch: a whole greedy decode of each."""
        texts = self.heldout.texts[:PARITY_HELDOUT] if self.heldout else []
        heldout = [self.text.encode(t)[1][: self.text.max_input] for t in texts]
        return [ids for ids in heldout if ids] + self.batch

    def _run_encoder(self, ids: list[list[int]]) -> tuple[Any, ...]:
        chars, lengths = (torch.from_numpy(a) for a in pad_ids(ids, self.text.pad_id))
        out = call_forward(self.encoder, (chars, lengths), ENCODER, "the encoder's ")
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise ContractError(
                f"expected the encoder to return (memory, state), got {describe(out)}"
            )
        return chars, lengths, *out

    def _step_logits(self, ids: list[list[int]], steps: int) -> list[np.ndarray]:
        return torch_step_logits(self.encoder, self.decoder, ids, steps, self.specials[:2])

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
        out = call_forward(self.decoder, (token, state, memory, mask), DECODER, "the decoder's ")
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
        example = [self.batch[0][:3], self.batch[0][:2]]
        export_onnx(
            self.decoder,
            lambda: export_graphs(self.encoder, self.decoder, folder, example, self.specials[:2]),
        )
        return graph_specs(self.state_size, self.memory_size, self.text.target.vocab_size)

    def parity(self, folder: Path) -> Parity:
        """A whole greedy decode of the parity batch: the outputs, and the logits along
        PyTorch's path at the steps each row is decoded (up to its end: the steps a batch runs
        on after a row has ended are never served)."""
        ids = self._parity_batch()
        got, onnx_logits = onnx_greedy(folder, ids, self.text.max_output, self.specials)
        reference = self._step_logits(ids, len(onnx_logits))
        expected = greedy_ids(reference, self.text.eos_id)
        diff = max(
            float(np.abs(reference[step][row] - onnx_logits[step][row]).max())
            for row, out in enumerate(expected)
            for step in range(min(len(out) + 1, len(reference)))
        )
        what = "onnxruntime's greedy decode differs from PyTorch's: logits"
        return Parity(diff, what=what, outputs_agree=got == expected)

    def exact_match(self, folder: Path, texts: list[str], targets: list[str]) -> float:
        """The share of texts the graphs decode (greedily, as the service does) to its target."""
        correct = 0
        for start in range(0, len(texts), 256):
            ids = [self.text.encode(t)[1] for t in texts[start : start + 256]]
            outputs, _ = onnx_greedy(folder, ids, self.text.max_output, self.specials)
            golds = targets[start : start + 256]
            correct += sum(self.text.decode(o) == g for o, g in zip(outputs, golds, strict=True))
        return correct / len(texts)

    def write_files(self, folder: Path) -> list[str]:
        if self.trained:
            CharVocabulary(self.source_input.vocab).save(folder / INPUT_VOCAB_FILE)
            CharVocabulary(self.target_input.vocab).save(folder / OUTPUT_VOCAB_FILE)
            return [INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE]
        return [
            save_text(self.text.source, folder, "input_"),
            save_text(self.text.target, folder, "output_"),
        ]

    def extra_metrics(self, folder: Path) -> dict[str, float]:
        if not self.heldout or not self.heldout.texts:
            return {}
        heldout = self.heldout
        match = self.exact_match(folder, heldout.texts, heldout.targets)
        return {HELDOUT_METRIC: round(match, 4)}

    def manifest_parts(self) -> dict[str, Any]:
        if self.trained:
            return {
                **self.provenance(),
                "preprocessing": char_preprocessing(self.text.max_input, self.text.max_output),
            }
        return {
            **self.provenance(),
            "preprocessing": Seq2SeqTokensPreprocessing(
                input=text_preprocessing(self.text.source, self.source_input, "input_"),
                output=text_preprocessing(self.text.target, self.target_input, "output_"),
                bos_id=self.text.bos_id,
                eos_id=self.text.eos_id,
                input_eos_id=self.text.input_eos_id,
            ),
        }
