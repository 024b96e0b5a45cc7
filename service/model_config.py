"""Triton's model configuration extension: what a version serves and how it is batched, in
the shape of Triton's `ModelConfig` (its JSON over HTTP; gRPC parses the same dict into the
message), so `perf_analyzer` and `tritonclient.get_model_config` read rnnserve unchanged."""

from __future__ import annotations

from typing import Any

from service.protocol import MetadataTensor
from service.registry import ModelVersion
from service.settings import Settings

_US = 1_000_000


def model_config(mv: ModelVersion, settings: Settings, version_policy: str) -> dict[str, Any]:
    """The configuration of one version, from its task's tensors and the server's settings.

    When every tensor has a leading variable dimension and more after it, the model batches
    along it the way Triton means: that dimension leaves `dims` and `max_batch_size` is the
    batcher's limit. A model with a one-dimensional tensor (a batch of texts, BYTES [-1])
    is `max_batch_size: 0` with its whole shapes, as in its V2 metadata, since Triton's tools
    read a batched tensor's row shape from the metadata and a row of one text has none.
    Either way `dynamic_batching` gives the batcher's settings: rnnserve batches requests
    together whatever their shape.
    """
    task = mv.task
    inputs = task.inputs if task is not None else []
    outputs = task.outputs if task is not None else []
    limits = settings.batching_for(mv.name)
    batched = bool(inputs) and all(
        len(t.shape) > 1 and t.shape[0] == -1 for t in (*inputs, *outputs)
    )
    provider = task.provider if task is not None else ""
    config: dict[str, Any] = {
        "name": mv.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": _version_policy(version_policy),
        "max_batch_size": limits.max_batch_size if batched else 0,
        "input": [_tensor(t, batched) for t in inputs],
        "output": [_tensor(t, batched) for t in outputs],
        "instance_group": [
            {
                "name": mv.name,
                "kind": "KIND_GPU" if provider.startswith("CUDA") else "KIND_CPU",
                "count": limits.max_concurrent_batches,
            }
        ],
        "parameters": {"task": {"string_value": mv.manifest.task if mv.manifest else ""}},
        "dynamic_batching": {
            "preferred_batch_size": [],
            "max_queue_delay_microseconds": round(limits.max_batch_delay_ms * 1000),
            "preserve_ordering": False,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(settings.request_timeout_s * _US),
                "allow_timeout_override": False,
                "max_queue_size": limits.max_queue_size,
            },
        },
    }
    if mv.manifest is not None and "model" in mv.manifest.graphs:
        config["default_model_filename"] = mv.manifest.graphs["model"].file
    return config


def _tensor(tensor: MetadataTensor, batched: bool) -> dict[str, Any]:
    kind = "STRING" if tensor.datatype == "BYTES" else tensor.datatype
    dims = tensor.shape[1:] if batched else tensor.shape
    return {"name": tensor.name, "data_type": f"TYPE_{kind}", "dims": dims}


def _version_policy(policy: str) -> dict[str, Any]:
    if policy == "all":
        return {"all": {}}
    _, _, count = policy.partition(":")
    return {"latest": {"num_versions": int(count or 1)}}
