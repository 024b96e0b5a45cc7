"""A closed-loop gRPC load generator for the Open Inference Protocol (KServe V2), in its own
process so that its CPU counts as the load generator's: `connections` callers on one channel
(tritonclient's asyncio client), each sending the next request when its answer arrived.
Prints one JSON line with wrk_post.lua's fields.

    python -m bench.peers.grpc_load HOST:PORT MODEL BODIES.jsonl --connections 64 --seconds 5

BODIES: one V2 JSON request per line (INT64 `tokens`), as sent over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpc_client


def inputs(bodies: Path) -> list[list[grpc_client.InferInput]]:
    requests = []
    for line in bodies.read_text().splitlines():
        tensor = json.loads(line)["inputs"][0]
        data = np.array(tensor["data"], dtype=np.int64).reshape(tensor["shape"])
        one = grpc_client.InferInput(tensor["name"], list(data.shape), "INT64")
        one.set_data_from_numpy(data)
        requests.append([one])
    return requests


async def run(target: str, model: str, bodies: Path, connections: int, seconds: float) -> dict:
    requests = inputs(bodies)
    outputs = [grpc_client.InferRequestedOutput("probabilities")]
    latencies: list[float] = []
    errors = 0
    async with grpc_client.InferenceServerClient(target) as client:
        await client.infer(model, requests[0], outputs=outputs)  # connect before timing
        stop = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    await client.infer(model, requests[i % len(requests)], outputs=outputs)
                    latencies.append(time.perf_counter() - started)
                except Exception:  # a failed call counts as an error, as wrk counts them
                    errors += 1
                i += connections

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(connections)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies or [0.0]) * 1000
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "non2xx": 0,
        "errors": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.peers.grpc_load", description=__doc__)
    p.add_argument("target")
    p.add_argument("model")
    p.add_argument("bodies", type=Path)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    stats = asyncio.run(run(args.target, args.model, args.bodies, args.connections, args.seconds))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
