"""The one onnxruntime session every peer serves the graph with (imported inside each peer's
own virtual environment, so it uses nothing of rnnserve): the settings rnnserve gives its own
sessions by default, so that the graph runs alike everywhere and only the servers differ."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

PAD_ID = 0


def open_session() -> ort.InferenceSession:
    """`PEER_MODEL` (an .onnx file), `PEER_THREADS` intra-op threads (default: every core),
    one inter-op thread, no spinning between runs, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "0")) or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(
        os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"]
    )


def classify(session: ort.InferenceSession, tokens: np.ndarray) -> np.ndarray:
    """Probabilities for a batch of padded token ids; each row's length is its count of
    non-padding ids (the vocabulary never gives id 0 to a word)."""
    tokens = tokens.astype(np.int64, copy=False)
    lengths = np.maximum((tokens != PAD_ID).sum(axis=1), 1).astype(np.int64)
    probabilities, _ = session.run(None, {"tokens": tokens, "lengths": lengths})
    return probabilities
