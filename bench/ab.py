"""Before and after, in one run: the classifier served by this checkout and by another
revision, measured in alternation so that both see the same machine.

`python -m bench.ab --before REV [--rounds 3] [--seconds 8]` checks REV out into a temporary
git worktree, serves `sst2-lstm` from both trees (each its own `python -m service`), and
interleaves wrk runs at c=1 and c=64, which of the two goes first alternating from round to
round. It prints each round and the after/before ratio of the
medians. For refactors that must not cost speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.http import wrk
from bench.payloads import write_bodies
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PATH = "/v1/models/sst2-lstm:predict"


@contextmanager
def served_from(tree: Path, models: Path):
    """`python -m service` with `tree`'s code first on the path, ready on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "RNNSERVE_MODEL_REPOSITORY": str(models),
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_PROVIDERS": "cpu",
        "RNNSERVE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=tree, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server from {tree} did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("--before", required=True, help="a git revision to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8)
    args = p.parse_args()
    bodies = write_bodies(RESULTS, tokens=64)
    models = ROOT / "models"
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(before), args.before],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            with served_from(before, models) as old, served_from(ROOT, models) as new:
                for url in (old, new):
                    wrk(url, PATH, bodies, 16, 2)  # warm up
                for round_ in range(args.rounds):
                    for c in (1, 64):
                        pair = [("before", old), ("after", new)]
                        for label, url in pair if round_ % 2 == 0 else pair[::-1]:
                            stats = wrk(url, PATH, bodies, c, args.seconds)
                            results.setdefault((label, c), []).append(stats)
                            print(
                                f"round {round_ + 1} c={c:<3} {label:<7}{stats['rps']:>8.0f} req/s"
                                f"  p50 {stats['p50_ms']:.2f} ms  p99 {stats['p99_ms']:.2f} ms",
                                flush=True,
                            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)
    print(f"\nmedians of {args.rounds} rounds ({args.before} -> this checkout):")
    for c in (1, 64):
        old_rps = statistics.median(s["rps"] for s in results["before", c])
        new_rps = statistics.median(s["rps"] for s in results["after", c])
        old_p99 = statistics.median(s["p99_ms"] for s in results["before", c])
        new_p99 = statistics.median(s["p99_ms"] for s in results["after", c])
        print(
            f"  c={c:<3} {old_rps:>7.0f} -> {new_rps:>7.0f} req/s ({new_rps / old_rps:.2f}x), "
            f"p99 {old_p99:.2f} -> {new_p99:.2f} ms"
        )


if __name__ == "__main__":
    main()
