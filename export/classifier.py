"""Export a trained text classifier to ONNX, verify it, and describe it in a manifest."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from model_src.classifier import ProbabilityHead, TextClassifier
from model_src.manifest import (
    Architecture,
    ExportInfo,
    GraphSpec,
    Manifest,
    TensorSpec,
    TextPreprocessing,
    TrainingInfo,
    sha256_of,
)
from model_src.text import PAD_ID, Vocabulary, tokenize

OPSET = 17
GRAPH_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
INPUTS = [
    TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"]),
    TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
]


class ParityError(RuntimeError):
    """onnxruntime disagrees with PyTorch by more than the tolerance."""


def pad_batch(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    tokens = np.full((len(ids), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, x in enumerate(ids):
        tokens[row, : len(x)] = x
    return tokens, lengths


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            ProbabilityHead(model).eval(),
            (torch.from_numpy(tokens), torch.from_numpy(lengths)),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[t.name for t in INPUTS],
            output_names=["probabilities", "attention"],
            dynamic_axes={
                "tokens": {0: "batch", 1: "sequence"},
                "lengths": {0: "batch"},
                "probabilities": {0: "batch"},
                "attention": {0: "batch", 1: "sequence"},
            },
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def max_abs_diff(model: TextClassifier, graph: Path, ids: list[list[int]]) -> float:
    """Largest difference between PyTorch and onnxruntime over probabilities and attention."""
    tokens, lengths = pad_batch(ids)
    with torch.no_grad():
        expected = ProbabilityHead(model).eval()(
            torch.from_numpy(tokens), torch.from_numpy(lengths)
        )
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = session.run(None, {"tokens": tokens, "lengths": lengths})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


def write_version(
    model: TextClassifier,
    checkpoint: dict,
    folder: Path,
    name: str,
    version: int,
    tolerance: float,
    description: str = "",
) -> Manifest:
    """Fill a version folder: graph, vocabulary, manifest. Refuses a graph that fails parity."""
    graph = folder / GRAPH_FILE
    export_graph(model, graph)
    vocab = Vocabulary(tuple(checkpoint["vocab"]))
    diff = max_abs_diff(
        model, graph, parity_batch(vocab, checkpoint["samples"], checkpoint["max_tokens"])
    )
    if not diff <= tolerance:
        raise ParityError(f"onnxruntime differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    vocab.save(folder / VOCAB_FILE)
    cfg = checkpoint["config"]
    classes = len(checkpoint["labels"])
    manifest = Manifest(
        name=name,
        version=version,
        task="classify",
        description=description,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=Architecture(
            cell=cfg["cell"],
            embedding_dim=cfg["embedding_dim"],
            hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_layers"],
            bidirectional=cfg["bidirectional"],
            attention_size=cfg["attention_size"],
            dropout=cfg["dropout"],
        ),
        graphs={
            "model": GraphSpec(
                file=GRAPH_FILE,
                inputs=INPUTS,
                outputs=[
                    TensorSpec(name="probabilities", dtype="float32", shape=["batch", classes]),
                    TensorSpec(name="attention", dtype="float32", shape=["batch", "sequence"]),
                ],
            )
        },
        preprocessing=TextPreprocessing(
            lowercase=checkpoint["lowercase"],
            vocab_file=VOCAB_FILE,
            vocab_size=len(vocab),
            max_tokens=checkpoint["max_tokens"],
        ),
        labels=checkpoint["labels"],
        files={f: sha256_of(folder / f) for f in (GRAPH_FILE, VOCAB_FILE)},
        export=ExportInfo(
            opset=OPSET,
            torch_version=torch.__version__,
            onnx_version=onnx.__version__,
            onnxruntime_version=ort.__version__,
            parity_max_abs_diff=diff,
            parity_tolerance=tolerance,
        ),
        training=TrainingInfo(**checkpoint["training"]),
    )
    manifest.write(folder)
    return manifest
