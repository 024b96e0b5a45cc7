"""What scaling out costs and gives, in one run: session steps with the memory store against
Redis, and one worker against two on the classifier.

- sessions: the forecaster behind one server, closed-loop clients each stepping their own
  session one value at a time (bench.forecast's client), store `memory` then `redis://`
  (a local redis-server); c=1 and c=16.
- workers: the classifier, one text per request, wrk at c=1 and c=64; one worker (onnxruntime
  threads = cores) against two workers with one onnxruntime thread each.

    .venv/bin/python -m bench.scaleout [--seconds 3] [--out bench/results/scaleout.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from bench.__main__ import measure_http
from bench.forecast import measure
from bench.inprocess import latest_version
from bench.payloads import write_bodies
from model_src.manifest import Manifest
from tests.live_server import live_server
from tests.scaleout import redis_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def sessions(model: Path, levels: list[int], seconds: float) -> dict:
    folder = latest_version(model)
    manifest = Manifest.read(folder)
    repository = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    shutil.copytree(folder, repository / manifest.name / str(manifest.version))
    results: dict = {}
    try:
        with redis_server() as url:
            for store in ("memory", url):
                label = "memory" if store == "memory" else "redis"
                with live_server(repository, session_store=store, intra_op_threads="2") as server:
                    for clients in levels:
                        print(f"session steps, {label} store, {clients} clients ...", flush=True)
                        results.setdefault(label, {})[clients] = asyncio.run(
                            measure(
                                server,
                                manifest.name,
                                "session",
                                64,
                                clients,
                                seconds,
                                manifest.preprocessing.max_values,
                            )
                        )
    finally:
        shutil.rmtree(repository, ignore_errors=True)
    return results


def workers(model: str, levels: list[int], seconds: float) -> dict:
    bodies = write_bodies(RESULTS, tokens=32)
    path = f"/v1/models/{model}:predict"
    results: dict = {}
    for label, settings in (
        ("1 worker", {"workers": "1"}),
        ("2 workers x 1 thread", {"workers": "2", "intra_op_threads": "1"}),
    ):
        print(f"classifier, {label} ...", flush=True)
        with live_server(ROOT / "models", **settings) as url:
            results[label] = measure_http(url, path, bodies, levels, seconds)
    return results


def table(title: str, rows: dict, levels: list[int], rate: str, unit: str) -> str:
    lines = [
        f"\n{title}",
        f"{'':<22}" + "".join(f"{f'c={c} {unit}':>14}{'p50 ms':>9}{'p99 ms':>9}" for c in levels),
    ]
    for name, by_level in rows.items():
        lines.append(
            f"{name:<22}"
            + "".join(
                f"{r[rate]:>14.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                for r in (by_level[c] for c in levels)
            )
        )
    first, second = rows.values()
    lines.append(
        f"{'ratio (2nd / 1st)':<22}"
        + "".join(
            f"{second[c][rate] / first[c][rate]:>13.2f}x"
            f"{second[c]['p50_ms'] / first[c]['p50_ms']:>8.2f}x"
            f"{second[c]['p99_ms'] / first[c]['p99_ms']:>8.2f}x"
            for c in levels
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    p.add_argument("--forecaster", type=Path, default=ROOT / "models" / "co2-gru")
    p.add_argument("--classifier", default="sst2-lstm")
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per cell")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    results = {
        "sessions": sessions(args.forecaster, [1, 16], args.seconds),
        "workers": workers(args.classifier, [1, 64], args.seconds),
    }
    print(
        table(
            "session steps, one value each", results["sessions"], [1, 16], "steps_per_s", "steps/s"
        )
    )
    print(
        table(
            f"{args.classifier}, one 32-token text per request",
            results["workers"],
            [1, 64],
            "rps",
            "req/s",
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
