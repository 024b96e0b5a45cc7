"""`rnnserve export` / `python -m export`: checkpoint -> models/<name>/<version>/.

One command for every task: the checkpoint's `format` names the task in the registry, whose
exporter supplies the graphs; the driver verifies them and `publish` puts them in place.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from contract import registry
from contract.manifest import MODEL_NAME
from export.driver import QUANTIZATIONS, Options, Unsupported, check_options, write_version
from export.publish import publish


def build_parser(prog: str = "rnnserve export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt written by rnnserve train")
    p.add_argument("--name", required=True, help=f"model name, {MODEL_NAME.pattern}")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument(
        "--tolerance",
        type=float,
        default=Options.tolerance,
        help="largest PyTorch-vs-onnxruntime difference accepted",
    )
    p.add_argument("--description", default="")
    p.add_argument("--quantize", choices=QUANTIZATIONS, help="publish dynamically quantised graphs")
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=Options.max_accuracy_drop,
        help="refuse a quantised graph that loses more held-out accuracy",
    )
    return p


def main(argv: list[str] | None = None) -> Path:
    p = build_parser()
    args = p.parse_args(argv)
    if not MODEL_NAME.match(args.name):
        p.error(f"--name must match {MODEL_NAME.pattern}")
    kind = torch.load(args.checkpoint, map_location="cpu", weights_only=True).get("format")
    try:
        parts = registry.for_checkpoint(kind)
    except ValueError as error:
        p.error(f"{args.checkpoint}: {error}")
    if parts.exporter is None:
        p.error(f"task {parts.name!r} has no exporter")
    exporter_class = registry.load(parts.exporter)
    options = Options(args.tolerance, args.description, args.quantize, args.max_accuracy_drop)
    try:
        check_options(parts.name, exporter_class, options)
    except Unsupported as error:
        p.error(str(error))
    exporter = exporter_class(args.checkpoint)
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
