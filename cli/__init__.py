"""The `rnnserve` command, above every layer: `serve` (the service; onnxruntime only), `train`
(model_src) and `export` (export). Nothing in those layers imports this package; each
subcommand imports its layer only when it runs, so a serving install never loads torch."""

from __future__ import annotations

import argparse
import sys

from contract import registry
from service.serve import add_serve_flags, serve

TRAINING_MODULES = {"torch", "onnx", "tqdm", "matplotlib", "babel", "statsmodels"}


def train(task: str, argv: list[str]) -> None:
    """`rnnserve train --task <task> ...`: the task's trainer parses the rest of the flags."""
    trainer = registry.load(registry.get(task).trainer)
    trainer.main(argv, prog=f"rnnserve train --task {task}")


def export(argv: list[str]) -> None:
    from export.__main__ import main

    main(argv)


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
