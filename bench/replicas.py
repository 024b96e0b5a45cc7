"""Two replicas behind HAProxy share sessions through Redis; one is killed and restarted mid-run.

redis-server, two rnnserve instances (RNNSERVE_SESSION_STORE=redis://...) and HAProxy (round
robin, no stickiness, readiness checks) run on this machine. Clients step many sessions through
HAProxy, each a few values at a time; partway through, one instance is killed (SIGKILL) and
started again. A failed step is retried with the same `expect_steps`, so a step whose answer was
lost is answered again rather than applied twice. Afterwards a single in-memory server steps the
same values through its own sessions, and every forecast must equal its forecast (1e-5).

    .venv/bin/python -m bench.replicas [--model models/co2-gru] [--sessions 200] [--steps 50]
                                       [--clients 32] [--out bench/results/replicas.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.inprocess import latest_version
from contract.manifest import Manifest
from tests.live_server import free_port, live_server
from tests.scaleout import haproxy, redis_server

ROOT = Path(__file__).resolve().parent.parent
RETRYABLE = {502, 503, 504}


@dataclass
class Figures:
    sessions: int = 0
    steps: int = 0  # steps answered (after retries)
    values: int = 0
    failed_requests: int = 0  # attempts that failed (each was retried)
    failed_steps: int = 0  # steps that failed even after retries
    restarts: int = 0
    lost_sessions: int = 0
    mismatches: int = 0
    max_rel_diff: float = 0.0
    seconds: float = 0.0
    served_by: dict[str, int] = field(default_factory=dict)  # steps answered per instance


def chunks(seed: int, steps: int, most: int) -> list[list[float]]:
    """A session's values, CO2-like, cut into steps of 1..most values."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, most + 1, steps)
    t = np.arange(int(sizes.sum()))
    series = 330 + 0.03 * t + 3 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 0.3, len(t))
    ends = np.cumsum(sizes)
    return [series[end - size : end].tolist() for size, end in zip(sizes, ends, strict=True)]


async def step_with_retries(
    client: httpx.AsyncClient, path: str, values: list[float], seen: int, figures: Figures
) -> dict | None:
    body = {"values": values, "expect_steps": seen}
    for _ in range(50):
        try:
            reply = await client.post(path, json=body)
            if reply.status_code == 200:
                answer = reply.json()
                if answer["steps"] != seen + len(values):
                    raise AssertionError(f"{path}: {answer['steps']} steps after {seen}")
                return answer
            if reply.status_code not in RETRYABLE:
                raise AssertionError(f"{path}: {reply.status_code} {reply.text}")
        except httpx.TransportError:
            pass
        figures.failed_requests += 1
        await asyncio.sleep(0.1)
    figures.failed_steps += 1
    return None


async def retried(
    client: httpx.AsyncClient, method: str, path: str, figures: Figures
) -> httpx.Response:
    """A request that may meet the killed replica: retried on a transport error or 502..504;
    any other answer (a lost session's 410 included) is returned."""
    for _ in range(50):
        try:
            reply = await client.request(method, path)
            if reply.status_code not in RETRYABLE:
                return reply
        except httpx.TransportError:
            pass
        figures.failed_requests += 1
        await asyncio.sleep(0.1)
    raise AssertionError(f"{method} {path} failed 50 times")


async def drive(
    front: str,
    model: str,
    plan: dict[int, list[list[float]]],
    clients: int,
    figures: Figures,
    progress: asyncio.Event,
    kill_after: int,
    back: asyncio.Event,
    hold_after: int,
) -> dict[int, list[list[float] | None]]:
    """Step every session of `plan` through `front`; set `progress` after `kill_after` steps,
    and past `hold_after` steps wait for `back` (the killed replica in rotation again), so the
    rest of the run has both replicas whatever the speed of the machine."""
    forecasts: dict[int, list[list[float] | None]] = {}
    gate = asyncio.Semaphore(clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=front, timeout=30, limits=limits) as client:

        async def one(key: int) -> None:
            async with gate:
                # A create whose answer is lost leaves a session nobody steps: it expires.
                created = await retried(client, "POST", f"/v1/models/{model}/sessions", figures)
                session = created.json()["session_id"]
                path = f"/v1/models/{model}/sessions/{session}:step"
                seen, got = 0, []
                for values in plan[key]:
                    if figures.steps >= hold_after:
                        await back.wait()
                    answer = await step_with_retries(client, path, values, seen, figures)
                    got.append(answer["forecast"] if answer else None)
                    if answer is None:
                        break
                    seen += len(values)
                    figures.steps += 1
                    figures.values += len(values)
                    if figures.steps == kill_after:
                        progress.set()
                info = await retried(
                    client, "GET", f"/v1/models/{model}/sessions/{session}", figures
                )
                if info.status_code != 200 or info.json()["steps"] != seen:
                    figures.lost_sessions += 1
                forecasts[key] = got

        await asyncio.gather(*(one(key) for key in plan))
    return forecasts


async def reference(url: str, model: str, plan: dict[int, list[list[float]]]) -> dict:
    """The same steps on one in-memory server, one session after another."""
    out: dict[int, list[list[float]]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for key, steps in plan.items():
            created = await client.post(f"/v1/models/{model}/sessions")
            path = f"/v1/models/{model}/sessions/{created.json()['session_id']}:step"
            out[key] = [
                (await client.post(path, json={"values": v})).json()["forecast"] for v in steps
            ]
    return out


HAPROXY_RISE_S = 0.6  # three of the load balancer's 200 ms checks (rise 1)


def served_by(urls: list[str], model: str) -> dict[str, int]:
    """Session steps and predictions each instance answered (its request counter)."""
    counts = {}
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        counts[url] = int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("rnnserve_requests_total") and f'model="{model}"' in line
            )
        )
    return counts


def run(
    repository: Path,
    model: str,
    sessions: int,
    steps: int,
    clients: int,
    most_values: int = 4,
    kill_at: float = 0.3,
    hold_at: float = 0.6,
    down_s: float = 0.5,
    **settings: str,
) -> tuple[Figures, dict, dict]:
    """The whole run; returns the figures, the forecasts through HAProxy and the reference's."""
    plan = {key: chunks(key, steps, most_values) for key in range(sessions)}
    figures = Figures(sessions=sessions)
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        store = stack.enter_context(redis_server())
        replica = {"session_store": store, "repository_poll_s": "0", **settings}
        urls = [stack.enter_context(live_server(repository, port=p, **replica)) for p in ports]
        front = stack.enter_context(haproxy(urls))

        async def scenario() -> dict:
            progress, back = asyncio.Event(), asyncio.Event()
            total = sessions * steps
            driving = asyncio.create_task(
                drive(
                    front,
                    model,
                    plan,
                    clients,
                    figures,
                    progress,
                    int(kill_at * total),
                    back,
                    int(hold_at * total),
                )
            )
            await progress.wait()
            os.kill(urls[1].pid, signal.SIGKILL)  # a crash: nothing is drained
            await asyncio.sleep(down_s)
            again = await asyncio.to_thread(
                stack.enter_context, live_server(repository, port=ports[1], **replica)
            )
            urls[1] = again
            figures.restarts += 1
            await asyncio.sleep(HAPROXY_RISE_S)  # its health check puts it back in rotation
            back.set()
            return await driving

        started = time.perf_counter()
        got = asyncio.run(scenario())
        figures.seconds = time.perf_counter() - started
        figures.served_by = dict(
            zip(("a", "b (restarted)"), served_by(urls, model).values(), strict=True)
        )
        with live_server(repository, repository_poll_s="0", **settings) as single:
            want = asyncio.run(reference(single, model, plan))
    for key, forecasts in got.items():
        for mine, theirs in zip(forecasts, want[key], strict=False):
            if mine is None:
                continue
            diff = float(
                np.max(np.abs(np.subtract(mine, theirs)) / np.maximum(1.0, np.abs(theirs)))
            )
            figures.max_rel_diff = max(figures.max_rel_diff, diff)
            figures.mismatches += diff > 1e-5
    return figures, got, want


def main(argv: list[str] | None = None) -> Figures:
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "co2-gru")
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--steps", type=int, default=50, help="steps per session")
    p.add_argument("--clients", type=int, default=32, help="sessions stepped at once")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    folder = latest_version(args.model)
    manifest = Manifest.read(folder)
    repository = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    shutil.copytree(folder, repository / manifest.name / str(manifest.version))
    try:
        figures, _, _ = run(
            repository, manifest.name, args.sessions, args.steps, args.clients, intra_op_threads="1"
        )
    finally:
        shutil.rmtree(repository, ignore_errors=True)
    print(json.dumps(asdict(figures), indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
