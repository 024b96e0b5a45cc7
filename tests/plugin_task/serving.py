"""The wordcount task's serving pipeline: words -> ids (as the model was built) -> batched run."""

from __future__ import annotations

from typing import Any

import numpy as np

from contract.words import PAD_ID, Vocabulary, tokenize
from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import InputError
from service.protocol import MetadataTensor
from service.tasks.base import TaskContext


class WordCountTask:
    """A text in, how many of its words the model's vocabulary does not know out."""

    def __init__(self, ctx: TaskContext) -> None:
        prep = ctx.manifest.preprocessing
        self.vocab = Vocabulary.load(ctx.folder / prep.vocab_file)
        graph = ctx.folder / ctx.manifest.graphs["model"].file
        self.session, self.provider = ctx.create_inference_session(graph)
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [MetadataTensor(name="text", datatype="BYTES", shape=[-1])]
        self.outputs = [MetadataTensor(name="unknown", datatype="FP32", shape=[-1])]

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    def prepare(self, texts: list[Any]) -> list[list[str]]:
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not tokenize(text):
                raise InputError(f"instances[{i}] must be a text with words")
        return [tokenize(text) for text in texts]

    def run(self, items: list[list[str]]) -> list[float]:
        tokens = np.full((len(items), max(map(len, items))), PAD_ID, np.int64)
        for row, words in enumerate(items):
            tokens[row, : len(words)] = self.vocab.encode(words)
        (unknown,) = self.session.run(None, {"tokens": tokens})
        return unknown.tolist()

    def warm_up(self) -> None:
        self.run([["warm", "up"]])

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        items = self.prepare(instances)
        counts = await self.batcher.submit(items, timeout)
        return [
            {"words": len(words), "unknown_words": int(n)}
            for words, n in zip(items, counts, strict=True)
        ]

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        if set(arrays) != {"text"}:
            raise InputError("this model takes one input, 'text' (BYTES [batch])")
        counts = await self.batcher.submit(self.prepare(arrays["text"].tolist()), timeout)
        return [OutputTensor("unknown", "FP32", np.array(counts, np.float32))]

    async def drain(self) -> None:
        await self.batcher.drain()

    def close(self) -> None:
        self.batcher.close()
