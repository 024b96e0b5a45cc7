"""What the repository needs from a task, and what a task gets to build itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ValidationError

from contract.manifest import Manifest
from service.batching import BatchStats
from service.codecs import OutputTensor
from service.errors import InputError
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
    create_inference_session: Callable[[Path], tuple[ort.InferenceSession, str]]
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


@runtime_checkable
class StreamingTask(Protocol):
    """A task that keeps a state between a client's steps: the capability behind sessions.

    A session opens a state, each step feeds it new values and keeps the state the step
    returns, and a store (in memory or shared) holds the state as the bytes this task encodes.
    Any task, a plugin's included, gets sessions by implementing these members.
    """

    state_bytes: int  # memory one session's state takes (reported in metrics)
    session_facts: dict[str, Any]  # told to a client when its session opens

    def open_state(self) -> Any:
        """The state of a session that has seen nothing."""

    def encode_state(self, state: Any) -> bytes: ...

    def decode_state(self, data: bytes) -> Any:
        """`encode_state`'s bytes back (ValueError if they are not this task's state)."""

    def check_step(self, values: list[Any], parameters: dict[str, Any]) -> Any:
        """A step's values and parameters validated in full (InputError), before they may
        touch the state."""

    async def step(self, state: Any, checked: Any, timeout: float) -> tuple[dict[str, Any], Any]:
        """One step on checked values: the answer and the state to keep."""


def parse_parameters(
    model: type[Params], parameters: dict[str, Any], ignore_unknown: bool = False
) -> Params:
    """A task's request parameters, validated (InputError says which and why). Tensor requests
    ignore names the model does not know: their clients send protocol parameters of their own."""
    if ignore_unknown:
        parameters = {k: v for k, v in parameters.items() if k in model.model_fields}
    try:
        return model.model_validate(parameters)
    except ValidationError as error:
        places = ["parameters." + ".".join(str(x) for x in p["loc"]) for p in error.errors()]
        message = "; ".join(
            f"{where}: {p['msg']}"
            for where, p in zip(places, error.errors(include_url=False), strict=True)
        )
        raise InputError(message, where=places[0]) from None
