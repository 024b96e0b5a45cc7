"""Soak: steady load while new versions are published and old ones retired, for a long time;
resident memory, open files and threads must stay flat and every answer must be right.

`python -m bench.soak [--seconds 600] [--publish-every 5]` (`make soak`): serves a copy of
`sst2-lstm` from a temporary repository (polled every 0.5 s, policy `latest:1`), publishes a new
version every few seconds (what `rnnserve export` does: a hidden folder renamed into place)
and deletes the folders of retired versions, while clients predict without pause. Every answer
must be a 200 whose probabilities equal the reference (all versions hold the same weights).
After a warm-up it samples the server's RSS, file descriptors and threads and prints their
growth; it fails above 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.payloads import texts
from bench.rawclient import Connection
from export.publish import existing_versions, publish
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sst2-lstm"


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


def publish_copy(source: Path, repository: Path) -> int:
    """Publish `source` as the next version of MODEL, and delete all but the newest two."""

    def write(folder: Path, version: int) -> None:
        for file in source.iterdir():
            shutil.copy(file, folder / file.name)
        manifest = json.loads((source / "manifest.json").read_text())
        manifest["version"] = version
        (folder / "manifest.json").write_text(json.dumps(manifest))

    version = int(publish(repository, MODEL, write).name)
    for old in existing_versions(repository / MODEL)[:-2]:
        shutil.rmtree(repository / MODEL / str(old))
    return version


async def load(url: str, seconds: float, concurrency: int) -> tuple[dict[str, int], set[str]]:
    """Predict without pause; count outcomes (a wrong answer counts as 'wrong')."""
    host, port = url.removeprefix("http://").split(":")
    bodies = [json.dumps({"instances": [t]}).encode() for t in texts(500, tokens=32)]
    reference: dict[int, list[float]] = {}
    outcomes: dict[str, int] = {}
    versions: set[str] = set()
    deadline = time.monotonic() + seconds

    async def worker(k: int) -> None:
        connection, i = Connection(host, int(port)), k
        while time.monotonic() < deadline:
            reply = await connection.post(f"/v1/models/{MODEL}:predict", bodies[i % 500])
            outcome = str(reply.status)
            if reply.status == 200:
                answer = json.loads(reply.body)
                versions.add(answer["model_version"])
                got = list(answer["predictions"][0]["probabilities"].values())
                expected = reference.setdefault(i % 500, got)
                if max(abs(a - b) for a, b in zip(got, expected, strict=True)) > 1e-5:
                    outcome = "wrong"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            i += concurrency
        await connection.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return outcomes, versions


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--warmup", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--every", type=float, default=10, help="seconds between samples")
    p.add_argument("--publish-every", type=float, default=5, help="seconds; 0: never")
    p.add_argument("--models", type=Path, default=ROOT / "models")
    args = p.parse_args()
    source = args.models / MODEL / str(max(existing_versions(args.models / MODEL)))
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        publish_copy(source, repository)
        settings = {"repository_poll_s": "0.5", "version_policy": "latest:1"}
        with live_server(repository, **settings) as url:
            pid = url.pid
            samples: list[tuple[float, dict]] = []
            published: list[int] = []

            async def observe() -> None:
                started = time.monotonic()
                while time.monotonic() - started < args.seconds:
                    samples.append((time.monotonic() - started, sample(pid)))
                    await asyncio.sleep(args.every)

            async def publisher() -> None:
                started = time.monotonic()
                while args.publish_every and time.monotonic() - started < args.seconds - 5:
                    await asyncio.sleep(args.publish_every)
                    published.append(await asyncio.to_thread(publish_copy, source, repository))

            async def run():
                work = load(url, args.seconds, args.concurrency), observe(), publisher()
                return (await asyncio.gather(*work))[0]

            outcomes, versions = asyncio.run(run())
    steady = [s for t, s in samples if t >= args.warmup]
    first, last = steady[0], steady[-1]
    answered = sum(outcomes.values())
    print(
        f"{answered} requests in {args.seconds:.0f} s at concurrency {args.concurrency}: "
        f"{outcomes}; {len(published)} versions published, {len(versions)} answered"
    )
    print(f"{'t (s)':>7}{'RSS MB':>9}{'fds':>6}{'threads':>9}")
    for t, s in samples:
        print(f"{t:>7.0f}{s['rss_mb']:>9.1f}{s['fds']:>6}{s['threads']:>9}")
    growth = {k: (last[k] - first[k]) / first[k] for k in ("rss_mb", "fds", "threads")}
    print(
        f"after warm-up: RSS {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB "
        f"({growth['rss_mb']:+.1%}), fds {first['fds']} -> {last['fds']}, "
        f"threads {first['threads']} -> {last['threads']}"
    )
    ok = max(growth.values()) < 0.10 and outcomes.get("200", 0) == answered
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
