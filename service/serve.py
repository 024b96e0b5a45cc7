"""Serving from the command line (`rnnserve serve`, `python -m service`): flags become
settings, then uvicorn runs the app with as many workers as asked. Needs only onnxruntime."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    # The second spellings are the arguments KServe passes its runtimes.
    p.add_argument(
        "--model-repository",
        "--model_dir",
        dest="model_repository",
        help="folder of <name>/<version>/ artifacts, s3://bucket/prefix, or one model's "
        "folder (with --model-name)",
    )
    p.add_argument(
        "--model-name", "--model_name", dest="model_name", help="the model's name, where "
        "the repository is one model's folder (KServe's storage initializer: /mnt/models)"
    )  # fmt: skip
    p.add_argument("--model-cache", help="where versions from object storage are downloaded")
    p.add_argument("--host")
    p.add_argument("--port", "--http_port", dest="port", type=int)
    p.add_argument(
        "--grpc-port", "--grpc_port", dest="grpc_port", type=int,
        help="gRPC (Open Inference Protocol); 0: off",
    )  # fmt: skip
    p.add_argument("--workers", type=int)
    p.add_argument("--providers", choices=["auto", "cpu", "cuda"])
    p.add_argument("--intra-op-threads", type=int)
    p.add_argument("--max-loaded-models", type=int, help="load the others on demand")
    p.add_argument("--max-loaded-bytes", help="a memory budget for loaded models, e.g. 2GiB")
    p.add_argument("--log-level")


def serve(args: argparse.Namespace) -> None:
    # Flags become RNNSERVE_* variables so every worker process builds the same Settings.
    for key, value in vars(args).items():
        if key != "command" and value is not None:
            os.environ[f"RNNSERVE_{key.upper()}"] = str(value)

    import uvicorn
    from pydantic import ValidationError

    from service.logs import log_config
    from service.settings import Settings, explain_invalid

    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"rnnserve serve: {explain_invalid(error)}")
    repository = settings.model_repository
    if isinstance(repository, Path) and not repository.is_dir():
        sys.exit(
            f"rnnserve serve: invalid setting RNNSERVE_MODEL_REPOSITORY (--model-repository): "
            f"{settings.model_repository} is not a folder"
        )
    if not isinstance(repository, Path) and importlib.util.find_spec("boto3") is None:
        sys.exit(
            f"rnnserve serve: the model repository {repository} is on object storage, which "
            "needs boto3: pip install 'rnnserve[s3]'"
        )
    busy = ports_in_use(settings)
    if busy:
        sys.exit(f"rnnserve serve: {busy}")
    if settings.workers > 1:
        _several_workers(settings)
    # A SIGTERM is a requested stop: uvicorn handles it while serving (stop accepting, finish
    # what it holds, up to graceful_shutdown_s), then re-raises it; exit 0 rather than die of it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format == "json"),
        http="httptools",
        loop="uvloop",
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


def ports_in_use(settings: Settings) -> str:
    """Why the server cannot listen where it was told to, or "" if it can.

    Checked before starting: a taken port is one clear line, not a worker's traceback. The
    probe binds as uvicorn does (SO_REUSEADDR), without SO_REUSEPORT, so a port another server
    holds (even one sharing it between its own workers) is refused.
    """
    import socket

    wanted = [("RNNSERVE_PORT, --port", settings.port)]
    if settings.grpc_port:
        wanted.append(("RNNSERVE_GRPC_PORT, --grpc-port", settings.grpc_port))
    if settings.grpc_port and settings.grpc_port == settings.port:
        return f"HTTP and gRPC cannot share port {settings.port}: set RNNSERVE_GRPC_PORT"
    for where, port in wanted:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.host, port))
            except OSError as error:
                return f"cannot listen on {settings.host}:{port} ({where}): {error.strerror}"
    return ""


def _several_workers(settings: Settings) -> None:
    """Worker processes share what must agree: sessions in Redis, metrics in files."""
    if settings.session_store == "memory":
        print(
            f"rnnserve serve: {settings.workers} workers cannot share streaming sessions kept in "
            "memory, so session routes will answer 501; set RNNSERVE_SESSION_STORE=redis://"
            "host:port/db to keep sessions, or serve with --workers 1",
            file=sys.stderr,
        )
    # prometheus_client's multiprocess mode: every worker writes its series to files in one
    # folder and /metrics reads them all. Series of workers from an earlier run must not count.
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given or tempfile.mkdtemp(prefix="rnnserve-metrics-"))
    if not given:  # ours: removed at exit
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("*.db"), *folder.glob("ready-*")]:
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def main(argv: list[str] | None = None) -> None:
    """`python -m service`: the same as `rnnserve serve`."""
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    add_serve_flags(parser)
    serve(parser.parse_args(argv))
