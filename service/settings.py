"""Server settings: one pydantic-settings class, environment prefix RNNSERVE_."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.manifest import MODEL_NAME

VersionPolicy = Annotated[str, Field(pattern=r"^(all|latest(:[1-9][0-9]*)?)$")]


class BatchingSettings(BaseModel):
    """Limits of one model version's batcher; global defaults, overridable per model."""

    max_batch_size: int = Field(32, ge=1, description="most sequences one session run takes")
    max_batch_delay_ms: float = Field(
        2.0, ge=0, description="while a batch runs, how long a free slot waits to fill up"
    )
    max_queue_size: int = Field(512, ge=1, description="queued sequences before 503")
    max_concurrent_batches: int = Field(1, ge=1, description="session runs at once")
    max_padding_waste: float = Field(
        0.25, ge=0, lt=1, description="largest share of padding a length group may hold"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RNNSERVE_", env_nested_delimiter="__", protected_namespaces=()
    )

    model_repository: Path = Path("models")
    model_name: str | None = Field(
        None,
        pattern=MODEL_NAME.pattern,
        description="the model's name where the repository is one model's folder (KServe's "
        "--model_name, with --model_dir /mnt/models)",
    )
    allow_empty_repository: bool = Field(
        False, description="ready with no model in the repository (one filled later)"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="Open Inference Protocol over gRPC; 0 turns it off"
    )
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per run; 0 = cores")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    thread_spinning: bool = Field(
        False, description="let onnxruntime threads spin between runs (steals CPU from HTTP)"
    )
    batching: BatchingSettings = BatchingSettings()
    model_batching: dict[str, BatchingSettings] = Field(
        default_factory=dict, description='per-model overrides, e.g. {"sst2-lstm": {...}}'
    )
    repository_poll_s: float = Field(
        2.0, ge=0, description="how often to look for new or removed versions; 0: never"
    )
    version_policy: VersionPolicy = Field("latest:1", description="versions served")
    model_version_policy: dict[str, VersionPolicy] = Field(
        default_factory=dict, description='per-model policies, e.g. {"sst2-gru": "all"}'
    )
    request_timeout_s: float = Field(10.0, gt=0)
    session_ttl_s: float = Field(600.0, gt=0, description="idle seconds before a session expires")
    max_sessions: int = Field(4096, ge=1, description="sessions kept; the least recent goes")
    session_store: str = Field(
        "memory",
        pattern=r"^(memory|rediss?://\S+)$",
        description="where streaming sessions live: memory (this process) or redis://host:port/db "
        "(shared by every worker and replica)",
    )
    grpc_max_connection_age_s: float = Field(
        300.0,
        ge=0,
        description="a gRPC connection is asked to reconnect after this long (give or take 10%), "
        "so clients spread over replicas added since; 0: never",
    )
    grpc_max_connection_age_grace_s: float = Field(
        30.0, ge=0, description="how long calls on an aged-out gRPC connection may still take"
    )
    graceful_shutdown_s: float = Field(
        30.0, gt=0, description="after SIGTERM, how long requests in flight may take"
    )
    max_instances: int = Field(64, ge=1, description="instances per request")
    max_sequence_length: int | None = Field(
        None, ge=1, description="cap on tokens per instance, below each manifest's own limit"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="413 above, before parsing")
    max_binary_tensor_bytes: int = Field(
        1 << 20, ge=1, description="largest binary tensor in a V2 request (413 above)"
    )
    strict_readiness: bool = Field(
        True,
        description="at start, ready only once every model has a ready version (False: a "
        "model broken at start is reported but does not hold readiness back)",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["json", "text"] = Field("json", description="access and error logs")
    api_key: SecretStr | None = Field(
        None, description="when set, every route but health, metrics and the page needs it"
    )
    admin_api_key: SecretStr | None = Field(
        None, description="when set, repository control (load, unload, index) needs it"
    )

    def batching_for(self, model: str) -> BatchingSettings:
        return self.model_batching.get(model, self.batching)


def explain_invalid(error: ValidationError) -> str:
    """One line per invalid setting, named as the environment variable that sets it."""
    lines = []
    for problem in error.errors(include_url=False):
        field, *rest = [str(part) for part in problem["loc"]] or ["settings"]
        where = f"RNNSERVE_{field.upper()}"
        if rest and str(Settings.model_fields[field].annotation).startswith("dict"):
            where += f"[{rest.pop(0)!r}]"  # a key of a map, e.g. a model's name
        where += "".join(f"__{part.upper()}" for part in rest)
        lines.append(f"invalid setting {where}: {problem['msg']} (got {problem['input']!r})")
    return "\n".join(lines)
