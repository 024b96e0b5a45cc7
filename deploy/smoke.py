"""Smoke test of a running rnnserve (a container, a pod behind a port-forward, a local server).

    python3 deploy/smoke.py http://127.0.0.1:8000 [--reference http://127.0.0.1:18081]
        [--grpc 127.0.0.1:8001]

Waits for /v2/health/ready, checks that /v1/models lists every model of the local repository
(--models, default models/) as ready, and predicts a few texts with each. With --reference, the
same requests go to a second server (e.g. `make serve`) and the answers must be equal. Only the
standard library: it runs with any python3, outside the project's virtual environment. With
--grpc, it also asks the server's gRPC port ServerReady and one ModelInfer per classifier, whose
labels must equal the HTTP answer; that needs grpcio and protobuf (the project's environment).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TEXTS = [
    "a gripping, beautifully acted film",
    "dull and far too long",
    "the plot is thin but the acting is wonderful",
]


def call(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = call(f"{url}/v2/health/ready", timeout=2)
            if status == 200:
                return
            last = f"{status} {body}"
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s: {last}")


def local_models(repository: Path) -> list[str]:
    return sorted(
        p.name
        for p in repository.iterdir()
        if p.is_dir()
        and any(v.name.isdigit() and (v / "manifest.json").is_file() for v in p.iterdir())
    )


# An example input per task, what a person would send.
EXAMPLES = {
    "classify": TEXTS,
    "seq2seq": ["22 novembre 2026", "Nov 22, '26"],
    "forecast": [[315.4, 316.1, 316.9, 317.5, 317.9, 317.2, 315.9, 314.2]],
}


def predictions(url: str, model: str, task: str) -> dict:
    status, body = call(f"{url}/v1/models/{model}:predict", {"instances": EXAMPLES[task]})
    if status != 200:
        raise SystemExit(f"{url}: predict on {model} answered {status}: {body}")
    return body


def _summary(task: str, predictions: list[dict]) -> list:
    if task == "classify":
        return [(p["label"], round(max(p["probabilities"].values()), 6)) for p in predictions]
    if task == "seq2seq":
        return [p["output"] for p in predictions]
    return [[round(x, 3) for x in p["forecast"]] for p in predictions]


def close(a: object, b: object, tolerance: float) -> bool:
    """Equal, numbers within tolerance (two onnxruntime builds may differ in the last bits)."""
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= tolerance
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return a == b


def grpc_installed() -> bool:
    """Whether this python has what --grpc needs (this script is often run by the system's)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("grpc", "google.protobuf"))
    except ModuleNotFoundError:  # no `google` package at all
        return False


def grpc_problems(address: str, http_url: str, classifiers: list[str]) -> list[str]:
    """ServerReady, then the labels of TEXTS over gRPC against those over HTTP."""
    import grpc

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from service.rpc import inference_pb2 as pb
    from service.rpc.methods import Stub

    problems = []
    with grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        print(f"grpc {address}: ServerReady {ready}")
        if not ready:
            return [f"grpc {address} is not ready"]
        for model in classifiers:
            request = pb.ModelInferRequest(model_name=model)
            tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(TEXTS)])
            tensor.contents.bytes_contents.extend(t.encode() for t in TEXTS)
            answer = stub.ModelInfer(request, timeout=10)
            outputs = {o.name: o for o in answer.outputs}
            labels = [x.decode() for x in outputs["label"].contents.bytes_contents]
            expected = [p["label"] for p in predictions(http_url, model, "classify")["predictions"]]
            print(f"{model} v{answer.model_version} over gRPC: {labels}")
            if labels != expected:
                problems.append(f"{model}: gRPC labels {labels} != HTTP {expected}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="base URL of the server to check")
    p.add_argument("--reference", help="base URL of a second server that must answer the same")
    p.add_argument("--models", type=Path, default=Path("models"), help="local model repository")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    p.add_argument("--tolerance", type=float, default=1e-6, help="largest probability difference")
    p.add_argument("--grpc", help="host:port of the server's gRPC port, to check it too")
    args = p.parse_args(argv)
    url = args.url.rstrip("/")
    if args.grpc and not grpc_installed():
        p.exit(2, f"{p.prog}: --grpc needs grpcio and protobuf; run it with the project's "
               f"python (.venv/bin/python) or `pip install grpcio protobuf`\n")  # fmt: skip

    wait_ready(url, args.timeout)
    status, listing = call(f"{url}/v1/models")
    served = {m["name"]: m for m in listing.get("models", [])}
    print(f"{url}: ready; /v1/models: {status}, {sorted(served)}")
    expected = local_models(args.models)
    problems = [f"{name} not listed" for name in expected if name not in served]
    problems += [
        f"{name} not ready" for name in expected if name in served and not served[name]["ready"]
    ]

    reference = args.reference.rstrip("/") if args.reference else None
    if reference:
        wait_ready(reference, args.timeout)
    for model in expected:
        if model not in served:
            continue
        task = served[model]["task"]
        if task not in EXAMPLES:  # a plugin's task: this script knows no input for it
            print(f"{model}: no example input for task {task!r}; checked listed and ready only")
            continue
        answer = predictions(url, model, task)
        print(f"{model} v{answer.get('model_version')}: {_summary(task, answer['predictions'])}")
        if reference:
            other = predictions(reference, model, task)
            if answer == other:
                print(f"  equal to {reference}: identical JSON")
            elif close(answer, other, args.tolerance):
                print(f"  equal to {reference} within {args.tolerance:g}")
            else:
                problems.append(f"{model}: {url} and {reference} differ: {answer} != {other}")
    if args.grpc:
        classifiers = [m for m in expected if m in served and served[m]["task"] == "classify"]
        problems += grpc_problems(args.grpc, url, classifiers)
    for problem in problems:
        print("FAILED:", problem, file=sys.stderr)
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
