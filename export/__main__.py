"""`rnnserve export` / `python -m export`: checkpoint, a user's module or an ONNX graph ->
models/<name>/<version>/.

One command for every task: a checkpoint's `format` names the task in the registry, whose
exporter supplies the graphs; `--task classify --module FILE.py:CALLABLE` exports a user's
module and `--task tensor --onnx model.onnx` any ONNX graph, each task reading its flags
through its registered export command (export.commands); the driver verifies them and
`publish` puts them in place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contract import registry
from contract.checkpoint import CheckpointError
from contract.manifest import MODEL_NAME
from export.commands import ExportCommand, add_flags, check_given, given_flags
from export.driver import (
    QUANTIZATIONS,
    ContractError,
    LimitError,
    NotExportable,
    Options,
    check_options,
    write_version,
)
from export.publish import publish


def export_commands() -> dict[str, ExportCommand]:
    """Every task in the registry (plugins' included) whose model `--task` can export."""
    return {
        name: registry.load(parts.export_command)
        for name, parts in registry.tasks().items()
        if parts.export_command
    }


def build_parser(prog: str = "rnnserve export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument(
        "checkpoint", type=Path, nargs="?", help="checkpoint.pt written by rnnserve train"
    )
    p.add_argument("--name", required=True, help=f"model name, {MODEL_NAME.pattern}")
    p.add_argument(
        "--repository", default="models", help="a folder, or object storage: s3://bucket/prefix"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=Options.tolerance,
        help="largest PyTorch-vs-onnxruntime difference accepted",
    )
    card = p.add_argument_group("what the page shows about the model")
    card.add_argument("--title", default="", help="what the model is, in a few words")
    card.add_argument("--description", default="", help="a sentence or two about it")
    card.add_argument(
        "--example",
        action="append",
        default=[],
        dest="examples",
        metavar="INPUT",
        help="an input to try, as a person types it (repeatable)",
    )
    p.add_argument("--quantize", choices=QUANTIZATIONS, help="publish dynamically quantised graphs")
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=Options.max_accuracy_drop,
        help="refuse a quantised graph that loses more held-out accuracy",
    )
    add_flags(p, export_commands())
    return p


def export_own(
    p: argparse.ArgumentParser, args: argparse.Namespace, options: Options
) -> Path | str:
    """A user's module or graph, by the task's export command; a broken contract is one line,
    exit 1. torch is imported only for a module: a graph (`--task tensor`) needs onnx alone."""
    import onnx

    from export.common import ParityError

    if args.checkpoint is not None:
        p.error("give a checkpoint, or --task with --module or --onnx, not both")
    commands = export_commands()
    given = given_flags(args, commands)
    wrong = check_given(args.task, commands, given)
    if wrong:
        p.error(wrong)
    try:
        return commands[args.task].publish(
            given, name=args.name, repository=args.repository, options=options
        )
    except (ContractError, ParityError, NotExportable, LimitError, json.JSONDecodeError) as error:
        p.exit(1, f"{p.prog}: refused: {error}\n")
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        p.exit(1, f"{p.prog}: refused: the graph fails onnx.checker: {str(error).strip()}\n")


def main(argv: list[str] | None = None) -> Path | str:
    p = build_parser()
    args = p.parse_args(argv)
    if not MODEL_NAME.match(args.name):
        p.error(f"--name must match {MODEL_NAME.pattern}")
    options = Options(
        tolerance=args.tolerance,
        description=args.description.strip(),
        title=args.title.strip(),
        examples=tuple(args.examples),
        quantize=args.quantize,
        max_accuracy_drop=args.max_accuracy_drop,
    )
    if args.task is not None:
        folder = export_own(p, args, options)
        print(f"published {folder}")
        return folder
    if args.checkpoint is None:
        p.error("give a checkpoint written by rnnserve train, or --task with --module or --onnx")
    import torch

    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    try:
        parts = registry.for_checkpoint(saved.get("format") if isinstance(saved, dict) else None)
    except ValueError as error:
        p.error(f"{args.checkpoint}: {error}")
    if parts.exporter is None:
        p.error(f"task {parts.name!r} has no exporter")
    exporter_class = registry.load(parts.exporter)
    try:
        check_options(parts.name, exporter_class, options)
        exporter = exporter_class.from_checkpoint(args.checkpoint)
    except (NotExportable, CheckpointError) as error:  # one line and exit 1, as for a module
        p.exit(1, f"{p.prog}: refused: {error}\n")
    folder = publish(
        args.repository,
        args.name,
        lambda folder, version: write_version(
            parts.name, exporter, folder, args.name, version, options
        ),
    )
    print(f"published {folder}")
    return folder


if __name__ == "__main__":
    main()
