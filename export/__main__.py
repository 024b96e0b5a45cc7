"""`rnnserve export` / `python -m export`: checkpoint -> models/<name>/<version>/.

One command for every task: the checkpoint's `format` picks the exporter module, which
returns the function that fills a version folder; publishing is shared.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import torch

from export.publish import publish
from model_src.manifest import MODEL_NAME

# checkpoint format -> module with `version_writer(checkpoint_path, args)`
EXPORTERS = {
    "rnnserve-classifier/1": "export.classifier",
    "rnnserve-forecast/1": "export.forecast",
    "rnnserve-seq2seq/1": "export.seq2seq",
}


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
    kind = torch.load(args.checkpoint, map_location="cpu", weights_only=True).get("format")
    if kind not in EXPORTERS:
        p.error(f"{args.checkpoint}: unknown checkpoint format {kind!r}")
    writer = importlib.import_module(EXPORTERS[kind]).version_writer(args.checkpoint, args)
    folder = publish(args.repository, args.name, writer)
    print(f"published {folder}")
    return folder


if __name__ == "__main__":
    main()
