"""Baseline servers for comparison, each a FastAPI app run by uvicorn like rnnserve itself.

- `ceiling`: parses and validates the same body, does no inference (the HTTP limit);
- `naive`: one session.run per request, called inline, as most tutorials do.
Run with `BENCH_MODEL=models/sst2-lstm/1 uvicorn --factory bench.baselines:naive`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from bench.inprocess import load
from contract.words import tokenize
from service.responses import FastJSONResponse
from service.schemas import PredictRequest


def ceiling() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, body: PredictRequest) -> FastJSONResponse:
        return FastJSONResponse(
            {
                "model_name": name,
                "predictions": [
                    {"label": "positive", "probabilities": {"negative": 0.5, "positive": 0.5}}
                    for _ in body.instances
                ],
            }
        )

    return app


def naive() -> FastAPI:
    folder = Path(os.environ["BENCH_MODEL"])
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    session, vocab = load(folder, threads)
    labels = ["negative", "positive"]
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, body: PredictRequest) -> FastJSONResponse:
        predictions = []
        for text in body.instances:
            ids = np.array([vocab.encode(tokenize(text))], np.int64)
            probabilities, _ = session.run(
                None, {"tokens": ids, "lengths": np.array([ids.shape[1]], np.int64)}
            )
            p = probabilities[0].tolist()
            predictions.append(
                {
                    "label": labels[int(np.argmax(p))],
                    "probabilities": dict(zip(labels, p, strict=True)),
                }
            )
        return FastJSONResponse({"model_name": name, "predictions": predictions})

    return app
