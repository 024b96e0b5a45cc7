"""The event loop's CPU time per request, V1 text against V2 tokens, in-process (no sockets):
64 requests at once through the ASGI app, in alternating rounds. The event loop is the one
thread that per-request parsing and answering load; thread CPU time barely moves with the
machine's other load. `python -m bench.v2` runs this for each checkout it compares.

    python -m bench.v2_loop V1_BODIES V2_BODIES [--rounds 12]   (prints one JSON line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def call(app, path: str, body: bytes) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect
        return {}

    status = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    assert status == [200], status


async def measure(model: str, bodies: dict[str, list[bytes]], rounds: int) -> dict:
    fields = Settings.model_fields
    extra = {"grpc_port": 0} if "grpc_port" in fields else {}  # older checkouts lack it
    app = create_app(
        Settings(
            model_repository=ROOT / "models",
            providers="cpu",
            log_level="warning",
            repository_poll_s=0,
            **extra,
        )
    )
    paths = {"v1 text": f"/v1/models/{model}:predict", "v2 tokens": f"/v2/models/{model}/infer"}
    loop_s = dict.fromkeys(bodies, 0.0)
    wall_s = dict.fromkeys(bodies, 0.0)
    count = 0
    async with app.router.lifespan_context(app):
        while app.state.repository.not_ready():
            await asyncio.sleep(0.1)
        for r in range(rounds + 2):  # two rounds of warm-up
            for kind, lines in bodies.items():
                cpu, wall = time.thread_time(), time.perf_counter()
                for k in range(5):
                    batch = [lines[(r * 320 + k * 64 + i) % len(lines)] for i in range(64)]
                    await asyncio.gather(*(call(app, paths[kind], b) for b in batch))
                if r >= 2:
                    loop_s[kind] += time.thread_time() - cpu
                    wall_s[kind] += time.perf_counter() - wall
            count += 320 if r >= 2 else 0
    return {kind: {"loop_cpu_us": loop_s[kind] / count * 1e6, "rps": count / wall_s[kind]}
            for kind in bodies}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.v2_loop", description=__doc__)
    p.add_argument("v1_bodies", type=Path)
    p.add_argument("v2_bodies", type=Path)
    p.add_argument("--model", default="sst2-lstm")
    p.add_argument("--rounds", type=int, default=12)
    args = p.parse_args()
    bodies = {
        "v1 text": [line.encode() for line in args.v1_bodies.read_text().splitlines()],
        "v2 tokens": [line.encode() for line in args.v2_bodies.read_text().splitlines()],
    }
    print(json.dumps(asyncio.run(measure(args.model, bodies, args.rounds))))


if __name__ == "__main__":
    main()
