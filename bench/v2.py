"""V2 JSON with INT64 `tokens` against V1 with the same text, on the default classifier, in one
run; with `--source`, also on servers started from other checkouts (before/after a change).
Besides req/s it reports the server's CPU time per request, which another process's load on
a shared machine disturbs far less.

    python -m bench.v2 [--source before=/path/to/old/checkout] [--levels 1,64]
                       [--workloads sst2-dev,fixed-64] [--data data/sst2]

Each workload (bench/workloads.py) is measured in turn: SST-2 dev sentences, one per request,
and one 64-token text per request.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from bench.http import wrk
from bench.inprocess import latest_version
from bench.workloads import (
    DEFAULT_DATA,
    NAMES,
    Workload,
    load_all,
    token_ids,
    v1_text,
    v2_tokens,
    write_lines,
)
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def write_bodies(model: str, work: Workload) -> dict[str, Path]:
    """The workload's texts as V1 instances and as V2 INT64 token ids at their real lengths
    (the ids the model's vocabulary gives them)."""
    folder = latest_version(ROOT / "models" / model)
    ids = token_ids(folder, work.texts)
    return {
        "v1 text": write_lines(RESULTS / f"v1-{work.name}.jsonl", v1_text(work.texts)),
        "v2 tokens": write_lines(RESULTS / f"v2-tokens-{work.name}.jsonl", v2_tokens(ids)),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads): steadier than req/s on a
    shared machine, since other processes' load does not count."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, pid: int, path: str, body: Path, connections: int, seconds: float) -> dict:
    before = cpu_seconds(pid)
    stats = wrk(url, path, body, connections, seconds)
    stats["cpu_s"] = cpu_seconds(pid) - before
    return stats


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.v2", description=__doc__)
    p.add_argument("--model", default="sst2-lstm")
    p.add_argument("--seconds", type=float, default=8.0, help="per measurement, all rounds")
    p.add_argument("--rounds", type=int, default=4, help="turns the servers and APIs take")
    p.add_argument("--levels", default="1,64")
    p.add_argument("--workloads", default=",".join(NAMES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 folder (its dev split)")
    p.add_argument("--source", action="append", default=[], help="NAME=PATH of a checkout")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.levels.split(",")]
    sources = dict(s.split("=", 1) for s in args.source) | {"this checkout": str(ROOT)}
    results = {
        w.name: compare(args.model, w, sources, levels, args.seconds, args.rounds)
        for w in load_all(args.workloads.split(","), args.data)
    }
    (RESULTS / "v2.json").write_text(json.dumps(results, indent=1))


def compare(
    model: str,
    work: Workload,
    sources: dict[str, str],
    levels: list[int],
    seconds: float,
    rounds: int,
) -> dict:
    """V1 text against V2 tokens for one workload, on every checkout, in interleaved turns."""
    bodies = write_bodies(model, work)
    paths = {"v1 text": f"/v1/models/{model}:predict",
             "v2 tokens": f"/v2/models/{model}/infer"}  # fmt: skip
    rows: dict[str, dict[int, dict]] = {}
    with ExitStack() as stack:
        # Every server up at once, measured in turn, round after round: a slow spell of the
        # shared machine then falls on all of them alike instead of on whichever ran last.
        running = {
            name: stack.enter_context(
                live_server(ROOT / "models", source=Path(source).resolve(), grpc_port="0")
            )
            for name, source in sources.items()
        }
        for url in running.values():
            for kind, body in bodies.items():
                wrk(url, paths[kind], body, 16, 2)  # warm up
        for _ in range(rounds):
            for c in levels:
                for name, url in running.items():
                    for kind, body in bodies.items():
                        part = measure(url, url.pid, paths[kind], body, c, seconds / rounds)
                        total = rows.setdefault(f"{name}: {kind}", {}).setdefault(c, {})
                        for key in ("requests", "seconds", "cpu_s"):
                            total[key] = total.get(key, 0) + part[key]
                        total.setdefault("p50s", []).append(part["p50_ms"])
    for by_level in rows.values():
        for total in by_level.values():
            total["rps"] = total["requests"] / total["seconds"]
            total["cpu_us"] = total["cpu_s"] / total["requests"] * 1e6
            total["p50_ms"] = sorted(total["p50s"])[len(total["p50s"]) // 2]
    print(f"\n{model}, {work.description}")
    print(
        f"{'server: API':<30}"
        + "".join(f"{f'c={c} req/s':>12}{'p50 ms':>9}{'CPU us/req':>12}" for c in levels)
    )
    for label, by_level in rows.items():
        cells = "".join(
            f"{by_level[c]['rps']:>12.0f}{by_level[c]['p50_ms']:>9.2f}{by_level[c]['cpu_us']:>12.0f}"
            for c in levels
        )
        print(f"{label:<30}{cells}")
    print("\nV2 tokens / V1 text: req/s (higher is better), server CPU per request (lower is)")
    for name in sources:
        v1, v2 = rows[f"{name}: v1 text"], rows[f"{name}: v2 tokens"]
        cells = [
            f"c={c}: {v2[c]['rps'] / v1[c]['rps']:.2f}, CPU {v2[c]['cpu_us'] / v1[c]['cpu_us']:.2f}"
            for c in levels
        ]
        print(f"  {name:<28}" + "   ".join(cells))
    print("\nevent-loop CPU per request, in-process (python -m bench.v2_loop), 64 at once:")
    loop = {}
    for name, source in sources.items():
        env = {**os.environ, "PYTHONPATH": f"{Path(source).resolve()}{os.pathsep}{ROOT}"}
        out = subprocess.run(
            [sys.executable, "-m", "bench.v2_loop", str(bodies["v1 text"]),
             str(bodies["v2 tokens"]), "--model", model],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        loop[name] = json.loads(out.strip().splitlines()[-1])
        v1, v2 = loop[name]["v1 text"]["loop_cpu_us"], loop[name]["v2 tokens"]["loop_cpu_us"]
        print(f"  {name:<28}V1 text {v1:.0f} us, V2 tokens {v2:.0f} us: {v2 / v1:.2f}")
    return {"http": rows, "loop": loop}


if __name__ == "__main__":
    main()
