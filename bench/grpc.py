"""gRPC against HTTP V2 JSON and HTTP V2 binary, all three through the official Triton clients
(tritonclient's asyncio gRPC and HTTP clients), on one rnnserve process, in one run.

    python -m bench.grpc [--model sst2-lstm] [--levels 1,64] [--seconds 16] [--rounds 4]
                         [--workloads sst2-dev,fixed-64] [--data data/sst2]

One text per request (BYTES `text`): SST-2 dev sentences, or 64-token texts (bench/workloads.py);
all outputs back. The three
transports take turns in short windows, round after round, so a slow spell of the shared
machine falls on all of them alike. The client runs in this process, on the same cores as the
server, so every transport pays for its own client too: that is what a Python caller sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpc_client
import tritonclient.http.aio as http_client

from bench.http import throughput_table
from bench.workloads import DEFAULT_DATA, NAMES, load_all
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUTPUTS = ("probabilities", "label", "attention")
MODES = ("grpc", "http json", "http binary")


def request_maker(mode: str, client, model: str) -> Callable[[str], Awaitable]:
    """A coroutine function sending one text the way `mode` does."""
    lib = grpc_client if mode == "grpc" else http_client
    binary = mode != "http json"

    def infer(text: str):
        tensor = lib.InferInput("text", [1], "BYTES")
        data = np.array([text], dtype=object)
        if mode == "grpc":
            tensor.set_data_from_numpy(data)
            return client.infer(model, [tensor])
        tensor.set_data_from_numpy(data, binary_data=binary)
        wanted = [lib.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
        return client.infer(model, [tensor], outputs=wanted)

    return infer


async def window(infer, bodies: list[str], connections: int, seconds: float) -> dict:
    """`connections` callers, each sending its next request when the last one answered."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await infer(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            i += connections

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "latencies": latencies}


async def run(model: str, http_url: str, grpc_url: str, levels: list[int], seconds: float,
              rounds: int, bodies: list[str]) -> dict:  # fmt: skip
    clients = {
        "grpc": grpc_client.InferenceServerClient(grpc_url),
        "http json": http_client.InferenceServerClient(http_url, conn_limit=max(levels)),
        "http binary": http_client.InferenceServerClient(http_url, conn_limit=max(levels)),
    }
    makers = {mode: request_maker(mode, clients[mode], model) for mode in MODES}
    # The same answer over every transport, before timing anything.
    answers = [await makers[mode](bodies[0]) for mode in MODES]
    first = answers[0].as_numpy("probabilities")
    for answer in answers[1:]:
        np.testing.assert_allclose(answer.as_numpy("probabilities"), first, atol=1e-6)
    for mode in MODES:
        await window(makers[mode], bodies, 16, 1.0)  # warm up connections and pools
    totals: dict[str, dict[int, dict]] = {mode: {} for mode in MODES}
    for _ in range(rounds):
        for c in levels:
            for mode in MODES:
                part = await window(makers[mode], bodies, c, seconds / rounds)
                total = totals[mode].setdefault(c, {"requests": 0, "seconds": 0.0, "lat": []})
                total["requests"] += part["requests"]
                total["seconds"] += part["seconds"]
                total["lat"] += part["latencies"]
    for client in clients.values():
        await client.close()
    table = {}
    for mode, by_level in totals.items():
        table[mode] = {}
        for c, total in by_level.items():
            lat = np.array(total.pop("lat")) * 1000
            table[mode][c] = {
                "rps": total["requests"] / total["seconds"],
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
                "requests": total["requests"],
            }
    return table


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.grpc", description=__doc__)
    p.add_argument("--model", default="sst2-lstm")
    p.add_argument("--levels", default="1,64")
    p.add_argument("--seconds", type=float, default=16.0, help="per transport and level")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--workloads", default=",".join(NAMES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 folder (its dev split)")
    args = p.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    work = load_all(args.workloads.split(","), args.data)
    grpc_port = free_port()
    tables = {}
    with live_server(ROOT / "models", grpc_port=str(grpc_port)) as url:
        for w in work:
            tables[w.name] = asyncio.run(
                run(
                    args.model,
                    url.removeprefix("http://"),
                    f"127.0.0.1:{grpc_port}",
                    levels,
                    args.seconds,
                    args.rounds,
                    w.texts,
                )
            )
    for w in work:
        table = tables[w.name]
        print(f"\n{args.model}, {w.description}, tritonclient (asyncio) in one process")
        print(throughput_table(table, levels, "transport"))
        print("\nagainst HTTP JSON (req/s):")
        for mode in ("grpc", "http binary"):
            ratios = [f"c={c}: {table[mode][c]['rps'] / table['http json'][c]['rps']:.2f}"
                      for c in levels]  # fmt: skip
            print(f"  {mode:<12}" + "   ".join(ratios))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpc.json").write_text(json.dumps(tables, indent=1))


if __name__ == "__main__":
    main()
