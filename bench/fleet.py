"""More models than memory, in one run.

`python -m bench.fleet [--copies 200] [--room 20] [--seconds 20] [--before REV]`:

1. **Memory per loaded model**, this checkout against REV (a git revision, default `main`,
   checked out into a temporary worktree): each serves `--memory-copies` copies of `sst2-lstm`
   and then one copy, every version loaded at start and sent one 8-text request; resident
   memory and native threads per added copy, against the graph's bytes.
2. **A fleet**: `--copies` copies of `sst2-lstm` in one repository, room for `--room`
   (RNNSERVE_MAX_LOADED_MODELS): resident memory at start and with the room full; the first
   request of a model (cold: it loads) against its second (warm); then closed-loop clients
   whose requests follow a Zipf distribution over every copy, taking turns with clients that
   keep to the `--room` most popular copies (all loaded), so both see the same machine.

The copies share their files through hard links; each loaded copy has its own session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.payloads import texts
from bench.rawclient import Connection
from tests.live_server import ServerURL, live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SOURCE = ROOT / "models" / "sst2-lstm" / "1"


def fleet(folder: Path, copies: int) -> list[str]:
    """`copies` versions of sst2-lstm named m000, m001, ... (files hard-linked)."""
    manifest = json.loads((SOURCE / "manifest.json").read_text())
    names = [f"m{i:03d}" for i in range(copies)]
    for name in names:
        target = folder / name / "1"
        target.mkdir(parents=True)
        for file in manifest["files"]:
            try:
                os.link(SOURCE / file, target / file)
            except OSError:  # another file system
                shutil.copy(SOURCE / file, target / file)
        (target / "manifest.json").write_text(json.dumps({**manifest, "name": name}))
    return names


def process_status(pid: int) -> tuple[int, int]:
    """Resident bytes and native threads of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return rss, threads


BODY = json.dumps({"instances": texts(1, 64)}).encode()
BATCH = json.dumps({"instances": texts(8, 64, seed=1)}).encode()


async def post(connection: Connection, name: str, body: bytes = BODY) -> float:
    started = time.perf_counter()
    reply = await connection.post(f"/v1/models/{name}:predict", body)
    if reply.status != 200:
        raise RuntimeError(f"{name}: {reply.status} {reply.body[:200]!r}")
    return time.perf_counter() - started


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- 1. memory per loaded model ---------------------------------------------------------------


def loaded_footprint(url: ServerURL, names: list[str]) -> tuple[int, int]:
    async def touch() -> None:
        connection = Connection("127.0.0.1", port_of(url))
        for name in names:
            await post(connection, name, BATCH)
        await connection.close()

    asyncio.run(touch())
    time.sleep(1.0)  # let freed memory settle
    return process_status(url.pid)


def memory_per_model(source: Path, copies: int, work: Path) -> dict:
    figures = {}
    for n in (copies, 1):
        repository = work / f"memory-{n}"
        names = fleet(repository, n)
        with live_server(repository, source=source, grpc_port="0", timeout=600) as url:
            figures[n] = loaded_footprint(url, names)
        shutil.rmtree(repository)
    (rss_n, threads_n), (rss_1, threads_1) = figures[copies], figures[1]
    graph = (SOURCE / "model.onnx").stat().st_size
    per_model = (rss_n - rss_1) / (copies - 1)
    return {
        "rss_one_mb": rss_1 / 1e6,
        "rss_all_mb": rss_n / 1e6,
        "per_model_mb": per_model / 1e6,
        "per_model_over_graph": per_model / graph,
        "threads_per_model": (threads_n - threads_1) / (copies - 1),
        "graph_mb": graph / 1e6,
    }


@contextmanager
def checkout(revision: str):
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), revision],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)


# -- 2. the fleet ------------------------------------------------------------------------------


def metric(url: str, name: str) -> float:
    """A metric summed over its series."""
    text = httpx.get(f"{url}/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def cold_and_warm(url: str, names: list[str]) -> tuple[list[float], list[float]]:
    connection = Connection("127.0.0.1", port_of(url))
    cold, warm = [], []
    for name in names:
        cold.append(await post(connection, name))
        warm.append(await post(connection, name))
    await connection.close()
    return cold, warm


def zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (rank**s) for rank in range(1, n + 1)]


async def closed_loop(url: str, names: list[str], weights: list[float], clients: int,
                      seconds: float, seed: int) -> dict:  # fmt: skip
    """`clients` connections, each sending its next request when the last one answers."""
    rng = random.Random(seed)
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        connection = Connection("127.0.0.1", port_of(url))
        while time.perf_counter() < stop:
            name = rng.choices(names, weights)[0]
            try:
                latencies.append(await post(connection, name))
            except RuntimeError:
                errors += 1
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "requests": len(latencies),
        "errors": errors,
    }


def run_fleet(args: argparse.Namespace, work: Path) -> dict:
    repository = work / "fleet"
    names = fleet(repository, args.copies)
    room = args.room
    started = time.perf_counter()
    with live_server(repository, grpc_port="0", max_loaded_models=str(room), timeout=600) as url:
        figures: dict = {"ready_s": time.perf_counter() - started}
        figures["rss_start_mb"] = process_status(url.pid)[0] / 1e6
        cold, warm = asyncio.run(cold_and_warm(url, names[:room]))
        figures["cold_ms"] = 1000 * statistics.median(cold)
        figures["warm_ms"] = 1000 * statistics.median(warm)
        figures["rss_full_mb"] = process_status(url.pid)[0] / 1e6
        weights = zipf_weights(len(names), args.zipf)
        zipf, hot = [], []
        for round_ in range(args.rounds):
            loads = metric(url, "rnnserve_model_loads_total")
            cold_starts = metric(url, "rnnserve_cold_start_seconds_count")
            seconds = args.seconds / args.rounds
            result = asyncio.run(
                closed_loop(url, names, weights, args.clients, seconds, seed=round_)
            )
            result["loads"] = metric(url, "rnnserve_model_loads_total") - loads
            result["cold_starts"] = metric(url, "rnnserve_cold_start_seconds_count") - cold_starts
            zipf.append(result)
            hot.append(
                asyncio.run(
                    closed_loop(
                        url, names[:room], weights[:room], args.clients, seconds, seed=round_
                    )
                )
            )
            print(f"round {round_ + 1}: zipf over {len(names)} {zipf[-1]}\n"
                  f"         the {room} most popular {hot[-1]}", flush=True)  # fmt: skip
        figures["rss_end_mb"] = process_status(url.pid)[0] / 1e6
        figures["evictions"] = metric(url, "rnnserve_model_evictions_total")
        figures["threads_end"] = process_status(url.pid)[1]
    shutil.rmtree(repository)
    for label, results in (("zipf", zipf), ("hot", hot)):
        figures[label] = {
            key: statistics.median(r[key] for r in results) for key in results[0]
        } | {"requests": sum(r["requests"] for r in results),
             "errors": sum(r["errors"] for r in results)}  # fmt: skip
    figures["zipf"]["loads"] = sum(r["loads"] for r in zipf)
    figures["zipf"]["cold_starts"] = sum(r["cold_starts"] for r in zipf)
    # How often a request fell outside the room, for this distribution (the model's answer).
    figures["zipf"]["share_outside_room"] = sum(weights[room:]) / sum(weights)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    p.add_argument("--copies", type=int, default=200)
    p.add_argument("--room", type=int, default=20)
    p.add_argument("--memory-copies", type=int, default=30)
    p.add_argument("--before", default="main", help="the revision to compare memory with")
    p.add_argument("--seconds", type=float, default=24, help="of Zipf load, in all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--zipf", type=float, default=1.0, help="the exponent s: weight 1/rank^s")
    p.add_argument("--out", type=Path, help="write the figures there as JSON")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp, checkout(args.before) as before:
        work = Path(tmp)
        for label, source in (("before", before), ("after", ROOT)):
            results[f"memory_{label}"] = memory_per_model(source, args.memory_copies, work)
            print(label, results[f"memory_{label}"], flush=True)
        results["fleet"] = run_fleet(args, work)
    print(report(results, args))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def report(results: dict, args: argparse.Namespace) -> str:
    lines = [f"\nmemory per loaded model ({args.memory_copies} copies of sst2-lstm, each sent "
             "8 texts; against one copy):",
             "| code | resident per model | x graph | threads per model |",
             "|---|---|---|---|"]  # fmt: skip
    for label in ("before", "after"):
        m = results[f"memory_{label}"]
        lines.append(
            f"| {label} ({args.before if label == 'before' else 'this checkout'}) "
            f"| {m['per_model_mb']:.1f} MB | {m['per_model_over_graph']:.2f}x "
            f"| {m['threads_per_model']:.2f} |"
        )
    f = results["fleet"]
    lines += [
        f"\nfleet: {args.copies} copies, room for {args.room}; ready in {f['ready_s']:.1f} s; "
        f"resident {f['rss_start_mb']:.0f} MB at start, {f['rss_full_mb']:.0f} MB with the "
        f"room full, {f['rss_end_mb']:.0f} MB after the Zipf load; {f['threads_end']} threads",
        f"first request (cold) median {f['cold_ms']:.0f} ms against {f['warm_ms']:.2f} ms warm",
        f"\n{args.clients} clients, {args.rounds} alternating rounds, {args.seconds:g} s each way:",
        "| requests over | req/s | p50 ms | p99 ms | loads | errors |",
        "|---|---|---|---|---|---|",
    ]
    for label, what in (("zipf", f"{args.copies} models, Zipf s={args.zipf:g}"),
                        ("hot", f"the {args.room} most popular (all loaded)")):  # fmt: skip
        r = f[label]
        lines.append(
            f"| {what} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.1f} "
            f"| {r.get('loads', 0):.0f} | {r['errors']} |"
        )
    z = f["zipf"]
    lines.append(
        f"\nZipf over {args.copies}: {z['rps'] / f['hot']['rps']:.2f}x the throughput of the hot "
        f"{args.room}; {z['share_outside_room']:.0%} of requests fall outside the {args.room} "
        f"most popular; {z['cold_starts']:.0f} requests waited for a load; "
        f"{f['evictions']:.0f} evictions in all"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
