"""The `rnnserve` command: `serve` needs only onnxruntime; `train` and `export` need torch."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings

from contract import registry

TRAINING_MODULES = {"torch", "onnx", "tqdm", "matplotlib", "babel", "statsmodels"}


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    # The second spellings are the arguments KServe passes its runtimes.
    p.add_argument(
        "--model-repository",
        "--model_dir",
        dest="model_repository",
        help="folder of <name>/<version>/ artifacts, or one model's folder (with --model-name)",
    )
    p.add_argument(
        "--model-name", "--model_name", dest="model_name", help="the model's name, where "
        "the repository is one model's folder (KServe's storage initializer: /mnt/models)"
    )  # fmt: skip
    p.add_argument("--host")
    p.add_argument("--port", "--http_port", dest="port", type=int)
    p.add_argument(
        "--grpc-port", "--grpc_port", dest="grpc_port", type=int,
        help="gRPC (Open Inference Protocol); 0: off",
    )  # fmt: skip
    p.add_argument("--workers", type=int)
    p.add_argument("--providers", choices=["auto", "cpu", "cuda"])
    p.add_argument("--intra-op-threads", type=int)
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
    if not settings.model_repository.is_dir():
        sys.exit(
            f"rnnserve serve: invalid setting RNNSERVE_MODEL_REPOSITORY (--model-repository): "
            f"{settings.model_repository} is not a folder"
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


def train(task: str, argv: list[str]) -> None:
    """`rnnserve train --task <task> ...`: the task's trainer parses the rest of the flags."""
    trainer = registry.load(registry.get(task).trainer)
    trainer.main(argv, prog=f"rnnserve train --task {task}")


def export(argv: list[str]) -> None:
    registry.load("export.__main__:main")(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_flags(
        commands.add_parser(
            "serve",
            help="serve every model in the repository over HTTP",
            description="Serve every model in the repository over HTTP.",
        )
    )
    trainable = sorted(name for name, parts in registry.tasks().items() if parts.trainer)
    # `train` and `export` pass the other flags (and -h) to the task's own parser.
    train_parser = commands.add_parser("train", help="train a model", add_help=False)
    train_parser.add_argument("--task", choices=trainable, default="classify")
    commands.add_parser("export", help="checkpoint -> model repository", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        serve(args)
        return
    try:
        if args.command == "train":
            train(args.task, rest)
        else:
            export(rest)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] not in TRAINING_MODULES:
            raise
        sys.exit(
            f"rnnserve {args.command}: {error.name} is not installed here (a serving install); "
            "install rnnserve[train]"
        )
