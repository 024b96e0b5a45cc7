"""Triton's own load generator, `perf_analyzer`, against rnnserve, unchanged: it reads the
model's configuration, sends V2 requests over HTTP or gRPC at fixed concurrencies and reads
the server's statistics to split the latency into queue and compute.

    make bench-triton          # sets up perf_analyzer's root (once), then runs this
    python -m bench.perf_analyzer [--model sst2-lstm] [--levels 1,16,64] [--seconds 4]
        [--data data/sst2]

Inputs are real SST-2 dev sentences (one per request, cycled) when `--data` holds a
`dev.tsv`, otherwise 64-token texts. perf_analyzer runs from a Debian 13 root
(bench/triton_tools/); both wires in one server, alternating cell by cell.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

from bench.payloads import texts
from model_src.data import read_examples
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOOLS = ROOT / ".triton-root"
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


def sentences(data: Path, n: int = 872) -> tuple[list[str], str]:
    """The SST-2 dev sentences when present, else generated 64-token texts."""
    dev = data / "dev.tsv"
    if dev.is_file():
        lines = [example.text for example in read_examples(dev)][:n]
        return lines, f"SST-2 dev sentences ({len(lines)})"
    return texts(256), "64-token texts (no SST-2 dev split found)"


def write_input_data(path: Path, lines: list[str]) -> None:
    """perf_analyzer's --input-data: one request per entry, cycled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{"text": [line]} for line in lines]}))


def run_cell(url: str, protocol: str, model: str, concurrency: int, seconds: float) -> dict:
    """One perf_analyzer measurement; its CSV row in ms (it reports microseconds)."""
    out = "/tmp/perf_analyzer.csv"
    command = [
        str(PERF_ANALYZER), "-m", model, "-u", url, "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(int(seconds * 1000)),
        # This shared machine's speed moves from window to window: take three windows as they
        # come rather than wait for two alike (perf_analyzer's default is 10 % apart).
        "--stability-percentage", "100", "--max-trials", "3",
        # The texts' tensor is BYTES [-1]: one text per request.
        "--input-data", "/tmp/perf_analyzer_input.json", "--shape", "text:1", "-f", out,
    ]  # fmt: skip
    env = {"TRITON_TOOLS_ROOT": str(TOOLS), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    if finished.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed:\n{finished.stdout}\n{finished.stderr}")
    with (TOOLS / out.lstrip("/")).open() as file:
        row = next(csv.DictReader(file))
    cell = {"protocol": protocol, "concurrency": concurrency}
    for name, column in COLUMNS.items():
        value = float(row[column])
        cell[name] = value if name == "req/s" else value / 1000
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sst2-lstm")
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "sst2")
    parser.add_argument("--out", type=Path, default=RESULTS / "perf_analyzer.json")
    args = parser.parse_args()
    if not (TOOLS / "opt" / "perf-analyzer" / "bin" / "perf_analyzer").exists():
        raise SystemExit("perf_analyzer is not set up: run `make bench-triton` (needs root)")
    lines, source = sentences(args.data)
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
