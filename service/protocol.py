"""Open Inference Protocol (KServe V2) messages, as pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.dtypes import Datatype


class _Message(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class RequestInput(_Message):
    name: str
    shape: list[int] = Field(description="row-major shape of `data`; -1 is not allowed here")
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size`: the tensor's bytes follow the JSON header"
    )
    data: list[Any] | None = Field(None, description="flat or nested, row-major")


class RequestOutput(_Message):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="`binary_data`: true or false")


class InferenceRequest(_Message):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output`, `truncate`; others are ignored"
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Message):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(_Message):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_Message):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(_Message):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    state: str = Field(description="rnnserve: ready, loading, failed or unloading")
    error: str | None = Field(None, description="rnnserve: why a version failed to load")


class ServerMetadata(_Message):
    name: str
    version: str
    extensions: list[str]


class RepositoryModel(_Message):
    name: str
    version: str
    state: Literal["READY", "LOADING", "UNAVAILABLE", "UNLOADING"]
    reason: str = ""
