"""Request and response bodies of the V1 API (pydantic: validated before anything runs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        min_length=1,
        description="what a person has: for a classifier, texts",
        examples=[["a gripping , beautifully acted film", "dull and far too long"]],
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="for a classifier: attention (bool), truncate (bool)",
        examples=[{"attention": True}],
    )


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    truncated: bool | None = Field(None, description="present (true) when the text was cut")
    attention: list[tuple[str, float]] | None = Field(None, description="(token, weight) pairs")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[Prediction]

    model_config = ConfigDict(protected_namespaces=())


class VersionStatus(BaseModel):
    version: int
    state: Literal["unloaded", "loading", "ready", "failed", "unloading"]
    provider: str | None = None
    error: str | None = None


class ModelSummary(BaseModel):
    name: str
    task: str | None
    versions: list[int] = Field(description="versions that serve (loaded, or on demand)")
    loaded: list[int] = Field(description="versions in memory now")
    default_version: int | None
    ready: bool


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    status: list[VersionStatus]
    manifest: dict[str, Any] | None = Field(None, description="the default version's manifest")


class ErrorBody(BaseModel):
    error: str
