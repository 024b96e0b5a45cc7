"""The classify task's exporter: any nn.Module that keeps the classify contract, ours included.

The contract: `forward(tokens: int64[B, T], lengths: int64[B])` returns logits `[B, C]`, or
`(logits, attention)` with attention `[B, T]`; tokens are padded with the vocabulary's own
padding id, and a sequence's output must not depend on the padding after it (the service
batches texts of different lengths together). The graph gives softmax(logits), so clients get
probabilities; a module that already returns probabilities says so (`outputs="probabilities"`),
and one that returns them without saying so is refused rather than softmaxed twice.

Our TextClassifier keeps the same contract, so `ClassifierExporter.from_checkpoint` exports it
through the same checks as a user's module, adding only what its checkpoint knows: the
architecture, the training facts and the held-out split (parity sentences, int8's accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.manifest import (
    CharTokensPreprocessing,
    GraphSpec,
    TensorSpec,
    TextPreprocessing,
    TokenizerPreprocessing,
)
from contract.text import CharEncoder, HFEncoder, TextEncoder, TokenVocabulary, WordEncoder
from contract.words import PAD, UNK
from export.common import OPSET, architecture, cpu_session, pad_ids
from export.driver import Exporter, Parity, Quality, Trained
from export.tokenization import TokenizerExamples, check_tokenizer, regex_tokenizer
from export.user_module import ContractError, call_forward, describe, export_onnx

GRAPH_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
SIGNATURE = (
    "(tokens: int64[B, T], lengths: int64[B]) -> logits [B, C] or (logits, attention [B, T])"
)
INPUTS = [
    TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"]),
    TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
]


@dataclass(frozen=True)
class TextInput:
    """How the user's model reads text: a tokeniser and the vocabulary it was trained with."""

    tokenizer: str = "words"  # "words", "chars", or a path to a Hugging Face tokenizer.json
    tokenizer_regex: str | None = None  # instead: tokens are re.findall(regex), in `vocab`
    vocab: tuple[str, ...] = ()  # tokens in id order (words, chars)
    pad_token: str = "<pad>"
    unk_token: str | None = "<unk>"  # None: none (a seq2seq's input may lack one)
    lowercase: bool = False
    max_tokens: int = 256


def make_encoder(text: TextInput) -> TextEncoder:
    """The encoder the service will use, built from the user's vocabulary or tokenizer."""
    if text.tokenizer_regex is not None:
        if not text.vocab:
            raise ContractError("--tokenizer-regex needs a vocabulary (--vocab)")
        tokenizer = regex_tokenizer(
            text.tokenizer_regex, text.vocab, text.unk_token, text.lowercase
        )
        return _with_padding(HFEncoder(tokenizer, pad_id=0), text.pad_token, "the vocabulary")
    if text.tokenizer in ("words", "chars"):
        if not text.vocab:
            raise ContractError(f"--tokenizer {text.tokenizer} needs a vocabulary (--vocab)")
        try:
            vocab = TokenVocabulary.named(text.vocab, text.pad_token, text.unk_token)
        except ValueError as error:
            raise ContractError(str(error)) from None
        kind = WordEncoder if text.tokenizer == "words" else CharEncoder
        return kind(vocab, text.lowercase)
    path = Path(text.tokenizer)
    if not path.is_file():
        raise ContractError(f"--tokenizer is words, chars or a tokenizer.json file, got {path}")
    try:
        encoder = HFEncoder.from_file(path, pad_id=0)
    except Exception as error:
        raise ContractError(f"{path} is not a tokenizers tokenizer.json: {error}") from None
    return _with_padding(encoder, text.pad_token, f"{path.name}'s vocabulary")


def _with_padding(encoder: HFEncoder, pad_token: str, where: str) -> HFEncoder:
    padding = encoder.tokenizer.padding  # the tokenizer's own padding setting, if it has one
    pad_id = padding["pad_id"] if padding else encoder.tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ContractError(
            f"the padding token {pad_token!r} is not in {where}; name it with --pad-token"
        )
    encoder.pad_id = pad_id
    return encoder


OUTPUTS = ("logits", "probabilities")


class ProbabilityHead(nn.Module):
    """What is exported: softmax over the module's logits (or its probabilities as they are),
    and the attention when it has one, so clients get probabilities."""

    def __init__(self, module: nn.Module, outputs: str = "logits") -> None:
        super().__init__()
        self.module, self.softmax = module, outputs == "logits"

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> Any:
        out = self.module(tokens, lengths)
        first = out[0] if isinstance(out, tuple | list) else out
        scores = torch.softmax(first.float(), dim=-1) if self.softmax else first.float()
        return (scores, *out[1:]) if isinstance(out, tuple | list) else scores


def check_outputs_kind(scores: torch.Tensor, outputs: str) -> None:
    """Rows that are non-negative and sum to 1 are probabilities: softmaxed again, 0.729 would
    be served as 0.612. Refuse them unless the user said so, and refuse the claim if false."""
    if outputs not in OUTPUTS:
        raise ContractError(f"expected outputs to be one of {OUTPUTS}, got {outputs!r}")
    sums = scores.sum(-1)
    probabilities = bool((scores >= 0).all()) and bool(((sums - 1).abs() <= 1e-4).all())
    if outputs == "logits" and probabilities:
        row = scores[0]
        again = torch.softmax(row, -1)
        best = int(row.argmax())
        raise ContractError(
            f"every row the module returned on the parity batch is non-negative and sums to 1: "
            f"these look like probabilities, which the graph would softmax again "
            f"({float(row[best]):.3f} would be served as {float(again[best]):.3f}); if they are, "
            'export with --outputs probabilities (Python: outputs="probabilities") and they '
            "are served as they are"
        )
    if outputs == "probabilities" and not probabilities:
        worst = int((sums - 1).abs().argmax())
        raise ContractError(
            "expected probabilities (--outputs probabilities): rows of non-negative values "
            f"summing to 1, got row {worst} summing to {float(sums[worst]):.4g} with values "
            f"{[round(float(v), 4) for v in scores[worst]]}"
        )


def read_eval_data(path: Path, labels: list[str]) -> list[tuple[str, int]]:
    """Labelled texts: a TSV whose header names a `label` and a `sentence` (or `text`) column,
    in any order (SST-2's dev.tsv as GLUE ships it), or `label<TAB>text` lines without a
    header; a label is a name from --labels or its index."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].lower().split("\t") if lines else []
    text_column = next((c for c in ("sentence", "text") if c in header), None)
    if "label" in header and text_column:
        label_at, text_at = header.index("label"), header.index(text_column)
        cells = [(n, line.split("\t")) for n, line in enumerate(lines[1:], 2) if line.strip()]
        pairs = [(n, c[label_at], c[text_at]) for n, c in cells if len(c) == len(header)]
        if len(pairs) != len(cells):
            number = next(n for n, c in cells if len(c) != len(header))
            raise ContractError(f"{path}:{number}: expected {len(header)} tab-separated columns")
    else:
        pairs = []
        for number, line in enumerate(lines, 1):
            label, sep, text = line.partition("\t")
            if line.strip() and not sep:
                raise ContractError(f"{path}:{number}: expected label<TAB>text, got {line[:60]!r}")
            if line.strip():
                pairs.append((number, label, text))
    rows = []
    for number, label, text in pairs:
        if label in labels:
            rows.append((text, labels.index(label)))
        elif label.isdigit() and int(label) < len(labels):
            rows.append((text, int(label)))
        else:
            raise ContractError(f"{path}:{number}: label {label!r} is not one of {labels}")
    if not rows:
        raise ContractError(f"{path} holds no examples")
    return rows


class ClassifierExporter(Exporter):
    """The classify task's exporter: contract, padding and parity checks, int8 by accuracy."""

    quantizable = True

    def __init__(
        self,
        module: nn.Module,
        text: TextInput,
        labels: list[str],
        eval_data: list[tuple[str, int]] | None = None,
        outputs: str = "logits",
        tokenizer_examples: TokenizerExamples = (),
        *,
        eval_split: str = "eval",
        trained: Trained | None = None,
    ) -> None:
        """`eval_split`: the evaluation data's name in metrics (int8's `{name}_accuracy`)."""
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ContractError(f"expected two or more distinct labels, got {labels}")
        self.trained, self.eval_split = trained, eval_split
        self.module = module.eval()
        self.outputs = outputs
        self.text = text
        self.labels = labels
        self.encoder = make_encoder(text)
        check_tokenizer(self.encoder, tokenizer_examples)
        self.eval_data = eval_data
        self.batch = self._parity_batch()
        self.has_attention = self._check_contract()

    @classmethod
    def from_checkpoint(cls, path: Path) -> ClassifierExporter:
        """Our trained model as the module: word tokens in its vocabulary, and its held-out
        split as the evaluation data (parity on real sentences, int8's accuracy)."""
        from model_src.train import TRAINER

        model, checkpoint = TRAINER.load_checkpoint(path)
        text = TextInput(
            tokenizer="words",
            vocab=tuple(checkpoint.vocab),
            pad_token=PAD,
            unk_token=UNK,
            lowercase=checkpoint.lowercase,
            max_tokens=checkpoint.max_tokens,
        )
        heldout = checkpoint.heldout
        trained = Trained(architecture(checkpoint.config), checkpoint.training)
        eval_data = list(zip(heldout.texts, heldout.labels, strict=True))
        return cls(
            model, text, checkpoint.labels, eval_data, eval_split=heldout.split, trained=trained
        )

    def _parity_batch(self) -> list[list[int]]:
        """Mixed lengths in no order: texts of the evaluation data, random ids, one token."""
        ids = []
        for text, _ in (self.eval_data or [])[:24]:
            encoded = self.encoder.encode(text)[1][: self.text.max_tokens]
            if encoded:
                ids.append(encoded)
        rng = np.random.default_rng(0)
        real = [i for i in range(self.encoder.vocab_size) if i != self.encoder.pad_id]
        for n in (7, 1, min(self.text.max_tokens, 40), 3, 12):
            ids.append(rng.choice(real, size=min(n, self.text.max_tokens)).tolist())
        return ids

    def _check_contract(self) -> bool:
        """Run the module on the parity batch: its outputs' kinds and shapes, and padding."""
        tokens, lengths = self._tensors(self.batch)
        out = call_forward(self.module, (tokens, lengths), SIGNATURE)
        logits, attention = self._split(out, *tokens.shape)
        check_outputs_kind(logits, self.outputs)
        for row, ids in enumerate(self.batch):
            alone = self._split(
                call_forward(self.module, self._tensors([ids]), SIGNATURE), 1, len(ids)
            )
            diff = float((alone[0] - logits[row]).abs().max())
            if diff > 1e-4:
                raise ContractError(
                    f"expected a sequence's logits not to depend on the padding after it (the "
                    f"service batches texts of different lengths), got a difference of {diff:.3g} "
                    f"for a sequence of {len(ids)} tokens padded to {tokens.shape[1]}; mask padded "
                    "positions using `lengths`"
                )
        return attention is not None

    def _split(self, out: Any, batch: int, steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        classes = len(self.labels)
        if isinstance(out, tuple | list) and len(out) in (1, 2):
            logits, attention = out[0], (out[1] if len(out) == 2 else None)
        else:
            logits, attention = out, None
        if not isinstance(logits, torch.Tensor) or (
            attention is not None and not isinstance(attention, torch.Tensor)
        ):
            raise ContractError(
                f"expected logits [B, C] or (logits [B, C], attention [B, T]), got {describe(out)}"
            )
        if not logits.is_floating_point():
            raise ContractError(f"expected float logits, got {describe(logits)}")
        if list(logits.shape) != [batch, classes]:
            raise ContractError(
                f"expected logits of shape [{batch}, {classes}] (batch, one per label of "
                f"{self.labels}), got {describe(logits)}"
            )
        if attention is not None and (
            list(attention.shape) != [batch, steps] or not attention.is_floating_point()
        ):
            raise ContractError(
                f"expected float attention of shape [{batch}, {steps}] (batch, tokens), "
                f"got {describe(attention)}"
            )
        return logits.float(), attention

    def _tensors(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, lengths = pad_ids(ids, self.encoder.pad_id)
        return torch.from_numpy(tokens), torch.from_numpy(lengths)

    @property
    def output_names(self) -> list[str]:
        return ["probabilities", "attention"][: 1 + self.has_attention]

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        example = self._tensors([self.batch[0][:5] or [0], self.batch[-1][:3] or [0]])
        axes = {
            "tokens": {0: "batch", 1: "sequence"},
            "lengths": {0: "batch"},
            "probabilities": {0: "batch"},
            "attention": {0: "batch", 1: "sequence"},
        }
        export_onnx(
            self.module,
            lambda: torch.onnx.export(
                ProbabilityHead(self.module, self.outputs).eval(),
                example,
                str(folder / GRAPH_FILE),
                dynamo=False,
                opset_version=OPSET,
                input_names=[t.name for t in INPUTS],
                output_names=self.output_names,
                dynamic_axes={
                    k: v for k, v in axes.items() if k in [*self.output_names, "tokens", "lengths"]
                },
            ),
        )
        outputs = [
            TensorSpec(name="probabilities", dtype="float32", shape=["batch", len(self.labels)])
        ]
        if self.has_attention:
            outputs.append(
                TensorSpec(name="attention", dtype="float32", shape=["batch", "sequence"])
            )
        return {"model": GraphSpec(file=GRAPH_FILE, inputs=INPUTS, outputs=outputs)}

    def parity(self, folder: Path) -> Parity:
        """softmax(PyTorch logits) and attention against the graph, on the mixed-length batch."""
        tokens, lengths = self._tensors(self.batch)
        with torch.no_grad():
            expected = ProbabilityHead(self.module, self.outputs)(tokens, lengths)
        expected = expected if isinstance(expected, tuple | list) else (expected,)
        try:
            got = cpu_session(folder / GRAPH_FILE).run(
                self.output_names, {"tokens": tokens.numpy(), "lengths": lengths.numpy()}
            )
        except Exception as error:
            raise ContractError(
                f"the exported graph fails on a batch of {len(self.batch)} sequences of lengths "
                f"{lengths.tolist()} (exported with 2): {type(error).__name__}: "
                f"{str(error).splitlines()[0]}; does forward turn a tensor's size into a Python "
                "number (the exporter then keeps it as a constant)?"
            ) from None
        diff = max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))
        return Parity(diff, what="onnxruntime differs from PyTorch on a mixed-length batch")

    def quality(self, folder: Path) -> Quality:
        if not self.eval_data:
            raise ContractError("--quantize int8 needs --eval-data to check the accuracy it keeps")
        session, correct = cpu_session(folder / GRAPH_FILE), 0
        for start in range(0, len(self.eval_data), 64):
            rows = self.eval_data[start : start + 64]
            ids = [
                self.encoder.encode(t)[1][: self.text.max_tokens] or [self.encoder.pad_id]
                for t, _ in rows
            ]
            tokens, lengths = pad_ids(ids, self.encoder.pad_id)
            (probabilities,) = session.run(
                ["probabilities"], {"tokens": tokens, "lengths": lengths}
            )
            correct += int((probabilities.argmax(-1) == np.array([y for _, y in rows])).sum())
        return Quality(f"{self.eval_split}_accuracy", correct / len(self.eval_data))

    def write_files(self, folder: Path) -> list[str]:
        return [save_text(self.encoder, folder)]

    def manifest_parts(self) -> dict[str, Any]:
        return {
            **self.provenance(),
            "preprocessing": text_preprocessing(self.encoder, self.text),
            "labels": self.labels,
        }


def text_file(encoder: TextEncoder, prefix: str = "") -> str:
    """The file that holds an encoder's vocabulary: a tokenizer.json, or one token a line."""
    return prefix + (TOKENIZER_FILE if isinstance(encoder, HFEncoder) else VOCAB_FILE)


def save_text(encoder: TextEncoder, folder: Path, prefix: str = "") -> str:
    name = text_file(encoder, prefix)
    if isinstance(encoder, HFEncoder):
        encoder.tokenizer.save(str(folder / name))
    else:
        encoder.vocab.save(folder / name)  # type: ignore[attr-defined]
    return name


def text_preprocessing(encoder: TextEncoder, text: TextInput, prefix: str = "") -> Any:
    """The manifest's description of how text becomes ids, as the service will redo it."""
    name = text_file(encoder, prefix)
    if isinstance(encoder, HFEncoder):
        return TokenizerPreprocessing(
            tokenizer_file=name,
            vocab_size=encoder.vocab_size,
            pad_id=encoder.pad_id,
            max_tokens=text.max_tokens,
        )
    kind = CharTokensPreprocessing if text.tokenizer == "chars" else TextPreprocessing
    vocab = encoder.vocab  # type: ignore[attr-defined]
    return kind(
        lowercase=text.lowercase,
        vocab_file=name,
        vocab_size=len(vocab),
        pad_id=vocab.pad_id,
        unk_id=vocab.unk_id,
        max_tokens=text.max_tokens,
    )
