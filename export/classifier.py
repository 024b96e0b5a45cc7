"""Export a trained text classifier: one graph (probabilities and attention), its vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.manifest import GraphSpec, TensorSpec, TextPreprocessing
from contract.words import PAD_ID, Vocabulary, tokenize
from export.common import architecture, cpu_session, pad_ids, to_onnx
from export.driver import Exporter, Parity, Quality
from model_src.classifier import ProbabilityHead, TextClassifier

GRAPH_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
INPUTS = [
    TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"]),
    TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
]


def pad_batch(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    return pad_ids(ids, PAD_ID)


def parity_batch(vocab: Vocabulary, samples: list[str], max_tokens: int) -> list[list[int]]:
    """Mixed lengths from real sentences, plus a one-token and a full-length sequence."""
    rng = np.random.default_rng(0)
    ids = [vocab.encode(tokenize(s))[:max_tokens] for s in samples if tokenize(s)]
    ids += [
        [int(rng.integers(2, len(vocab)))],
        rng.integers(0, len(vocab), size=min(max_tokens, 96)).tolist(),
    ]
    return ids


def export_graph(model: TextClassifier, path: Path) -> None:
    tokens, lengths = pad_batch([[2, 3, 4], [5, 6]])
    to_onnx(
        ProbabilityHead(model).eval(),
        (torch.from_numpy(tokens), torch.from_numpy(lengths)),
        path,
        input_names=[t.name for t in INPUTS],
        output_names=["probabilities", "attention"],
        dynamic_axes={
            "tokens": {0: "batch", 1: "sequence"},
            "lengths": {0: "batch"},
            "probabilities": {0: "batch"},
            "attention": {0: "batch", 1: "sequence"},
        },
    )


def max_abs_diff(model: TextClassifier, graph: Path, ids: list[list[int]]) -> float:
    """Largest difference between PyTorch and onnxruntime over probabilities and attention."""
    tokens, lengths = pad_batch(ids)
    with torch.no_grad():
        expected = ProbabilityHead(model).eval()(
            torch.from_numpy(tokens), torch.from_numpy(lengths)
        )
    got = cpu_session(graph).run(None, {"tokens": tokens, "lengths": lengths})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


def accuracy(graph: Path, ids: list[list[int]], labels: np.ndarray, batch: int = 128) -> float:
    """Held-out accuracy of an ONNX graph, as the service would compute it."""
    session, correct = cpu_session(graph), 0
    for start in range(0, len(ids), batch):
        tokens, lengths = pad_batch(ids[start : start + batch])
        probabilities, _ = session.run(None, {"tokens": tokens, "lengths": lengths})
        correct += int((probabilities.argmax(-1) == labels[start : start + batch]).sum())
    return correct / len(ids)


class ClassifierExporter(Exporter):
    """The classify task's exporter: graph, parity on held-out sentences, int8 by accuracy."""

    quantizable = True

    def __init__(self, checkpoint_path: Path) -> None:
        from model_src.train import TRAINER

        self.model, self.checkpoint = TRAINER.load_checkpoint(checkpoint_path)
        self.training = self.checkpoint.training
        self.vocab = Vocabulary(tuple(self.checkpoint.vocab))
        self.max_tokens = self.checkpoint.max_tokens

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        export_graph(self.model, folder / GRAPH_FILE)
        classes = len(self.checkpoint.labels)
        outputs = [
            TensorSpec(name="probabilities", dtype="float32", shape=["batch", classes]),
            TensorSpec(name="attention", dtype="float32", shape=["batch", "sequence"]),
        ]
        return {"model": GraphSpec(file=GRAPH_FILE, inputs=INPUTS, outputs=outputs)}

    def parity(self, folder: Path) -> Parity:
        samples = self.checkpoint.heldout.texts[:64]
        ids = parity_batch(self.vocab, samples, self.max_tokens)
        return Parity(max_abs_diff(self.model, folder / GRAPH_FILE, ids))

    def quality(self, folder: Path) -> Quality:
        heldout = self.checkpoint.heldout
        ids = [self.vocab.encode(tokenize(t))[: self.max_tokens] or [PAD_ID] for t in heldout.texts]
        value = accuracy(folder / GRAPH_FILE, ids, np.array(heldout.labels))
        return Quality(f"{heldout.split}_accuracy", value)

    def write_files(self, folder: Path) -> list[str]:
        self.vocab.save(folder / VOCAB_FILE)
        return [VOCAB_FILE]

    def manifest_parts(self) -> dict[str, Any]:
        return {
            "architecture": architecture(self.checkpoint.config),
            "preprocessing": TextPreprocessing(
                lowercase=self.checkpoint.lowercase,
                vocab_file=VOCAB_FILE,
                vocab_size=len(self.vocab),
                max_tokens=self.max_tokens,
            ),
            "labels": self.checkpoint.labels,
        }
