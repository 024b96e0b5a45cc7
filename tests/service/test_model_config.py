"""Triton's model configuration of a version, from its tensors and the settings."""

from types import SimpleNamespace

from service.model_config import model_config
from service.protocol import MetadataTensor
from service.registry import ModelVersion
from service.settings import BatchingSettings, Settings


def version(inputs, outputs) -> ModelVersion:
    mv = ModelVersion("m", 3, folder=None, state="ready")  # type: ignore[arg-type]
    mv.task = SimpleNamespace(inputs=inputs, outputs=outputs, provider="CPUExecutionProvider")
    return mv


def test_a_graph_batched_along_its_first_axis_gives_row_shapes_and_the_batch_limit():
    settings = Settings(
        model_batching={"m": BatchingSettings(max_batch_size=8, max_batch_delay_ms=0.5)}
    )
    mv = version(
        [MetadataTensor(name="X", datatype="FP32", shape=[-1, 4])],
        [MetadataTensor(name="Y", datatype="INT64", shape=[-1, 1])],
    )
    config = model_config(mv, settings, "all")
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"] == [{"name": "Y", "data_type": "TYPE_INT64", "dims": [1]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert config["version_policy"] == {"all": {}}


def test_a_batch_of_texts_keeps_its_whole_shape():
    mv = version(
        [MetadataTensor(name="text", datatype="BYTES", shape=[-1])],
        [MetadataTensor(name="output", datatype="BYTES", shape=[-1])],
    )
    config = model_config(mv, Settings(), "latest:2")
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert config["version_policy"] == {"latest": {"num_versions": 2}}
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 512
