"""Forecaster: streaming sessions versus re-sending the whole history on every step.

A real server (uvicorn, HTTP) serves the forecaster alone. Closed-loop clients each follow
their own series, one new observation per request, sending the next when the answer arrives:

- session: the history is fed once into a session; each step sends the new value only
  (`POST .../sessions/{id}:step`), so the server reads one value and the carried state;
- re-send: each step sends the whole history of H values to the stateless `:predict`,
  so the server reads H values every time.

History `mixed`: real clients do not all carry the same history. Each session is filled with
one of 16, 64, 256, 1,024 or 4,096 values (client by client), and each re-sent request
carries the last 16, 64, 256, 1,024 or 4,096 values (request by request, in turn).

    .venv/bin/python -m bench.forecast [--model models/co2-gru] [--histories 64,512,4096]
                                       [--clients 1,16] [--seconds 3]  (histories: also `mixed`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench.inprocess import latest_version
from bench.rawclient import Connection
from contract.manifest import Manifest
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
MIXED = (16, 64, 256, 1024, 4096)


def series(n: int, seed: int) -> np.ndarray:
    """A CO2-like weekly series: trend, yearly season, noise (ppm)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 330 + 0.03 * t + 3 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 0.3, n)


async def client_loop(
    host: str,
    port: int,
    name: str,
    mode: str,
    history: int,
    max_values: int,
    seed: int,
    seconds: float,
    together: asyncio.Barrier,
    clock: dict[str, float],
    latencies: list[float],
    mix: tuple[int, ...] = (),
) -> None:
    """Set up (untimed: open the connection, fill the session, three warm-up steps), wait for
    every client, then step for `seconds`."""
    conn = Connection(host, port)
    values = series(history + 200_000, seed)
    filled = mix[seed % len(mix)] if mix else history  # this client's session history
    if mode == "session":
        reply = await conn.post(f"/v1/models/{name}/sessions", b"{}")
        session = orjson.loads(reply.body)["session_id"]
        path = f"/v1/models/{name}/sessions/{session}:step"
        for start in range(history - filled, history, max_values):
            chunk = values[start : min(start + max_values, history)].tolist()
            reply = await conn.post(path, orjson.dumps({"values": chunk}))
            assert reply.status == 200, reply.body
    else:
        path = f"/v1/models/{name}:predict"

    def body(n: int) -> bytes:
        if mode == "session":
            return orjson.dumps({"values": [float(values[n])]})
        window = mix[n % len(mix)] if mix else history
        return orjson.dumps({"instances": [values[n - window + 1 : n + 1].tolist()]})

    n = history
    for _ in range(3):
        assert (await conn.post(path, body(n))).status == 200
        n += 1
    await together.wait()
    clock.setdefault("start", time.perf_counter())
    stop = clock["start"] + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        reply = await conn.post(path, body(n))
        latencies.append(time.perf_counter() - started)
        assert reply.status == 200, reply.body
        n += 1
    clock["end"] = max(clock.get("end", 0.0), time.perf_counter())
    await conn.close()


async def measure(
    url: str,
    name: str,
    mode: str,
    history: int,
    clients: int,
    seconds: float,
    max_values: int,
    mix: tuple[int, ...] = (),
) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    clock: dict[str, float] = {}
    together = asyncio.Barrier(clients)
    await asyncio.gather(
        *(
            client_loop(
                host,
                int(port),
                name,
                mode,
                history,
                max_values,
                i,
                seconds,
                together,
                clock,
                latencies,
                mix,
            )
            for i in range(clients)
        )
    )
    ms = np.array(latencies) * 1000
    return {
        "steps_per_s": len(latencies) / (clock["end"] - clock["start"]),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "steps": len(latencies),
    }


def run(folder: Path, histories: list[str], levels: list[int], seconds: float) -> dict:
    manifest = Manifest.read(folder)
    max_values = manifest.preprocessing.max_values
    repository = Path(tempfile.mkdtemp(prefix="bench-forecast-"))
    shutil.copytree(folder, repository / manifest.name / str(manifest.version))
    results: dict = {}
    try:
        with live_server(
            repository, intra_op_threads="2", session_ttl_s="600", max_sessions="1024"
        ) as url:
            for label in histories:
                mix = tuple(m for m in MIXED if m <= max_values) if label == "mixed" else ()
                history = max(mix) if mix else int(label)
                if history > max_values:
                    print(f"history {history} is over the model's {max_values} values; skipped")
                    continue
                for mode in ("session", "re-send"):
                    for clients in levels:
                        print(f"history {label}, {mode}, {clients} clients ...", flush=True)
                        results.setdefault(label, {}).setdefault(mode, {})[clients] = asyncio.run(
                            measure(
                                url,
                                manifest.name,
                                mode,
                                history,
                                clients,
                                seconds,
                                max_values,
                                mix,
                            )
                        )
    finally:
        shutil.rmtree(repository, ignore_errors=True)
    return results


def table(results: dict, levels: list[int]) -> str:
    lines = [
        f"{'history':>8} {'mode':<9}"
        + "".join(f"{f'c={c} steps/s':>14}{'p50 ms':>9}{'p99 ms':>9}" for c in levels)
    ]
    for history, modes in results.items():
        for mode, by_level in modes.items():
            lines.append(
                f"{history:>8} {mode:<9}"
                + "".join(
                    f"{r['steps_per_s']:>14.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                    for r in (by_level[c] for c in levels)
                )
            )
        session, resend = modes["session"], modes["re-send"]
        lines.append(
            f"{'':>8} {'ratio':<9}"
            + "".join(
                f"{session[c]['steps_per_s'] / resend[c]['steps_per_s']:>13.1f}x"
                f"{resend[c]['p50_ms'] / session[c]['p50_ms']:>8.1f}x"
                f"{resend[c]['p99_ms'] / session[c]['p99_ms']:>8.1f}x"
                for c in levels
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.forecast", description=__doc__)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "co2-gru")
    p.add_argument("--histories", default="64,512,4096,mixed")
    p.add_argument("--clients", default="1,16", help="concurrent closed-loop clients")
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per cell")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    histories = args.histories.split(",")
    levels = [int(c) for c in args.clients.split(",")]
    folder = latest_version(args.model)
    results = run(folder, histories, levels, args.seconds)
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    print(
        f"\n{shown}: one new value per step over HTTP, closed loop, {args.seconds:g} s per cell"
        " (ratio: session over re-send for steps/s, re-send over session for latency)"
    )
    print(table(results, levels))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
