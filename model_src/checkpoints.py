"""Checkpoints: plain tensors and builtins only, so they load with `weights_only=True`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

Model = TypeVar("Model", bound=nn.Module)


def load_checkpoint(path: Path, kind: str, build: Callable[[dict], Model]) -> tuple[Model, dict]:
    """Rebuild a model from a checkpoint whose "format" is `kind`; `build(config)` makes it."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != kind:
        raise ValueError(f"{path}: not a {kind} checkpoint")
    model = build(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
