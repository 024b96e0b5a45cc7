"""Servers in their own processes and wrk as the load generator in another."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.live_server import ServerURL, free_port

LUA = Path(__file__).with_name("wrk_post.lua")


@contextmanager
def uvicorn_app(factory: str, env: dict[str, str], probe_body: str, path: str):
    """`uvicorn --factory <factory>` on a free port, ready once a POST answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env},
    )
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = process.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (
                    httpx.post(
                        url + path,
                        content=probe_body,
                        timeout=2,
                        headers={"content-type": "application/json"},
                    ).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{factory} did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def wrk(url: str, path: str, bodies: Path, connections: int, seconds: float) -> dict:
    """Throughput and latency percentiles at a fixed number of open connections."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian/Ubuntu)")
    threads = 1 if connections < 4 else 2
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ],
        env={**os.environ, "BODIES": str(bodies), "TARGET_PATH": path},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats = json.loads(out.strip().splitlines()[-1])
    stats["rps"] = stats["requests"] / stats["seconds"]
    return stats


def throughput_table(rows: dict[str, dict[int, dict]], levels: list[int], what: str) -> str:
    """req/s, p50 and p99 of each row (wrk's figures) at each concurrency level."""
    width = max(len(what), *(len(name) for name in rows)) + 2
    header = "".join(f"{f'c={c} req/s':>12}{'p50 ms':>9}{'p99 ms':>9}" for c in levels)
    lines = [f"{what:<{width}}{header}"]
    for name, by_level in rows.items():
        cells = "".join(
            f"{s['rps']:>12.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
            for s in (by_level[c] for c in levels)
        )
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)
