"""Soak: steady load for a long time; resident memory, open files and threads must not grow.

`python -m bench.soak [--seconds 600]` (`make soak`): after a warm-up, samples the server's
RSS, file descriptors and threads every few seconds and prints their growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from bench.payloads import texts
from bench.rawclient import Connection
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


async def load(url: str, seconds: float, concurrency: int) -> dict[int, int]:
    host, port = url.removeprefix("http://").split(":")
    bodies = [json.dumps({"instances": [t]}).encode() for t in texts(500, tokens=32)]
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def worker(k: int) -> None:
        connection, i = Connection(host, int(port)), k
        while time.monotonic() < deadline:
            reply = await connection.post("/v1/models/sst2-lstm:predict", bodies[i % 500])
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            i += concurrency
        await connection.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return statuses


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--warmup", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--every", type=float, default=10)
    args = p.parse_args()
    with live_server(ROOT / "models") as url:
        pid = url.pid
        samples: list[tuple[float, dict]] = []

        async def observe() -> None:
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                samples.append((time.monotonic() - started, sample(pid)))
                await asyncio.sleep(args.every)

        async def both():
            return (await asyncio.gather(load(url, args.seconds, args.concurrency), observe()))[0]

        statuses = asyncio.run(both())
    steady = [s for t, s in samples if t >= args.warmup]
    first, last = steady[0], steady[-1]
    print(
        f"{sum(statuses.values())} requests in {args.seconds:.0f} s at concurrency "
        f"{args.concurrency}: statuses {statuses}"
    )
    print(f"{'t (s)':>7}{'RSS MB':>9}{'fds':>6}{'threads':>9}")
    for t, s in samples:
        print(f"{t:>7.0f}{s['rss_mb']:>9.1f}{s['fds']:>6}{s['threads']:>9}")
    growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
    print(
        f"after warm-up: RSS {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB "
        f"({growth:+.1%}), fds {first['fds']} -> {last['fds']}, "
        f"threads {first['threads']} -> {last['threads']}"
    )
    ok = growth < 0.05 and last["fds"] <= first["fds"] and last["threads"] <= first["threads"]
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
