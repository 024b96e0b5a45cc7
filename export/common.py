"""What every exporter writes the same way: the opset, export facts, the architecture."""

from __future__ import annotations

import datetime as dt
from typing import Any

import onnx
import onnxruntime as ort
import torch

from model_src.manifest import Architecture, ExportInfo

OPSET = 17
_ARCHITECTURE_KEYS = ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional",
                      "attention_size", "dropout")  # fmt: skip


class ParityError(RuntimeError):
    """onnxruntime disagrees with PyTorch by more than the tolerance."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def export_info(parity_max_abs_diff: float, parity_tolerance: float, **extra: Any) -> ExportInfo:
    """The opset, the library versions that made the graph, and its parity with PyTorch."""
    return ExportInfo(
        opset=OPSET,
        torch_version=torch.__version__,
        onnx_version=onnx.__version__,
        onnxruntime_version=ort.__version__,
        parity_max_abs_diff=parity_max_abs_diff,
        parity_tolerance=parity_tolerance,
        **extra,
    )


def architecture(config: dict[str, Any], **overrides: Any) -> Architecture:
    """The manifest's architecture from a model config (overrides for what it lacks)."""
    fields = {k: config[k] for k in _ARCHITECTURE_KEYS if k in config}
    return Architecture(**{**fields, **overrides})
