"""Mixed-fault load test: many requests at high concurrency, a tenth of them malformed in
varied ways, an overload burst, clients hanging up mid-body, and a model version published
then retired mid-run.

Every valid request must get a correct answer (checked against in-process onnxruntime for
the version that answered) or a fast 429/503; every bad one a 4xx; no 5xx at all; and the
server's log holds no error-level record (none of these is a server fault).
`python -m bench.faults [--requests 100000]` prints the tally; exit status 1 on any breach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from bench.payloads import texts
from bench.rawclient import Connection, Reply
from tests.live_server import error_records, hang_up_mid_body, live_server
from tests.test_live_repository import publish_copy
from tests.test_real_server import expected_probabilities

ROOT = Path(__file__).resolve().parent.parent
BAD = [
    (b'{"instances": [', "malformed JSON"),
    (b'{"instances": []}', "empty instances"),
    (b'{"instances": [42]}', "not a string"),
    (b'{"instances": [""]}', "empty text"),
    (b'["not", "an", "object"]', "not an object"),
    (json.dumps({"instances": ["word " * 400]}).encode(), "too long"),
    (b'{"instances": ["fine"], "parameters": {"beam": 3}}', "unknown parameter"),
    (
        b'{"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}',
        "V2 shape mismatch",
    ),
    (b'{"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}', "V2 empty"),
]
HANG_UPS = 300


def latest(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


async def run(total: int, concurrency: int, repository: Path, url: str, versions: dict) -> dict:
    pool = texts(300, tokens=24, seed=3)
    expected = {
        (v, t): expected_probabilities("live", t, f) for v, f in versions.items() for t in pool
    }
    tally: Counter = Counter()
    mismatches: list[str] = []
    latencies_503: list[float] = []
    host, port = url.removeprefix("http://").split(":")
    idle: list[Connection] = []

    async def post(path: str, body: bytes) -> Reply:
        connection = idle.pop() if idle else Connection(host, int(port))
        reply = await connection.post(path, body)
        idle.append(connection)
        return reply

    async def one(i: int) -> None:
        rng = random.Random(i)
        if rng.random() < 0.1:
            body, kind = BAD[i % len(BAD)]
            path = "/v2/models/live/infer" if kind.startswith("V2") else "/v1/models/live:predict"
            response = await post(path, body)
            status = response.status
            ok = 400 <= status < 500 and "error" in json.loads(response.body)
            tally["bad: 4xx with an error" if ok else f"bad: got {status}"] += 1
            return
        text = pool[i % len(pool)]
        started = time.perf_counter()
        response = await post("/v1/models/live:predict", json.dumps({"instances": [text]}).encode())
        status = response.status
        if status == 200:
            body = json.loads(response.body)
            version = int(body["model_version"])
            got = list(body["predictions"][0]["probabilities"].values())
            want = expected[version, text]
            if np.allclose(got, want, atol=1e-5):
                tally[f"valid: correct (version {version})"] += 1
            else:
                tally["valid: WRONG ANSWER"] += 1
                mismatches.append(text)
        elif status in (429, 503) and "retry-after" in response.headers:
            tally[f"valid: refused {status} with Retry-After"] += 1
            latencies_503.append(time.perf_counter() - started)
        else:
            tally[f"valid: got {status}"] += 1

    semaphore = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> None:
        async with semaphore:
            await one(i)

    async def events() -> None:
        # An overload burst at 20%, a new version at 40%, which retires the old one.
        while sum(tally.values()) < total * 0.2:
            await asyncio.sleep(0.05)
        burst = [asyncio.create_task(one(total + k)) for k in range(3000)]
        await asyncio.gather(*burst, hang_up_mid_body(host, int(port), HANG_UPS))
        while sum(tally.values()) < total * 0.4:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(publish_copy, versions[2], repository, "live")

    started = time.perf_counter()
    await asyncio.gather(events(), *(limited(i) for i in range(total)))
    elapsed = time.perf_counter() - started
    served = httpx.get(f"{url}/v1/models/live").json()["versions"]
    return {
        "tally": tally,
        "mismatches": mismatches,
        "elapsed": elapsed,
        "refusal_p99_ms": 1000 * float(np.percentile(latencies_503, 99)) if latencies_503 else None,
        "served_after": served,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=256)
    args = p.parse_args()
    versions = {1: latest(ROOT / "models" / "sst2-lstm"), 2: latest(ROOT / "models" / "sst2-gru")}
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        target = repository / "live" / "1"
        shutil.copytree(versions[1], target)
        manifest = json.loads((target / "manifest.json").read_text())
        (target / "manifest.json").write_text(
            json.dumps({**manifest, "name": "live", "version": 1})
        )
        log = repository / "server.log"
        with live_server(repository, log_file=log, repository_poll_s="0.2") as url:
            result = asyncio.run(run(args.requests, args.concurrency, repository, url, versions))
            disconnects = httpx.get(f"{url}/metrics").text
        errors = error_records(log)
    tally = result["tally"]
    print(
        f"\n{sum(tally.values())} requests in {result['elapsed']:.0f} s "
        f"(concurrency {args.concurrency}, plus a burst of 3000 at once)"
    )
    for outcome, n in sorted(tally.items()):
        print(f"  {outcome:<40}{n:>8}")
    print(f"  refusals answered within (p99)          {result['refusal_p99_ms'] or 0:>7.1f} ms")
    print(f"  versions served at the end              {result['served_after']}")
    counted = [line for line in disconnects.splitlines() if line.startswith("rnnserve_client_")]
    print(f"  clients that hung up mid-body           {HANG_UPS:>8}  ({'; '.join(counted)})")
    print(f"  error-level records in the server log   {len(errors):>8}")
    for record in errors[:5]:
        print(f"    {record.get('message')}: {str(record.get('error', ''))[-300:]}")
    breaches = sum(n for k, n in tally.items() if "WRONG" in k or "got" in k) + len(errors)
    print(f"breaches: {breaches}")
    raise SystemExit(1 if breaches else 0)


if __name__ == "__main__":
    main()
