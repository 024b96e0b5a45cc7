"""BentoML service: the graph on onnxruntime behind a batchable API (BentoML's adaptive
batching: `PEER_MAX_BATCH` requests at most, `PEER_MAX_LATENCY_MS` its latency target)."""

from __future__ import annotations

import os

import bentoml
import numpy as np
from onnx_session import classify, open_session


# One worker process; no access log line per request (every server here logs only warnings).
@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Classifier:
    def __init__(self) -> None:
        self.session = open_session()

    @bentoml.api(
        batchable=True,
        max_batch_size=int(os.environ.get("PEER_MAX_BATCH", "64")),
        max_latency_ms=int(os.environ.get("PEER_MAX_LATENCY_MS", "60000")),
    )
    def classify(self, tokens: np.ndarray) -> np.ndarray:
        return classify(self.session, tokens)
