"""Start rnnserve and each peer on free ports of 127.0.0.1, each serving the same ONNX graph.

Every peer runs from its own virtual environment under bench/.peers/ (made by
`make bench-peers`) with the code in bench/peers/served/, and is given:

- **Triton** (the `tritonserver` binary inside PyPI's nvidia-pytriton): the graph on
  onnxruntime in PyTriton's Python backend (Triton's own ONNX Runtime backend is not in that
  wheel), one model instance, Triton's dynamic batcher (`max_batch_size`,
  `max_queue_delay_microseconds`), HTTP and gRPC. Triton's HTTP and gRPC thread pools at
  their defaults.
- **MLServer**: a custom runtime (MLServer ships no ONNX runtime), adaptive batching
  (`max_batch_size`, `max_batch_time`), its default of one parallel inference worker process,
  HTTP and gRPC.
- **BentoML**: a service with one worker and a batchable API (`max_batch_size`,
  `max_latency_ms`); HTTP only (BentoML 1.4 services have no gRPC).

Each onnxruntime session has rnnserve's default settings (threads = cores, no spinning,
every graph optimisation: bench/peers/served/onnx_session.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.cpusplit import descendants
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / ".peers"
SERVED = Path(__file__).with_name("served")
MODEL_NAME = "sst2-lstm"


@dataclass
class Server:
    """A running server: where to reach it and which process tree is its."""

    name: str
    pid: int
    http: str
    grpc: str | None = None
    settings: dict = field(default_factory=dict)


def venv_python(peer: str) -> Path:
    python = PEERS / peer / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `make bench-peers`, which creates it")
    return python


def wait_ready(process: subprocess.Popen, url: str, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(0.3)


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
    """A peer's process in its own process group (a peer starts children), stopped with
    SIGTERM to the group, SIGKILL if it lingers."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        tree = descendants(proc.pid)  # BentoML's workers start sessions of their own
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in tree[1:]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def peer_env(model: Path, max_batch: int) -> dict[str, str]:
    return {
        "PEER_MODEL": str(model),
        "PEER_MAX_BATCH": str(max_batch),
        "PYTHONPATH": str(SERVED),
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def triton(model: Path, logs: Path, max_batch: int, delay_us: int) -> Iterator[Server]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = peer_env(model, max_batch) | {
        "PEER_MODEL_NAME": MODEL_NAME,
        "PEER_HTTP_PORT": str(http),
        "PEER_GRPC_PORT": str(grpc),
        "PEER_METRICS_PORT": str(metrics),
        "PEER_DELAY_US": str(delay_us),
    }
    argv = [str(venv_python("triton")), str(SERVED / "triton_model.py")]
    with process(argv, env, logs / f"triton-{delay_us}us.log") as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(proc, f"{url}/v2/models/{MODEL_NAME}/ready", "Triton")
        yield Server(
            "Triton",
            proc.pid,
            url,
            f"127.0.0.1:{grpc}",
            {"max_batch_size": max_batch, "max_queue_delay_microseconds": delay_us},
        )


@contextmanager
def mlserver(model: Path, logs: Path, max_batch: int, delay_ms: float) -> Iterator[Server]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="mlserver-") as tmp:
        folder = Path(tmp)
        (folder / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": http,
                    "grpc_port": grpc,
                    "metrics_port": metrics,
                    "metrics_dir": str(folder / ".metrics"),  # default: the working directory
                    "debug": False,
                }
            )
        )
        (folder / MODEL_NAME).mkdir()
        (folder / MODEL_NAME / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": MODEL_NAME,
                    "implementation": "mlserver_runtime.OnnxClassifier",
                    "max_batch_size": max_batch,
                    "max_batch_time": delay_ms / 1000,
                }
            )
        )
        mlserver_bin = venv_python("mlserver").with_name("mlserver")
        argv = [str(mlserver_bin), "start", str(folder)]
        with process(argv, peer_env(model, max_batch), logs / f"mlserver-{delay_ms}ms.log") as p:
            url = f"http://127.0.0.1:{http}"
            wait_ready(p, f"{url}/v2/models/{MODEL_NAME}/ready", "MLServer")
            yield Server(
                "MLServer",
                p.pid,
                url,
                f"127.0.0.1:{grpc}",
                {"max_batch_size": max_batch, "max_batch_time_ms": delay_ms},
            )


@contextmanager
def bentoml(model: Path, logs: Path, max_batch: int, latency_ms: int) -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bentoml-home-") as home:
        env = peer_env(model, max_batch) | {
            "PEER_MAX_LATENCY_MS": str(latency_ms),
            "BENTOML_HOME": home,
            "BENTOML_DO_NOT_TRACK": "true",
        }
        bentoml_bin = venv_python("bentoml").with_name("bentoml")
        argv = [str(bentoml_bin), "serve", "bento_service:Classifier", "--host", "127.0.0.1",
                "--port", str(port), "--working-dir", str(SERVED)]  # fmt: skip
        with process(argv, env, logs / f"bentoml-{latency_ms}ms.log", cwd=SERVED) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_ready(proc, f"{url}/readyz", "BentoML")
            yield Server(
                "BentoML",
                proc.pid,
                url,
                None,
                {"max_batch_size": max_batch, "max_latency_ms": latency_ms},
            )


@contextmanager
def rnnserve(model_folder: Path, logs: Path) -> Iterator[Server]:
    """rnnserve with its defaults, serving only this graph (a repository of its own)."""
    grpc = free_port()
    with tempfile.TemporaryDirectory(prefix="rnnserve-repo-") as tmp:
        repository = Path(tmp)
        shutil.copytree(model_folder, repository / MODEL_NAME / model_folder.name)
        with live_server(repository, log_file=logs / "rnnserve.log", grpc_port=str(grpc)) as url:
            yield Server("rnnserve", url.pid, str(url), f"127.0.0.1:{grpc}", {"defaults": True})


PEER_LAUNCHERS = {"Triton": triton, "MLServer": mlserver, "BentoML": bentoml}
