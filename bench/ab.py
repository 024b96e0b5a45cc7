"""This checkout's server against another checkout's, both up, measured in turn (interleaved A/B).

On a shared, noisy machine two separate `python -m bench` runs differ by more than a change
does; alternating short wrk runs between two live servers compares them under the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
from contextlib import ExitStack
from pathlib import Path

from bench.http import wrk
from bench.payloads import write_bodies
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("baseline", type=Path, help="another checkout of rnnserve (its models too)")
    p.add_argument("--model", default="sst2-lstm")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--levels", default="1,64", help="concurrency levels")
    args = p.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this checkout": ROOT}
    levels = [int(c) for c in args.levels.split(",")]
    bodies = write_bodies(RESULTS, tokens=64)
    path = f"/v1/models/{args.model}:predict"
    rps: dict[str, dict[int, list[float]]] = {name: {c: [] for c in levels} for name in trees}
    with ExitStack() as stack:
        urls = {}
        for name, tree in trees.items():
            os.chdir(tree)  # `python -m service` runs the code of the folder it starts in
            urls[name] = stack.enter_context(live_server(tree / "models"))
        for i in range(args.rounds):
            for c in levels:
                for name in list(trees)[:: 1 if i % 2 == 0 else -1]:
                    rps[name][c].append(wrk(urls[name], path, bodies, c, args.seconds)["rps"])
    print(f"req/s, {args.model}, one 64-token text per request; median of {args.rounds} runs")
    print(f"{'server':<16}" + "".join(f"{f'c={c}':>10}" for c in levels))
    for name, by_level in rps.items():
        print(f"{name:<16}" + "".join(f"{statistics.median(by_level[c]):>10.0f}" for c in levels))


if __name__ == "__main__":
    main()
