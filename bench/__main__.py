"""`make bench`: rnnserve against the machine's limits and a naive server, in one run.

Prints throughput, p50/p99 and ratios; writes bench/results/latest.json. Every figure comes
from this run on this machine, so ratios stay meaningful on a noisy host.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import cpusplit
from bench.http import throughput_table, uvicorn_app, wrk
from bench.inprocess import batch_sweep, latest_version, padded_vs_grouped, tuning
from bench.workloads import DEFAULT_DATA, NAMES, Workload, load_all, v1_text, write_lines
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def measure_http(url: str, path: str, bodies: Path, levels: list[int], seconds: float) -> dict:
    """wrk at each level; with the server's CPU split (bench/cpusplit.py) where its pid is
    known (every server this module starts): each worker's main thread is its event loop."""
    wrk(url, path, bodies, 16, 2)  # warm up
    pid = getattr(url, "pid", None)
    results = {}
    for c in levels:
        if pid is None:
            results[c] = wrk(url, path, bodies, c, seconds)
            continue
        with cpusplit.measure(pid, tree=True) as split:
            results[c] = wrk(url, path, bodies, c, seconds)
        results[c]["cpu"] = split.as_dict()
        results[c]["limit"] = cpusplit.limit(results[c]["rps"], split)
    return results


def cpu_table(rows: dict[str, dict[int, dict]], levels: list[int]) -> str:
    """Cores by thread role, the load generator (wrk) and other processes, for each row."""
    lines = ["where the CPU went (cores; combined limit: the lower of all cores busy with this"
             " server and wrk, and one event loop):"]  # fmt: skip
    for name, by_level in rows.items():
        for c in levels:
            cell = by_level[c]
            if "cpu" not in cell:
                continue
            roles = " · ".join(f"{role} {cores:.2f}" for role, cores in
                               sorted(cell["cpu"]["roles"].items(), key=lambda kv: -kv[1])
                               if cores >= 0.005)  # fmt: skip
            limit = cell["limit"]
            lines.append(
                f"  {name:<20}c={c:<4}{cell['rps']:>7.0f} req/s  [{roles}]  wrk "
                f"{cell['cpu']['load_generator']:.2f}  other processes "
                f"{cell['cpu']['other_processes']:.2f}  limit {limit['combined_limit']:.0f} "
                f"({limit['bound_by']})"
            )
    return "\n".join(lines)


def table(title: str, rows: dict[str, dict[int, dict]], levels: list[int]) -> str:
    return f"\n{title}\n" + throughput_table(rows, levels, "server")


def classify(model: str, seconds: float, levels: list[int], work: list[Workload]) -> dict:
    """Every server measured on every workload; the in-process limit on each workload's texts."""
    folder = latest_version(ROOT / "models" / model)
    int8_folder = ROOT / "models" / f"{model}-int8"
    bodies = {
        w.name: write_lines(RESULTS / f"bodies-{w.name}.jsonl", v1_text(w.texts)) for w in work
    }
    probe = bodies[work[0].name].read_text().splitlines()[0]
    path = f"/v1/models/{model}:predict"
    sweeps, sweeps_int8 = {}, {}
    for w in work:
        print(f"in-process onnxruntime, {model}, {w.description}, 2 threads ...", flush=True)
        sweeps[w.name] = batch_sweep(folder, pool=w.texts)
        if int8_folder.is_dir():
            sweeps_int8[w.name] = batch_sweep(latest_version(int8_folder), pool=w.texts)
    rows: dict[str, dict[str, dict[int, dict]]] = {w.name: {} for w in work}

    def each(name: str, url: str, route: str = path) -> None:
        for w in work:
            rows[w.name][name] = measure_http(url, route, bodies[w.name], levels, seconds)

    print("HTTP ceiling (same body, no inference) ...", flush=True)
    with uvicorn_app("bench.baselines:ceiling", {}, probe, path) as url:
        each("http ceiling", url)
    print("naive server (one session.run per request) ...", flush=True)
    with uvicorn_app("bench.baselines:naive", {"BENCH_MODEL": str(folder)}, probe, path) as url:
        each("naive", url)
    print("rnnserve ...", flush=True)
    with live_server(ROOT / "models") as url:
        each("rnnserve", url)
        if int8_folder.is_dir():
            print("rnnserve, int8 graph ...", flush=True)
            each("rnnserve int8", url, f"/v1/models/{model}-int8:predict")
    print("rnnserve, 2 workers x 1 onnxruntime thread ...", flush=True)
    with live_server(ROOT / "models", workers="2", intra_op_threads="1") as url:
        each("rnnserve 2 workers", url)

    results = {}
    for w in work:
        sweep, by_server = sweeps[w.name], rows[w.name]
        limit = max(sweep.values())
        print(f"\n{w.name}: {w.description}")
        print(
            "in-process onnxruntime (sequences/s by batch size): "
            + ", ".join(f"{b}: {v:.0f}" for b, v in sweep.items())
        )
        if w.name in sweeps_int8:
            print(
                "in-process onnxruntime, int8 graph: "
                + ", ".join(f"{b}: {v:.0f}" for b, v in sweeps_int8[w.name].items())
            )
        print(table(f"HTTP, {model}, {w.description}", by_server, levels))
        print(cpu_table(by_server, levels))
        ceiling = max(r["rps"] for r in by_server["http ceiling"].values())
        combined = 1 / (1 / (2 * ceiling) + 1 / limit)
        ours, naive = by_server["rnnserve"], by_server["naive"]
        ratios = {
            "in_process_limit": limit,
            "in_process_best_batch": max(sweep, key=sweep.get),
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
        results[w.name] = {
            "sweep": sweep,
            "sweep_int8": sweeps_int8.get(w.name, {}),
            "http": by_server,
            "ratios": ratios,
        }
    return results


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
    p.add_argument(
        "--workloads", default=",".join(NAMES), help="comma-separated: " + ", ".join(NAMES)
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 folder (its dev split)")
    p.add_argument("--only", choices=["classify", "lengths", "tuning"], action="append")
    args = p.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {}
    if not args.only or "classify" in args.only:
        results["classify"] = classify(
            args.model, args.seconds, levels, load_all(args.workloads.split(","), args.data)
        )
    if not args.only or "lengths" in args.only:
        results["lengths"] = lengths(args.model)
    if not args.only or "tuning" in args.only:
        results["tuning"] = tune(args.model)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
