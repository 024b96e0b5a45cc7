"""Text classification: text -> token ids (as in training) -> batched run -> label."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from model_src.manifest import Manifest
from model_src.text import PAD_ID, Vocabulary, tokenize
from service.errors import Unprocessable
from service.schemas import PredictParameters


@dataclass(slots=True)
class Encoded:
    tokens: list[str]
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


class ClassifyTask:
    """Pre- and post-processing for one classifier version, and its batched session run."""

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        session: ort.InferenceSession,
        max_tokens: int | None,
        max_waste: float,
        max_batch: int,
    ) -> None:
        prep = manifest.preprocessing
        self.vocab = Vocabulary.load(folder / prep.vocab_file)
        self.lowercase = prep.lowercase
        self.max_tokens = min(prep.max_tokens, max_tokens or prep.max_tokens)
        self.labels = manifest.labels
        self.session = session
        self.max_waste = max_waste
        self.max_batch = max_batch

    def prepare(self, instances: list[Any], params: PredictParameters) -> list[Encoded]:
        """Validate every instance before any joins a batch: a bad one fails only its request."""
        items = []
        for i, text in enumerate(instances):
            if not isinstance(text, str):
                raise Unprocessable(f"instances[{i}] must be a string, got {type(text).__name__}")
            tokens = tokenize(text, self.lowercase)
            if not tokens:
                raise Unprocessable(f"instances[{i}] has no words to classify")
            truncated = len(tokens) > self.max_tokens
            if truncated and not params.truncate:
                raise Unprocessable(
                    f"instances[{i}] has {len(tokens)} tokens; this model takes at most "
                    f"{self.max_tokens} (set parameters.truncate to cut longer texts)"
                )
            tokens = tokens[: self.max_tokens]
            items.append(Encoded(tokens, np.array(self.vocab.encode(tokens), np.int64), truncated))
        return items

    def warm_up(self) -> None:
        self.run(self.prepare(["warm up the session"], PredictParameters()))

    def run(self, items: list[Encoded]) -> list[Scores]:
        """One batch from the batcher: grouped by length, padded, run on the worker thread."""
        results: list[Scores | None] = [None] * len(items)
        lengths = [len(item.ids) for item in items]
        for group in length_groups(lengths, self.max_batch, self.max_waste):
            longest = lengths[group[-1]]
            tokens = np.full((len(group), longest), PAD_ID, np.int64)
            for row, i in enumerate(group):
                tokens[row, : lengths[i]] = items[i].ids
            feed = {"tokens": tokens, "lengths": np.array([lengths[i] for i in group], np.int64)}
            probabilities, attention = self.session.run(None, feed)
            for row, i in enumerate(group):
                results[i] = Scores(probabilities[row], attention[row, : lengths[i]])
        return results  # type: ignore[return-value]

    def respond(self, item: Encoded, scores: Scores, params: PredictParameters) -> dict[str, Any]:
        probabilities = scores.probabilities.tolist()
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        prediction: dict[str, Any] = {
            "label": self.labels[best],
            "probabilities": dict(zip(self.labels, probabilities, strict=True)),
        }
        if item.truncated:
            prediction["truncated"] = True
        if params.attention:
            prediction["attention"] = [
                [token, weight]
                for token, weight in zip(item.tokens, scores.attention.tolist(), strict=True)
            ]
        return prediction
