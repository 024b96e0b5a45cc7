"""Text classification: text -> token ids (as in training) -> batched run -> label.

Ours and a user's classifier alike: the manifest names the tokeniser (words, characters or a
Hugging Face tokenizer) and the padding id; the graph gives probabilities, and attention only
where it has an `attention` output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contract.text import UnknownToken, encoder_for, sample_text
from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import InputError
from service.protocol import MetadataTensor
from service.tasks.base import NO_ATTENTION_OUTPUT, TaskContext, parse_parameters

TEXT, TOKENS, LENGTHS = "text", "tokens", "lengths"
TEXT_KINDS = ("words", "chars", "hf_tokenizer")
NO_ATTENTION = np.zeros(0, np.float32)


class ClassifyParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attention: bool = Field(
        False,
        description="return the attention weight of every token (a 400 for a model without an "
        "attention output)",
    )
    truncate: bool = Field(
        False, description="cut texts longer than the model's maximum instead of refusing them"
    )


@dataclass(slots=True)
class EncodedText:
    tokens: list[str] | None  # the words, for V1's attention pairs; None from token ids
    ids: np.ndarray  # (T,) int64
    truncated: bool


@dataclass(slots=True)
class Scores:
    probabilities: np.ndarray  # (C,)
    attention: np.ndarray  # (T,) over real tokens only


def length_groups(lengths: list[int], max_batch: int, max_waste: float) -> list[list[int]]:
    """Split indices, sorted by length, into groups whose padding share stays under max_waste.

    Padding every sequence to the batch's longest wastes work on short ones; onnxruntime's
    RNN cost grows with batch x longest length, so similar lengths run together.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    group: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]  # the longest so far, as the order is ascending
        padded = n * (len(group) + 1)
        if group and (len(group) == max_batch or 1 - (real + n) / padded > max_waste):
            groups.append(group)
            group, real = [], 0
        group.append(i)
        real += n
    if group:
        groups.append(group)
    return groups


def unpadded_length(ids: list[int], pad_id: int) -> int:
    """A row's length without its trailing padding ids (V2 `tokens` sent without `lengths`)."""
    n = len(ids)
    while n and ids[n - 1] == pad_id:
        n -= 1
    return n


class ClassifyTask:
    """A text classifier version: tokenise as in training, batch by length, label."""

    def __init__(self, ctx: TaskContext) -> None:
        manifest, prep = ctx.manifest, ctx.manifest.preprocessing
        if prep is None or prep.kind not in TEXT_KINDS or len(manifest.labels) < 2:
            raise ValueError(
                f"a classifier needs text preprocessing ({', '.join(TEXT_KINDS)}) and at least "
                "two labels"
            )
        self.encoder = encoder_for(prep, ctx.folder)
        self.pad_id = prep.pad_id
        self.unit = {"words": "words", "chars": "characters"}.get(prep.kind, "tokens")
        outputs = [o.name for o in manifest.graphs["model"].outputs]
        self.has_attention = "attention" in outputs
        self.output_names = ["probabilities", "attention"][: 1 + self.has_attention]
        cap = ctx.settings.max_sequence_length
        self.max_tokens = min(prep.max_tokens, cap or prep.max_tokens)
        self.labels = manifest.labels
        graph = ctx.folder / manifest.graphs["model"].file
        self.graph, self.provider = ctx.create_inference_session(graph)
        self.max_waste = ctx.limits.max_padding_waste
        self.max_batch = ctx.limits.max_batch_size
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [MetadataTensor(name=TEXT, datatype="BYTES", shape=[-1])]
        self.outputs = [
            MetadataTensor(name="probabilities", datatype="FP32", shape=[-1, len(self.labels)]),
            MetadataTensor(name="label", datatype="BYTES", shape=[-1]),
            MetadataTensor(name="attention", datatype="FP32", shape=[-1, -1]),
        ][: 2 + self.has_attention]

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        params = parse_parameters(ClassifyParameters, parameters)
        if params.attention and not self.has_attention:
            raise InputError(NO_ATTENTION_OUTPUT)
        items = self.prepare(instances, params.truncate)
        results = await self.batcher.submit(items, timeout)
        return [self.respond(i, r, params.attention) for i, r in zip(items, results, strict=True)]

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        """V2: `text` (BYTES) or `tokens` (+ `lengths`) in; `probabilities`, `label` and
        `attention` (padded with zeros to the longest input) out."""
        truncate = parse_parameters(ClassifyParameters, parameters, ignore_unknown=True).truncate
        items = self.prepare_tensors(arrays, truncate)
        results = await self.batcher.submit(items, timeout)
        return self.output_tensors(items, results)

    async def drain(self) -> None:
        await self.batcher.drain()

    def close(self) -> None:
        self.batcher.close()

    def prepare(
        self, instances: list[Any], truncate: bool, where: str = "instances"
    ) -> list[EncodedText]:
        """Validate every instance before any joins a batch: a bad one fails only its request.
        `where` names the list in errors (`instances`, or the V2 input `text`)."""
        items = []
        for i, text in enumerate(instances):
            if not isinstance(text, str):
                at = f"{where}[{i}]"
                raise InputError(f"{at} must be a string, got {type(text).__name__}", at)
            try:
                tokens, ids = self.encoder.encode(text)
            except UnknownToken as unknown:  # a vocabulary without an unknown token
                at = f"{where}[{i}]"
                raise InputError(f"{at}: {unknown}", at) from None
            if not tokens:
                at = f"{where}[{i}]"
                raise InputError(f"{at} has no {self.unit} to classify", at)
            truncated = len(tokens) > self.max_tokens
            if truncated and not truncate:
                at = f"{where}[{i}]"
                raise InputError(
                    f"{at} has {len(tokens)} tokens; this model takes at most "
                    f"{self.max_tokens} (set parameters.truncate to cut longer texts)",
                    at,
                )
            n = self.max_tokens
            items.append(EncodedText(tokens[:n], np.array(ids[:n], np.int64), truncated))
        return items

    def warm_up(self) -> None:
        """A batch of one and a batch of several answer before the version is ready. The text
        is a vocabulary entry that fits the model's token limit, whatever it is."""
        text = sample_text(self.encoder, self.max_tokens)
        if text is None:
            raise ValueError(f"no text from the vocabulary fits in {self.max_tokens} tokens")
        for size in (1, 3):
            self.run(self.prepare([text] * size, truncate=False))

    def run(self, items: list[EncodedText]) -> list[Scores]:
        """One batch from the batcher: grouped by length, padded, run on the worker thread."""
        results: list[Scores | None] = [None] * len(items)
        lengths = [len(item.ids) for item in items]
        for group in length_groups(lengths, self.max_batch, self.max_waste):
            longest = lengths[group[-1]]
            tokens = np.full((len(group), longest), self.pad_id, np.int64)
            for row, i in enumerate(group):
                tokens[row, : lengths[i]] = items[i].ids
            feed = {"tokens": tokens, "lengths": np.array([lengths[i] for i in group], np.int64)}
            probabilities, *attention = self.graph.run(self.output_names, feed)
            for row, i in enumerate(group):
                weights = attention[0][row, : lengths[i]] if attention else NO_ATTENTION
                results[i] = Scores(probabilities[row], weights)
        return results  # type: ignore[return-value]

    def respond(self, item: EncodedText, scores: Scores, attention: bool) -> dict[str, Any]:
        probabilities = scores.probabilities.tolist()
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        prediction: dict[str, Any] = {
            "label": self.labels[best],
            "probabilities": dict(zip(self.labels, probabilities, strict=True)),
        }
        if item.truncated:
            prediction["truncated"] = True
        if attention and self.has_attention:
            prediction["attention"] = [
                [token, weight]
                for token, weight in zip(item.tokens, scores.attention.tolist(), strict=True)
            ]
        return prediction

    def prepare_tensors(self, arrays: dict[str, np.ndarray], truncate: bool) -> list[EncodedText]:
        names = set(arrays)
        if names == {TEXT}:
            texts = arrays[TEXT]
            if texts.ndim == 2 and texts.shape[1] == 1:
                texts = texts[:, 0]
            if texts.ndim != 1 or texts.dtype != object:
                raise InputError(f"input {TEXT!r} must be BYTES of shape [batch]")
            return self.prepare(texts.tolist(), truncate, where=TEXT)
        if names in ({TOKENS}, {TOKENS, LENGTHS}):
            return self._from_ids(arrays[TOKENS], arrays.get(LENGTHS), truncate)
        raise InputError(
            f"inputs {sorted(names)}: this model takes {TEXT!r} (BYTES [batch]) or "
            f"{TOKENS!r} (INT64 [batch, sequence]) with optional {LENGTHS!r} (INT64 [batch])"
        )

    def _from_ids(
        self, tokens: np.ndarray, lengths: np.ndarray | None, truncate: bool
    ) -> list[EncodedText]:
        """Checked on Python lists: each numpy call on the event loop may hand the GIL to the
        batch thread and wait to get it back."""
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu" or 0 in tokens.shape:
            raise InputError(f"input {TOKENS!r} must be INT64 or INT32 of shape [batch, sequence]")
        width = tokens.shape[1]
        rows = tokens.tolist()
        if lengths is None:  # each row ends before its trailing padding ids, as a batch is sent
            counts = [unpadded_length(ids, self.pad_id) for ids in rows]
            if 0 in counts:
                row = counts.index(0)
                raise InputError(f"{TOKENS}[{row}] is all padding (id {self.pad_id})")
        elif lengths.shape != (len(tokens),) or lengths.dtype.kind not in "iu":
            raise InputError(f"input {LENGTHS!r} must be integers of shape [{len(tokens)}]")
        else:
            counts = lengths.tolist()
        size = self.encoder.vocab_size
        if min(map(min, rows)) < 0 or max(map(max, rows)) >= size:
            raise InputError(f"input {TOKENS!r}: ids must be in 0..{size - 1}")
        items = []
        for row, (ids, n) in enumerate(zip(rows, counts, strict=True)):
            if not 1 <= n <= width:
                raise InputError(f"{LENGTHS}[{row}] = {n} is not in 1..{width}")
            truncated = n > self.max_tokens
            if truncated and not truncate:
                raise InputError(
                    f"{TOKENS}[{row}] has {n} tokens; this model takes at most "
                    f"{self.max_tokens} (set parameters.truncate to cut longer inputs)"
                )
            ids = ids[: min(n, self.max_tokens)]
            items.append(EncodedText(None, np.array(ids, np.int64), truncated))
        return items

    def output_tensors(self, items: list[EncodedText], results: list[Scores]) -> list[OutputTensor]:
        longest = max(len(item.ids) for item in items)
        attention = np.zeros((len(items), longest), np.float32)
        for row, scores in enumerate(results):
            attention[row, : len(scores.attention)] = scores.attention
        probabilities = np.stack([r.probabilities for r in results])
        best = [max(range(len(p)), key=p.__getitem__) for p in probabilities.tolist()]
        labels = np.array([self.labels[i] for i in best], dtype=object)
        return [
            OutputTensor("probabilities", "FP32", probabilities),
            OutputTensor("label", "BYTES", labels),
            OutputTensor("attention", "FP32", attention),
        ][: 2 + self.has_attention]
