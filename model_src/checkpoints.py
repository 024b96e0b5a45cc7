"""Checkpoints: a `contract.checkpoint` schema's fields plus the weights, nothing torch would
need to unpickle, so they load with `weights_only=True`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from contract.checkpoint import WEIGHTS, Checkpoint, CheckpointError

Model = TypeVar("Model", bound=nn.Module)
Facts = TypeVar("Facts", bound=Checkpoint)


def save_checkpoint(path: Path, facts: Checkpoint, model: nn.Module) -> None:
    """Write the facts (already checked by their schema) and the model's weights."""
    torch.save(facts.to_dict(model.state_dict()), path)


def load_checkpoint(
    path: Path, schema: type[Facts], build: Callable[[dict], Model]
) -> tuple[Model, Facts]:
    """Rebuild a model from a checkpoint of `schema`; `build(config)` makes it."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or not isinstance(saved.get(WEIGHTS), dict):
        raise CheckpointError(f"{path}: not a checkpoint of rnnserve train (no {WEIGHTS})")
    facts = schema.of(saved, where=str(path))
    model = build(dict(facts.config))
    model.load_state_dict(saved[WEIGHTS])
    return model.eval(), facts
