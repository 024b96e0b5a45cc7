"""A real rnnserve process (uvicorn) on a free port of 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    """The base URL of a live server, carrying the server's process id."""

    pid: int


@contextmanager
def live_server(repository: Path, timeout: float = 120.0, port: int = 0, **settings: str):
    """Start `python -m service`, wait until ready, yield its base URL, then stop it.
    `port` 0: a free one."""
    port = port or free_port()
    env = {
        **os.environ,
        "RNNSERVE_MODEL_REPOSITORY": str(repository),
        "RNNSERVE_HOST": "127.0.0.1",
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_PROVIDERS": "cpu",
        "RNNSERVE_LOG_LEVEL": "warning",
        **{f"RNNSERVE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], env=env)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = process.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
