"""Date model: step-level (continuous) batching versus decoding each request alone.

Closed-loop clients, in process (no HTTP, so the figures are the decoder's): each sends one
date at a time (dates written the ways of 46 held-out locales: mixed lengths, from short
numeric forms to long spelled-out ones) and sends the next when its answer arrives. The
baseline is the same task with step batching off: one request decodes at a time, the rest
wait in the queue.

    .venv/bin/python -m bench.seq2seq [--model models/dates] [--seconds 5] [--levels 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from bench.http import throughput_table
from bench.inprocess import latest_version
from contract.manifest import Manifest
from model_src import dates
from service.runtime import create_inference_session
from service.settings import BatchingSettings, Settings
from service.tasks.base import TaskContext
from service.tasks.seq2seq import Seq2SeqTask

ROOT = Path(__file__).resolve().parent.parent


def make_task(folder: Path, step_batching: bool, threads: int, rows: int) -> Seq2SeqTask:
    settings = Settings(providers="cpu", intra_op_threads=threads)
    return Seq2SeqTask(
        TaskContext(
            manifest=Manifest.read(folder),
            folder=folder,
            settings=settings,
            limits=BatchingSettings(max_batch_size=rows, max_queue_size=4096),
            create_inference_session=lambda graph: create_inference_session(graph, settings),
            on_batch=lambda stats: None,
        ),
        step_batching=step_batching,
    )


async def closed_loop(task: Seq2SeqTask, texts: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        n = i
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await task.predict([texts[n % len(texts)]], {}, timeout=60)
            latencies.append(time.perf_counter() - started)
            n += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(latencies),
    }


def run(folder: Path, levels: list[int], seconds: float, threads: int) -> dict:
    texts = [e.text for e in dates.generate(dates.HELDOUT_LOCALES, 512, seed=7)]
    lengths = sorted(len(t) for t in texts)
    print(
        f"workload: {len(texts)} dates in held-out locales, mixed lengths: {lengths[0]}-"
        f"{lengths[-1]} characters, median {lengths[len(lengths) // 2]}",
        flush=True,
    )
    results: dict[str, dict[int, dict]] = {}
    for name, step_batching in (("step batching", True), ("each request alone", False)):
        task = make_task(folder, step_batching, threads, rows=max(levels))
        task.warm_up()
        asyncio.run(closed_loop(task, texts, 4, 1.0))  # warm up the loop and the sessions
        results[name] = {c: asyncio.run(closed_loop(task, texts, c, seconds)) for c in levels}
        task.close()
    return results


def table(results: dict[str, dict[int, dict]], levels: list[int]) -> str:
    lines = [throughput_table(results, levels, "decoding")]
    base, step = results["each request alone"], results["step batching"]
    lines.append(
        f"{'throughput ratio':<20}"
        + "".join(f"{step[c]['rps'] / base[c]['rps']:>11.2f}x{'':>18}" for c in levels)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.seq2seq", description=__doc__)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "dates")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--levels", default="1,16,64")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads per run")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.levels.split(",")]
    folder = latest_version(args.model)
    results = run(folder, levels, args.seconds, args.threads)
    print(
        f"\n{folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}: "
        f"one date per request, closed loop, {args.seconds:g} s per level"
    )
    print(table(results, levels))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
