"""What the repository needs from a task, and what a task gets to build itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ValidationError

from contract.manifest import Manifest
from service.batching import BatchStats
from service.codecs import OutputTensor
from service.errors import BadRequest, Unprocessable
from service.protocol import MetadataTensor
from service.settings import BatchingSettings, Settings

Params = TypeVar("Params", bound=BaseModel)


# The answer to `"attention": true` for a model whose graph has no attention output: said,
# not silently ignored.
NO_ATTENTION_OUTPUT = (
    "parameters.attention: this model has no attention output (its graph returns none); "
    "leave the parameter out"
)


@dataclass
class TaskContext:
    """Everything a task is built from: the version folder and the server's settings."""

    manifest: Manifest
    folder: Path
    settings: Settings
    limits: BatchingSettings
    create_inference_session: Callable[..., tuple[ort.InferenceSession, str]]  # (graph, threads)
    on_batch: Callable[[BatchStats], None]


class ServingTask(Protocol):
    """One loaded model version's pre-processing, batching and post-processing."""

    provider: str  # the execution provider its sessions really got
    inputs: list[MetadataTensor]  # V2 metadata
    outputs: list[MetadataTensor]

    @property
    def queue_depth(self) -> int: ...

    def warm_up(self) -> None:
        """One real inference at load time (blocking): ready means it has answered."""

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        """V1: what a person has in, what a person wants out."""

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        """V2: tensors in, tensors out, through the same batching."""

    async def drain(self) -> None:
        """Return once nothing is queued or running."""

    def close(self) -> None: ...


def parse_parameters(model: type[Params], parameters: dict[str, Any], v2: bool = False) -> Params:
    """A task's request parameters, validated: 422 on V1, 400 on V2 (which ignores extras,
    since V2 clients send protocol parameters of their own)."""
    if v2:
        parameters = {k: v for k, v in parameters.items() if k in model.model_fields}
    try:
        return model.model_validate(parameters)
    except ValidationError as error:
        message = "; ".join(
            "parameters." + ".".join(str(x) for x in p["loc"]) + f": {p['msg']}"
            for p in error.errors(include_url=False)
        )
        raise (BadRequest if v2 else Unprocessable)(message) from None
