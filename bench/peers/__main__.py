"""`make bench-peers`: rnnserve against Triton, MLServer and BentoML on the same graph, in one run.

    python -m bench.peers [--data data/sst2] [--rounds 3] [--seconds 4] [--levels 1,16,64]

1. Every server serves models/sst2-lstm's ONNX graph (bench/peers/servers.py says what each
   is given); each answer to the first request of each workload is checked against
   rnnserve's before anything is timed.
2. Batch delays: each peer is started with each of a few settings of its batcher's delay,
   all of them up at once and measured in turns (SST-2 sentences, c=1 and c=64); the setting
   with the most req/s at c=64 is kept for the main run.
3. Main run: every server up at once; round after round, every workload, every concurrency
   level, one cell per server (the order rotating from round to round), so a slow spell of
   the shared machine falls on all of them alike. Medians of the rounds.

The load generator is the same for every server: wrk with bench/wrk_post.lua over HTTP, and
bench/peers/grpc_load.py (tritonclient's asyncio client in its own process) over gRPC.
rnnserve takes the text (V1) or its ids at their real length (V2); the peers take the ids
padded to the workload's longest (their batchers concatenate only requests of equal shape).

Writes bench/results/peers.json, the charts bench/peers-<workload>.png and the tables between
the `peers:begin`/`peers:end` marks of bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench import cpusplit, workloads
from bench.http import wrk
from bench.inprocess import latest_version
from bench.peers import report
from bench.peers.servers import MODEL_NAME, PEER_LAUNCHERS, Server, rnnserve

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

# The delay settings tried for each peer's batcher (its own unit), and the batch size cap.
DELAYS = {
    "Triton": [0, 500, 2000],  # max_queue_delay_microseconds (0: whatever is queued)
    "MLServer": [1, 2, 5],  # max_batch_time, ms (MLServer batches only when it is > 0)
    "BentoML": [100, 1000, 60000],  # max_latency_ms (60000: BentoML's default)
}
PEER_MAX_BATCH = 64


@dataclass(frozen=True)
class Target:
    """One row of the table: a server, how it is called, what it is sent."""

    label: str
    server: str
    transport: str  # "http" or "grpc"
    path: str
    bodies: Callable[[list[str], list[list[int]], int], list[dict]]


def _v1(texts: list[str], ids: list[list[int]], width: int) -> list[dict]:
    return workloads.v1_text(texts)


def _v2_real(texts: list[str], ids: list[list[int]], width: int) -> list[dict]:
    bodies = workloads.v2_tokens(ids)
    for body in bodies:
        body["outputs"] = [{"name": "probabilities"}]
    return bodies


def _v2_padded(texts: list[str], ids: list[list[int]], width: int) -> list[dict]:
    rows = [x for x, _ in workloads.padded(ids, width)]
    return [
        {
            "inputs": [{"name": "tokens", "shape": [1, width], "datatype": "INT64", "data": x}],
            "outputs": [{"name": "probabilities"}],
        }
        for x in rows
    ]


def _bento(texts: list[str], ids: list[list[int]], width: int) -> list[dict]:
    return [{"tokens": [x]} for x, _ in workloads.padded(ids, width)]


V2_PATH = f"/v2/models/{MODEL_NAME}/infer"
TARGETS = [
    Target("rnnserve V1 text", "rnnserve", "http", f"/v1/models/{MODEL_NAME}:predict", _v1),
    Target("rnnserve V2 ids", "rnnserve", "http", V2_PATH, _v2_real),
    Target("Triton", "Triton", "http", V2_PATH, _v2_padded),
    Target("MLServer", "MLServer", "http", V2_PATH, _v2_padded),
    Target("BentoML", "BentoML", "http", "/classify", _bento),
    Target("rnnserve gRPC", "rnnserve", "grpc", "", _v2_real),
    Target("Triton gRPC", "Triton", "grpc", "", _v2_padded),
    Target("MLServer gRPC", "MLServer", "grpc", "", _v2_padded),
]


def probabilities(answer: dict) -> list[float]:
    """The first instance's probabilities from any of the servers' answers."""
    if isinstance(answer, list):  # BentoML: the array itself
        return [float(v) for v in answer[0]]
    if "predictions" in answer:  # rnnserve V1
        return [float(v) for v in answer["predictions"][0]["probabilities"].values()]
    output = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    return [float(v) for v in np.ravel(output["data"])][:2]


def check_answers(servers: dict[str, Server], bodies: dict[str, dict]) -> None:
    """Every HTTP target must give rnnserve's probabilities for the same first request."""
    answers = {}
    for target in TARGETS:
        if target.transport != "http":
            continue
        server = servers[target.server]
        reply = httpx.post(server.http + target.path, json=bodies[target.label], timeout=30)
        reply.raise_for_status()
        answers[target.label] = probabilities(reply.json())
    reference = answers["rnnserve V1 text"]
    for label, got in answers.items():
        if not np.allclose(got, reference, atol=1e-4):
            raise SystemExit(f"{label} answered {got}, rnnserve {reference}: not the same graph?")


def cell(target: Target, server: Server, bodies: Path, connections: int, seconds: float) -> dict:
    """One measurement, with the CPU split of the server, the load generator and the rest."""
    ours = server.name == "rnnserve"
    role = cpusplit.rnnserve_role if ours else cpusplit.by_process(server.pid)
    with cpusplit.measure(server.pid, role, tree=not ours) as split:
        if target.transport == "http":
            stats = wrk(server.http, target.path, bodies, connections, seconds)
        else:
            out = subprocess.run(
                [sys.executable, "-m", "bench.peers.grpc_load", str(server.grpc), MODEL_NAME,
                 str(bodies), "--connections", str(connections), "--seconds", str(seconds)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            stats = json.loads(out.strip().splitlines()[-1])
            stats["rps"] = stats["requests"] / stats["seconds"]
    stats["cpu"] = split.as_dict()
    stats["limit"] = cpusplit.limit(stats["rps"], split, "event loop" if ours else None)
    return stats


def median_cells(cells: list[dict]) -> dict:
    merged = {
        key: statistics.median(c[key] for c in cells)
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms")
    }
    merged["rounds"] = [round(c["rps"], 1) for c in cells]
    merged["failed"] = sum(c.get("non2xx", 0) + c.get("errors", 0) for c in cells)
    roles = {name for c in cells for name in c["cpu"]["roles"]}
    merged["cpu"] = {
        "roles": {
            r: statistics.median(c["cpu"]["roles"].get(r, 0.0) for c in cells) for r in roles
        },
        **{
            key: statistics.median(c["cpu"][key] for c in cells)
            for key in ("server", "load_generator", "other_processes", "machine")
        },
    }
    limits = [c["limit"] for c in cells if c["limit"]]
    if limits:
        merged["limit"] = {
            "combined_limit": statistics.median(x["combined_limit"] for x in limits),
            "bound_by": statistics.mode(x["bound_by"] for x in limits),
            "server_cpu_us_per_request": statistics.median(
                x["server_cpu_us_per_request"] for x in limits
            ),
        }
    return merged


def write_bodies(
    work: list[workloads.Workload], model_folder: Path, folder: Path
) -> tuple[dict, dict]:
    """Each target's request bodies for each workload, as files for the load generators."""
    files: dict[tuple[str, str], Path] = {}
    meta = {}
    for workload in work:
        ids = workloads.token_ids(model_folder, workload.texts)
        width = max(len(x) for x in ids)
        meta[workload.name] = {
            "description": workload.description,
            "lengths": workloads.lengths_summary(ids),
            "peer_width": width,
        }
        for target in TARGETS:
            bodies = target.bodies(workload.texts, ids, width)
            path = folder / f"peers-{workload.name}-{target.label.replace(' ', '-')}.jsonl"
            files[target.label, workload.name] = workloads.write_lines(path, bodies)
    return files, meta


def sweep(
    peer: str, model: Path, logs: Path, bodies: Path, path: str, seconds: float, rounds: int
) -> tuple[object, dict]:
    """Each delay setting of one peer, all up at once, in turns: req/s and p50 at c=1 and 64."""
    launcher = PEER_LAUNCHERS[peer]
    results: dict = {}
    with ExitStack() as stack:
        running = {d: stack.enter_context(launcher(model, logs, PEER_MAX_BATCH, d))
                   for d in DELAYS[peer]}  # fmt: skip
        for server in running.values():
            wrk(server.http, path, bodies, 16, 1)  # warm up
        for round_ in range(rounds):
            order = list(running.items())
            for c in (1, 64):
                for delay, server in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    stats = wrk(server.http, path, bodies, c, seconds)
                    results.setdefault(delay, {}).setdefault(c, []).append(stats)
    table = {  # keyed by str(c), as in the JSON written
        delay: {
            str(c): {
                "rps": statistics.median(s["rps"] for s in cells),
                "p50_ms": statistics.median(s["p50_ms"] for s in cells),
                "failed": sum(s["non2xx"] + s["errors"] for s in cells),
            }
            for c, cells in by_c.items()
        }
        for delay, by_c in results.items()
    }
    valid = {d: t for d, t in table.items() if not t["64"]["failed"] and not t["1"]["failed"]}
    best = max(valid or table, key=lambda d: table[d]["64"]["rps"])
    return best, table


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    p.add_argument("--data", type=Path, default=workloads.DEFAULT_DATA, help="SST-2 folder")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="per cell and round")
    p.add_argument("--levels", default="1,16,64")
    p.add_argument("--workloads", default=",".join(workloads.NAMES))
    p.add_argument("--peers", default=",".join(PEER_LAUNCHERS), help="a subset to run")
    p.add_argument("--delay", action="append", default=[], metavar="PEER=VALUE",
                   help="use this delay for PEER instead of trying several")  # fmt: skip
    p.add_argument("--sweep-seconds", type=float, default=3.0)
    p.add_argument("--sweep-rounds", type=int, default=2)
    p.add_argument("--no-readme", action="store_true", help="leave bench/README.md as it is")
    args = p.parse_args()
    started = time.monotonic()
    levels = [int(c) for c in args.levels.split(",")]
    peers = [name for name in args.peers.split(",") if name]
    work = workloads.load_all(args.workloads.split(","), args.data)
    model = latest_version(ROOT / "models" / MODEL_NAME)
    logs = RESULTS / "peer-logs"
    logs.mkdir(parents=True, exist_ok=True)
    files, meta = write_bodies(work, model, RESULTS)
    targets = [t for t in TARGETS if t.server == "rnnserve" or t.server in peers]
    graph = model / "model.onnx"

    chosen: dict[str, float] = {}
    for given in args.delay:
        peer, value = given.split("=", 1)
        chosen[peer] = float(value) if "." in value else int(value)
    sweeps = {}
    for peer in (p for p in peers if p not in chosen):
        print(f"{peer}: trying batch delays {DELAYS[peer]} ...", flush=True)
        target = next(t for t in TARGETS if t.server == peer and t.transport == "http")
        best, table = sweep(peer, graph, logs, files[target.label, work[0].name], target.path,
                            args.sweep_seconds, args.sweep_rounds)  # fmt: skip
        chosen[peer], sweeps[peer] = best, table
        for delay, by_c in table.items():
            one, many = by_c["1"], by_c["64"]
            print(f"  {delay:>6}: c=1 {one['rps']:.0f} req/s p50 {one['p50_ms']:.2f} ms;"
                  f" c=64 {many['rps']:.0f} req/s; {one['failed'] + many['failed']} failed"
                  + ("  <- kept" if delay == best else ""), flush=True)  # fmt: skip

    cells: dict[tuple[str, str, int], list[dict]] = {}
    with ExitStack() as stack:
        servers = {"rnnserve": stack.enter_context(rnnserve(model, logs))}
        for peer in peers:
            servers[peer] = stack.enter_context(
                PEER_LAUNCHERS[peer](graph, logs, PEER_MAX_BATCH, chosen[peer])
            )
        settings = {name: server.settings for name, server in servers.items()}
        for workload in work:
            check_answers(
                servers,
                {t.label: json.loads(files[t.label, workload.name].read_text().splitlines()[0])
                 for t in targets},
            )  # fmt: skip
        for target in targets:  # warm up every route and connection pool
            cell(target, servers[target.server], files[target.label, work[0].name], 16, 1)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds} ...", flush=True)
            turn = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            for workload in work:
                for c in levels:
                    for target in turn:
                        bodies = files[target.label, workload.name]
                        stats = cell(target, servers[target.server], bodies, c, args.seconds)
                        cells.setdefault((workload.name, target.label, c), []).append(stats)

    table = {
        workload.name: {
            target.label: {c: median_cells(cells[workload.name, target.label, c]) for c in levels}
            for target in targets
        }
        for workload in work
    }
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.peers " + " ".join(sys.argv[1:]),
        "seconds_total": time.monotonic() - started,
        "rounds": args.rounds,
        "seconds_per_cell": args.seconds,
        "levels": levels,
        "cores": cpusplit.CORES,
        "workloads": meta,
        "settings": settings,
        "delays": chosen,
        "sweeps": sweeps,
        "table": table,
    }
    (RESULTS / "peers.json").write_text(json.dumps(result, indent=1, default=str))
    print(report.text(result))
    charts = report.charts(result, ROOT / "bench")
    if not args.no_readme:
        report.update_readme(ROOT / "bench" / "README.md", report.markdown(result, charts))
    print(f"\nwrote {RESULTS / 'peers.json'}, " + ", ".join(str(c) for c in charts))


if __name__ == "__main__":
    main()
