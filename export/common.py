"""What every exporter does the same way: the opset, ONNX export, sessions, export facts.

torch is imported only where a module is exported: a graph made elsewhere (task `tensor`) is
published in a serving install, with onnx and onnxruntime alone."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from contract.manifest import Architecture, ExportInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

OPSET = 17
QUIET = 4  # onnxruntime log severity: fatal only
_ARCHITECTURE_KEYS = ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional",
                      "attention_size", "dropout")  # fmt: skip


class ParityError(RuntimeError):
    """onnxruntime disagrees with PyTorch by more than the tolerance."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def export_info(
    parity_max_abs_diff: float | None,
    parity_tolerance: float | None,
    from_torch: bool = True,
    **extra: Any,
) -> ExportInfo:
    """The opset, the library versions that made the graph, and its parity with PyTorch."""
    if from_torch:
        import torch
    return ExportInfo(
        **{
            "opset": OPSET,
            "torch_version": torch.__version__ if from_torch else None,
            "onnx_version": onnx.__version__,
            "onnxruntime_version": ort.__version__,
            "parity_max_abs_diff": parity_max_abs_diff,
            "parity_tolerance": parity_tolerance,
            **extra,
        }
    )


def architecture(config: dict[str, Any], **overrides: Any) -> Architecture:
    """The manifest's architecture from a model config (overrides for what it lacks)."""
    fields = {k: config[k] for k in _ARCHITECTURE_KEYS if k in config}
    return Architecture(**{**fields, **overrides})


def to_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Export a module with the TorchScript exporter at our opset."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )


def cpu_session(graph: Path) -> ort.InferenceSession:
    """A session for export's checks. It logs nothing itself: a run that fails (a user's graph
    that breaks on another batch size) raises, and export tells it in its own one line,
    instead of onnxruntime's red `Non-zero status code ... Out of range` lines as well."""
    options = ort.SessionOptions()
    options.log_severity_level = QUIET
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def pad_ids(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> (batch, longest) int64 padded with `pad_id`, and their lengths."""
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    padded = np.full((len(ids), int(lengths.max())), pad_id, dtype=np.int64)
    for row, x in enumerate(ids):
        padded[row, : len(x)] = x
    return padded, lengths
