"""Triton's own load generator, `perf_analyzer`, against rnnserve, unchanged: it reads the
model's configuration, sends V2 requests over HTTP or gRPC at fixed concurrencies and reads
the server's statistics to split the latency into queue and compute.

    make bench-triton          # sets up perf_analyzer's root (once), then runs this
    python -m bench.perf_analyzer [--model sst2-lstm] [--levels 1,16,64] [--seconds 4]
        [--data data/sst2]
    python -m bench.perf_analyzer --sequences [--levels 1,16] [--sequence-length 20]

Inputs are real SST-2 dev sentences (one per request, cycled) when `--data` holds a
`dev.tsv`, otherwise 64-token texts. perf_analyzer runs from a Debian 13 root
(bench/triton_tools/); both wires in one server, alternating cell by cell.

`--sequences`: Triton's sequences into co2-gru (`--sequence-length` steps of one value each,
`--levels` sequences at once), over HTTP and over a gRPC stream (`--streaming`), with the
session store in memory and in a local redis-server; beside them, in the same server and the
same run, our own closed-loop clients stepping sessions one value at a time (bench.forecast).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path

from bench import workloads
from bench.forecast import measure, series
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server
from tests.scaleout import redis_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOOLS = ROOT / ".triton-root"
SEQUENCE_MODEL = "co2-gru"
PERF_ANALYZER = ROOT / "bench" / "triton_tools" / "perf_analyzer"
COLUMNS = {
    "req/s": "Inferences/Second",
    "p50 ms": "p50 latency",
    "p99 ms": "p99 latency",
    "queue ms": "Server Queue",
    "compute input ms": "Server Compute Input",
    "compute infer ms": "Server Compute Infer",
    "compute output ms": "Server Compute Output",
}


def write_input_data(path: Path, lines: list[str]) -> None:
    """perf_analyzer's --input-data: one request per entry, cycled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{"text": [line]} for line in lines]}))


def run_cell(
    url: str,
    protocol: str,
    model: str,
    concurrency: int,
    seconds: float,
    options: list[str] | None = None,
    trials: int = 3,
) -> dict:
    """One perf_analyzer measurement; its CSV row in ms (it reports microseconds)."""
    out = "/tmp/perf_analyzer.csv"
    command = [
        str(PERF_ANALYZER), "-m", model, "-u", url, "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(int(seconds * 1000)),
        # This shared machine's speed moves from window to window: take three windows as they
        # come rather than wait for two alike (perf_analyzer's default is 10 % apart).
        "--stability-percentage", "100", "--max-trials", str(trials),
        "-f", out,
        # The texts' tensor is BYTES [-1]: one text per request.
        *(options or ["--input-data", "/tmp/perf_analyzer_input.json", "--shape", "text:1"]),
    ]  # fmt: skip
    env = {"TRITON_TOOLS_ROOT": str(TOOLS), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    (TOOLS / out.lstrip("/")).unlink(missing_ok=True)  # it exits 0 even when requests fail
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    if finished.returncode != 0 or not (TOOLS / out.lstrip("/")).exists():
        raise RuntimeError(f"perf_analyzer failed:\n{finished.stdout}\n{finished.stderr}")
    with (TOOLS / out.lstrip("/")).open() as file:
        row = next(csv.DictReader(file))
    cell = {"protocol": protocol, "concurrency": concurrency}
    for name, column in COLUMNS.items():
        value = float(row[column])
        cell[name] = value if name == "req/s" else value / 1000
    return cell


def write_sequence_data(path: Path, steps: int = 512) -> None:
    """One CO2-like value per step (FP32 [1, 1], with its length), cycled by perf_analyzer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = series(steps, seed=0).tolist()
    data = [
        {"values": {"content": [v], "shape": [1, 1]}, "lengths": {"content": [1], "shape": [1]}}
        for v in values
    ]
    path.write_text(json.dumps({"data": data}))


def run_sequences(args: argparse.Namespace) -> list[dict]:
    """perf_analyzer's sequences (HTTP; gRPC streaming) and our session clients, per store."""
    write_sequence_data(TOOLS / "tmp" / "perf_analyzer_sequences.json")
    extra = [
        "--sequence-length", str(args.sequence_length),
        "--input-data", "/tmp/perf_analyzer_sequences.json",
    ]  # fmt: skip
    cells = []
    for store in ("memory", "redis"):
        with ExitStack() as stack:
            url_of_store = "memory" if store == "memory" else stack.enter_context(redis_server())
            grpc_port = free_port()
            url = stack.enter_context(
                live_server(
                    DEFAULT_MODELS,
                    grpc_port=grpc_port,
                    log_level="warning",
                    session_store=url_of_store,
                    max_sessions="4096",
                )
            )
            endpoints = {"http": url.removeprefix("http://"), "grpc": f"127.0.0.1:{grpc_port}"}
            for concurrency in [int(x) for x in args.levels.split(",")]:
                for protocol, endpoint in endpoints.items():
                    options = [*extra, "--streaming"] if protocol == "grpc" else extra
                    cell = run_cell(  # sequences' latencies vary more: more windows
                        endpoint, protocol, SEQUENCE_MODEL, concurrency, args.seconds, options, 8
                    )
                    cells.append({"store": store, "client": "perf_analyzer", **cell})
                    print(json.dumps(cells[-1]), flush=True)
                ours = asyncio.run(
                    measure(url, SEQUENCE_MODEL, "session", 1, concurrency, args.seconds, 4096)
                )
                cells.append({
                    "store": store, "client": "ours (sessions API)", "protocol": "http",
                    "concurrency": concurrency, "req/s": ours["steps_per_s"],
                    "p50 ms": ours["p50_ms"], "p99 ms": ours["p99_ms"],
                })  # fmt: skip
                print(json.dumps(cells[-1]), flush=True)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sst2-lstm")
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "sst2")
    parser.add_argument("--out", type=Path, default=RESULTS / "perf_analyzer.json")
    parser.add_argument("--sequences", action="store_true", help="co2-gru sequences instead")
    parser.add_argument("--sequence-length", type=int, default=20)
    args = parser.parse_args()
    if not (TOOLS / "opt" / "perf-analyzer" / "bin" / "perf_analyzer").exists():
        raise SystemExit("perf_analyzer is not set up: run `make bench-triton` (needs root)")
    if args.sequences:
        cells = run_sequences(args)
        print(f"\nperf_analyzer --sequence-length {args.sequence_length}, {SEQUENCE_MODEL}, "
              "one value per step")  # fmt: skip
        print("| store | client | wire | c | req/s | p50 ms | p99 ms |")
        print("|---" * 7 + "|")
        for c in cells:
            print(f"| {c['store']} | {c['client']} | {c['protocol']} | {c['concurrency']} | "
                  f"{c['req/s']:,.0f} | {c['p50 ms']:.2f} | {c['p99 ms']:.2f} |")  # fmt: skip
        out = args.out.with_name("perf_analyzer_sequences.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": SEQUENCE_MODEL, "cells": cells}, indent=1))
        return
    # The SST-2 dev sentences when present, else the fixed 64-token texts (bench/workloads.py).
    kind = "sst2-dev" if (args.data / "dev.tsv").is_file() else "fixed-64"
    workload = workloads.load(kind, args.data)
    lines, source = workload.texts, workload.description
    write_input_data(TOOLS / "tmp" / "perf_analyzer_input.json", lines)
    grpc_port = free_port()
    cells = []
    with live_server(DEFAULT_MODELS, grpc_port=grpc_port, log_level="warning") as url:
        endpoints = {"http": url.removeprefix("http://"), "grpc": f"127.0.0.1:{grpc_port}"}
        for concurrency in [int(x) for x in args.levels.split(",")]:
            for protocol, endpoint in endpoints.items():
                cell = run_cell(endpoint, protocol, args.model, concurrency, args.seconds)
                cells.append(cell)
                print(json.dumps(cell), flush=True)
    print(f"\nperf_analyzer, {args.model}, {source}")
    print("| wire | c | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for cell in cells:
        figures = [f"{cell[n]:,.0f}" if n == "req/s" else f"{cell[n]:.2f}" for n in COLUMNS]
        print(f"| {cell['protocol']} | {cell['concurrency']} | " + " | ".join(figures) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"model": args.model, "inputs": source, "cells": cells}
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
