"""Real redis-server and HAProxy processes on free ports of 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live_server import free_port
from tests.waiting import wait_for

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
MISSING = "redis-server and haproxy (Debian packages; `make scaleout` installs them)"


def have_redis() -> bool:
    return Path(REDIS).is_file()


def have_haproxy() -> bool:
    return Path(HAPROXY).is_file()


def _wait_port(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(listening, f"a listener on port {port}", timeout)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def redis_server(port: int = 0) -> Iterator[str]:
    """An empty, non-persistent redis-server in a temporary folder; yields its redis:// URL.
    `port` 0: a free one."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="rnnserve-redis-") as folder:
        process = subprocess.Popen(
            [
                *(REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)


@contextmanager
def haproxy(backends: list[str], check: str = "/v2/health/ready") -> Iterator[str]:
    """HAProxy on a free port, round robin over `backends` (http://host:port), no stickiness.

    A backend is taken out of the rotation when its health check fails and put back when it
    passes, as a Kubernetes Service does with readiness probes; a request that finds a backend
    down is not retried by HAProxy (the client sees the failure)."""
    port = free_port()
    servers = "\n".join(
        f"    server s{i} {url.split('://', 1)[1]} check inter 200ms fall 1 rise 1"
        for i, url in enumerate(backends)
    )
    config = f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend front
    bind 127.0.0.1:{port}
    default_backend rnnserve
backend rnnserve
    balance roundrobin
    option httpchk GET {check}
{servers}
"""
    with tempfile.TemporaryDirectory(prefix="rnnserve-haproxy-") as folder:
        path = Path(folder) / "haproxy.cfg"
        path.write_text(config)
        process = subprocess.Popen(
            [HAPROXY, "-f", str(path), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_port(port, process)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)
