"""Triton Inference Server (the binary PyTriton ships) serving the graph on onnxruntime through
PyTriton's Python backend, with Triton's dynamic batcher: `PEER_MAX_BATCH` rows at most,
`PEER_DELAY_US` its max_queue_delay_microseconds. Ports: PEER_HTTP_PORT, PEER_GRPC_PORT,
PEER_METRICS_PORT. Runs until SIGTERM."""

from __future__ import annotations

import os

import numpy as np
from onnx_session import classify, open_session
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

session = open_session()


@batch
def infer(tokens: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": classify(session, tokens)}


def main() -> None:
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=int(os.environ["PEER_HTTP_PORT"]),
        grpc_address="127.0.0.1",
        grpc_port=int(os.environ["PEER_GRPC_PORT"]),
        metrics_port=int(os.environ["PEER_METRICS_PORT"]),
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=os.environ.get("PEER_MODEL_NAME", "sst2-lstm"),
            infer_func=infer,
            inputs=[Tensor(name="tokens", dtype=np.int64, shape=(-1,))],
            outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(
                max_batch_size=int(os.environ.get("PEER_MAX_BATCH", "64")),
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=int(os.environ.get("PEER_DELAY_US", "0"))
                ),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
