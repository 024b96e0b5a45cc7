"""A real rnnserve process (uvicorn) on a free port of 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    """The base URL of a live server, carrying the server's process id."""

    pid: int


def server_ready(process: subprocess.Popen, url: str) -> bool:
    """Whether the server answers ready; RuntimeError once its process has exited."""
    if process.poll() is not None:
        raise RuntimeError(f"the server exited with {process.returncode}")
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def live_server(
    repository: Path,
    timeout: float = 120.0,
    log_file: Path | None = None,
    port: int = 0,
    source: Path | None = None,
    args: list[str] | None = None,
    **settings: str,
):
    """Start `python -m service`, wait until ready, yield its base URL, then stop it.

    With `log_file`, the server's log (stderr) goes there instead of the test's output.
    `port` 0: a free one. `source`: run that checkout's code (benchmarks of two revisions).
    `args`: command-line arguments (they win over the settings)."""
    port = port or free_port()
    env = {
        **os.environ,
        **({"PYTHONPATH": str(source)} if source is not None else {}),
        "RNNSERVE_MODEL_REPOSITORY": str(repository),
        "RNNSERVE_HOST": "127.0.0.1",
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_PROVIDERS": "cpu",
        "RNNSERVE_LOG_LEVEL": "warning",
        **{f"RNNSERVE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    stderr = log_file.open("ab") if log_file is not None else None
    process = subprocess.Popen(
        [sys.executable, "-m", "service", *(args or [])], env=env, stderr=stderr, cwd=source
    )
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = process.pid
    try:
        wait_for(lambda: server_ready(process, url), "the server to become ready", timeout)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if stderr is not None:
            stderr.close()


def error_records(log_file: Path) -> list[dict]:
    """The error-level (and worse) records of a server's JSON log."""
    records = []
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = {"level": "error", "message": line}  # not ours: a traceback, say
        if record.get("level") in ("error", "critical"):
            records.append(record)
    return records


async def hang_up_mid_body(host: str, port: int, clients: int) -> None:
    """`clients` connections that each send half a request body, then close."""
    import asyncio

    body = b'{"instances": ["half of this body never arrives"]}'

    async def one() -> None:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /v1/models/any:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one() for _ in range(clients)))
