"""Export a trained text classifier to ONNX, verify it, and describe it in a manifest."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.common import OPSET, ParityError, architecture, export_info, now
from model_src.classifier import ProbabilityHead, TextClassifier
from model_src.manifest import (
    GraphSpec,
    Manifest,
    TensorSpec,
    TextPreprocessing,
    TrainingInfo,
    sha256_of,
)
from model_src.text import PAD_ID, Vocabulary, tokenize

GRAPH_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
INPUTS = [
    TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"]),
    TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
]


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
    got = _session(graph).run(None, {"tokens": tokens, "lengths": lengths})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


def accuracy(graph: Path, ids: list[list[int]], labels: list[int], batch: int = 128) -> float:
    """Held-out accuracy of an ONNX graph, as the service would compute it."""
    session, correct = _session(graph), 0
    for start in range(0, len(ids), batch):
        tokens, lengths = pad_batch(ids[start : start + batch])
        probabilities, _ = session.run(None, {"tokens": tokens, "lengths": lengths})
        correct += int((probabilities.argmax(-1) == labels[start : start + batch]).sum())
    return correct / len(ids)


def _session(graph: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantisation: weights stored as int8, activations quantised per run."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)


def write_version(
    model: TextClassifier,
    checkpoint: dict,
    folder: Path,
    name: str,
    version: int,
    tolerance: float,
    description: str = "",
    quantize: str | None = None,
    max_accuracy_drop: float = 0.01,
) -> Manifest:
    """Fill a version folder: graph, vocabulary, manifest. Refuses a graph that fails parity.

    With `quantize="int8"` the fp32 graph is checked against PyTorch first, then quantised;
    the int8 graph is accepted only if its held-out accuracy drops by at most
    `max_accuracy_drop`, and the manifest records both accuracies.
    """
    vocab = Vocabulary(tuple(checkpoint["vocab"]))
    heldout = checkpoint["heldout"]
    max_tokens = checkpoint["max_tokens"]
    graph = folder / GRAPH_FILE
    fp32 = folder / "model.fp32.onnx" if quantize else graph
    export_graph(model, fp32)
    diff = max_abs_diff(model, fp32, parity_batch(vocab, heldout["texts"][:64], max_tokens))
    if not diff <= tolerance:
        raise ParityError(f"onnxruntime differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    metrics = dict(checkpoint["training"]["metrics"])
    accuracy_change = None
    if quantize == "int8":
        ids = [vocab.encode(tokenize(t))[:max_tokens] or [PAD_ID] for t in heldout["texts"]]
        labels = np.array(heldout["labels"])
        quantize_int8(fp32, graph)
        before, after = accuracy(fp32, ids, labels), accuracy(graph, ids, labels)
        fp32.unlink()
        accuracy_change = round(after - before, 4)
        if -accuracy_change > max_accuracy_drop:
            raise ParityError(
                f"int8 loses {-accuracy_change:.2%} {heldout['split']} accuracy "
                f"(> {max_accuracy_drop:.2%})"
            )
        metrics[f"{heldout['split']}_accuracy_fp32"] = round(before, 4)
        metrics[f"{heldout['split']}_accuracy"] = round(after, 4)
        diff = max_abs_diff(model, graph, parity_batch(vocab, heldout["texts"][:64], max_tokens))
    vocab.save(folder / VOCAB_FILE)
    cfg = checkpoint["config"]
    classes = len(checkpoint["labels"])
    manifest = Manifest(
        name=name,
        version=version,
        task="classify",
        description=description,
        created_at=now(),
        architecture=architecture(cfg),
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
            max_tokens=max_tokens,
        ),
        labels=checkpoint["labels"],
        files={f: sha256_of(folder / f) for f in (GRAPH_FILE, VOCAB_FILE)},
        export=export_info(diff, tolerance, quantized=quantize, accuracy_change=accuracy_change),
        training=TrainingInfo(**{**checkpoint["training"], "metrics": metrics}),
    )
    manifest.write(folder)
    return manifest


def version_writer(checkpoint_path: Path, args: Any) -> Callable[[Path, int], Manifest]:
    """For `rnnserve export`: the function that fills one version folder."""
    from model_src.train import load_checkpoint

    model, checkpoint = load_checkpoint(checkpoint_path)

    def write(folder: Path, version: int) -> Manifest:
        return write_version(
            model,
            checkpoint,
            folder,
            args.name,
            version,
            args.tolerance,
            args.description,
            quantize=args.quantize,
            max_accuracy_drop=args.max_accuracy_drop,
        )

    return write
