"""`rnnserve export` / `python -m export`: checkpoint -> models/<name>/<version>/."""

from __future__ import annotations

import argparse
from pathlib import Path

from export.classifier import write_version
from export.publish import publish
from model_src.manifest import MODEL_NAME
from model_src.train import load_checkpoint


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="rnnserve export", description=__doc__)
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt written by rnnserve train")
    p.add_argument("--name", required=True, help=f"model name, {MODEL_NAME.pattern}")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest PyTorch-vs-onnxruntime difference accepted",
    )
    p.add_argument("--description", default="")
    p.add_argument("--quantize", choices=["int8"], help="publish a dynamically quantised graph")
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.01,
        help="refuse a quantised graph that loses more held-out accuracy",
    )
    args = p.parse_args(argv)
    if not MODEL_NAME.match(args.name):
        p.error(f"--name must match {MODEL_NAME.pattern}")
    model, checkpoint = load_checkpoint(args.checkpoint)
    folder = publish(
        args.repository,
        args.name,
        lambda folder, version: write_version(
            model,
            checkpoint,
            folder,
            args.name,
            version,
            args.tolerance,
            args.description,
            quantize=args.quantize,
            max_accuracy_drop=args.max_accuracy_drop,
        ),
    )
    print(f"published {folder}")
    return folder


if __name__ == "__main__":
    main()
