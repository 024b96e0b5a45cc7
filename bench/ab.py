"""Before and after, in one run: the classifier served by this checkout and by another
revision, measured in alternation so that both see the same machine.

`python -m bench.ab --before REV [--rounds 3] [--seconds 8]` checks REV out into a temporary
git worktree, serves `sst2-lstm` from both trees (each its own `python -m service` and its own
`models/`, the same graphs), and interleaves wrk runs at c=1 and c=64, which of the two goes
first alternating from round to round. It prints each round and the after/before ratio of the
medians. For refactors that must not cost speed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.http import wrk
from bench.payloads import write_bodies
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PATH = "/v1/models/sst2-lstm:predict"


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
            with (
                # Each tree its own models/: the same graphs, manifests its schema reads.
                live_server(before / "models", source=before, grpc_port="0") as old,
                live_server(models, source=ROOT, grpc_port="0") as new,
            ):
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
