"""`make bench`: rnnserve against the machine's limits and a naive server, in one run.

Prints throughput, p50/p99 and ratios; writes bench/results/latest.json. Every figure comes
from this run on this machine, so ratios stay meaningful on a noisy host.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.http import throughput_table, uvicorn_app, wrk
from bench.inprocess import batch_sweep, latest_version, padded_vs_grouped, tuning
from bench.payloads import write_bodies
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def measure_http(url: str, path: str, bodies: Path, levels: list[int], seconds: float) -> dict:
    wrk(url, path, bodies, 16, 2)  # warm up
    return {c: wrk(url, path, bodies, c, seconds) for c in levels}


def table(title: str, rows: dict[str, dict[int, dict]], levels: list[int]) -> str:
    return f"\n{title}\n" + throughput_table(rows, levels, "server")


def classify(model: str, seconds: float, levels: list[int], tokens: int) -> dict:
    folder = latest_version(ROOT / "models" / model)
    bodies = write_bodies(RESULTS, tokens=tokens)
    probe = bodies.read_text().splitlines()[0]
    path = f"/v1/models/{model}:predict"
    print(f"in-process onnxruntime, {model}, {tokens}-token inputs, 2 threads ...", flush=True)
    sweep = batch_sweep(folder, tokens=tokens)
    int8_folder = ROOT / "models" / f"{model}-int8"
    sweep_int8 = (
        batch_sweep(latest_version(int8_folder), tokens=tokens) if int8_folder.is_dir() else {}
    )
    rows: dict[str, dict[int, dict]] = {}
    print("HTTP ceiling (same body, no inference) ...", flush=True)
    with uvicorn_app("bench.baselines:ceiling", {}, probe, path) as url:
        rows["http ceiling"] = measure_http(url, path, bodies, levels, seconds)
    print("naive server (one session.run per request) ...", flush=True)
    with uvicorn_app("bench.baselines:naive", {"BENCH_MODEL": str(folder)}, probe, path) as url:
        rows["naive"] = measure_http(url, path, bodies, levels, seconds)
    print("rnnserve ...", flush=True)
    with live_server(ROOT / "models") as url:
        rows["rnnserve"] = measure_http(url, path, bodies, levels, seconds)
        if (ROOT / "models" / f"{model}-int8").is_dir():
            print("rnnserve, int8 graph ...", flush=True)
            int8_path = f"/v1/models/{model}-int8:predict"
            rows["rnnserve int8"] = measure_http(url, int8_path, bodies, levels, seconds)
    print("rnnserve, 2 workers x 1 onnxruntime thread ...", flush=True)
    with live_server(ROOT / "models", workers="2", intra_op_threads="1") as url:
        rows["rnnserve 2 workers"] = measure_http(url, path, bodies, levels, seconds)

    limit = max(sweep.values())
    best = max(sweep, key=sweep.get)
    print(
        "\nin-process onnxruntime (sequences/s by batch size): "
        + ", ".join(f"{b}: {v:.0f}" for b, v in sweep.items())
    )
    if sweep_int8:
        print(
            "in-process onnxruntime, int8 graph: "
            + ", ".join(f"{b}: {v:.0f}" for b, v in sweep_int8.items())
        )
    print(table(f"HTTP, {model}, one {tokens}-token text per request", rows, levels))
    ceiling = max(r["rps"] for r in rows["http ceiling"].values())
    combined = 1 / (1 / (2 * ceiling) + 1 / limit)
    ours, naive = rows["rnnserve"], rows["naive"]
    ratios = {
        "in_process_limit": limit,
        "in_process_best_batch": best,
        "http_ceiling": ceiling,
        "combined_limit": combined,
        "c64_vs_naive": ours[64]["rps"] / naive[64]["rps"] if 64 in ours else None,
        "c64_vs_combined_limit": ours[64]["rps"] / combined if 64 in ours else None,
        "c1_p50_minus_naive_ms": ours[1]["p50_ms"] - naive[1]["p50_ms"] if 1 in ours else None,
        "c64_p99_ms": ours[64]["p99_ms"] if 64 in ours else None,
    }
    print("\nratios:")
    for key, value in ratios.items():
        print(f"  {key:<26}{value:.3f}" if isinstance(value, float) else f"  {key:<26}{value}")
    return {"sweep": sweep, "sweep_int8": sweep_int8, "http": rows, "ratios": ratios}


def lengths(model: str) -> dict:
    folder = latest_version(ROOT / "models" / model)
    result = padded_vs_grouped(folder)
    print(
        f"\nlengths uniform in 8..256, batches of 32, {model}: padded "
        f"{result['padded']:.0f} seq/s ({result['padded_waste']:.0%} padding), grouped "
        f"{result['grouped']:.0f} seq/s ({result['groups_per_batch']:.1f} groups per batch): "
        f"{result['grouped'] / result['padded']:.2f}x"
    )
    return result


def tune(model: str) -> dict:
    results = tuning(latest_version(ROOT / "models" / model))
    print(f"\nonnxruntime options, {model}, in-process sequences/s")
    print(f"{'options':<32}{'batch 1':>10}{'batch 16':>10}")
    for label, by_batch in results.items():
        print(f"{label:<32}{by_batch[1]:>10.0f}{by_batch[16]:>10.0f}")
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--model", default="sst2-lstm")
    p.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    p.add_argument("--levels", default="1,16,64,256", help="concurrency levels")
    p.add_argument("--tokens", type=int, default=64, help="tokens per request text")
    p.add_argument("--only", choices=["classify", "lengths", "tuning"], action="append")
    args = p.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {}
    if not args.only or "classify" in args.only:
        results["classify"] = classify(args.model, args.seconds, levels, args.tokens)
    if not args.only or "lengths" in args.only:
        results["lengths"] = lengths(args.model)
    if not args.only or "tuning" in args.only:
        results["tuning"] = tune(args.model)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
