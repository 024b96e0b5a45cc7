"""The wordcount task's exporter: the module's graph, its parity, its vocabulary, its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.manifest import GraphSpec, TensorSpec, TextPreprocessing
from contract.words import Vocabulary
from export.common import cpu_session, to_onnx
from export.driver import Exporter, Parity

GRAPH = GraphSpec(
    file="model.onnx",
    inputs=[TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"])],
    outputs=[TensorSpec(name="unknown", dtype="float32", shape=["batch"])],
)


class WordCountExporter(Exporter):
    def __init__(self, module: nn.Module, vocab: Vocabulary) -> None:
        self.module, self.vocab = module.eval(), vocab
        self.batch = torch.tensor([[2, 1, 3, 1], [1, 0, 0, 0], [4, 5, 0, 0]])

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        to_onnx(
            self.module,
            (self.batch[:2, :3],),
            folder / GRAPH.file,
            input_names=["tokens"],
            output_names=["unknown"],
            dynamic_axes={"tokens": {0: "batch", 1: "sequence"}, "unknown": {0: "batch"}},
        )
        return {"model": GRAPH}

    def parity(self, folder: Path) -> Parity:
        with torch.no_grad():
            expected = self.module(self.batch).numpy()
        (got,) = cpu_session(folder / GRAPH.file).run(None, {"tokens": self.batch.numpy()})
        return Parity(float(np.abs(expected - got).max()))

    def write_files(self, folder: Path) -> list[str]:
        self.vocab.save(folder / "vocab.txt")
        return ["vocab.txt"]

    def manifest_parts(self) -> dict[str, Any]:
        prep = TextPreprocessing(vocab_file="vocab.txt", vocab_size=len(self.vocab), max_tokens=64)
        return {"origin": "module", "preprocessing": prep}
