"""Forecaster export: ours goes through the one step-module exporter a user's does, the step
graph carries its state, and chunked runs equal whole runs in PyTorch and in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contract import registry
from contract.manifest import Manifest
from export.forecast import GRAPH_FILE, ForecastExporter, random_sizes
from model_src.forecast import Forecaster
from tests.forecast_helpers import (
    HORIZON,
    MAX_VALUES,
    WINDOW,
    tiny_forecast_checkpoint,
    tiny_forecast_repository,
)

STATES = ["state0", "state1", "state2", "state3"]  # the GRU's, memory, last value, filled slots


@pytest.fixture(scope="module")
def exported():
    exporter = ForecastExporter.from_checkpoint(tiny_forecast_checkpoint())
    folder = tiny_forecast_repository() / "tiny-forecast" / "1"
    return exporter, folder, exporter.series  # the held-out weeks, scaled


def test_our_forecaster_is_exported_by_the_class_a_users_module_is(exported):
    exporter, _, _ = exported
    parts = registry.get("forecast")
    assert parts.exporter == "export.forecast:ForecastExporter"
    assert isinstance(exporter.step, Forecaster)  # the model itself keeps the step contract
    assert (exporter.horizon, exporter.window) == (HORIZON, WINDOW)  # attention found, no flag
    prep = exporter.preprocessing
    assert prep.std > 0 and prep.details["period"] == 52  # the checkpoint's scaling
    heldout = torch.load(tiny_forecast_checkpoint(), weights_only=True)["heldout"]["values"]
    np.testing.assert_allclose(exporter.series * prep.std + prep.mean, heldout, rtol=1e-5)


def _close(expected, got, atol=1e-5):
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=atol, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunks_equal_the_whole_series_in_pytorch_and_onnxruntime(exported, seed):
    exporter, folder, series = exported
    sizes = random_sizes(len(series), np.random.default_rng(seed), largest=40)
    assert len(sizes) > 1
    torch_step, onnx_step = exporter.torch_step, exporter.onnx_step(folder / GRAPH_FILE)
    whole = exporter.feed(torch_step, series, [len(series)])[-1]
    _close(whole, exporter.feed(torch_step, series, sizes)[-1])
    _close(whole, exporter.feed(onnx_step, series, [len(series)])[-1])
    _close(whole, exporter.feed(onnx_step, series, sizes)[-1])


def test_every_chunk_forecast_equals_the_forecast_of_its_prefix(exported):
    exporter, folder, series = exported
    sizes = [3, 17, 1, 25]
    steps = exporter.feed(exporter.onnx_step(folder / GRAPH_FILE), series, sizes)
    for end, outputs in zip(np.cumsum(sizes), steps, strict=True):
        prefix = exporter.feed(exporter.torch_step, series[:end], [int(end)])[-1]
        _close(prefix[:2], outputs[:2])  # forecast and attention


def test_a_batch_of_sessions_with_their_own_states_and_chunk_lengths(exported):
    """Gathering the states of rows at different points of their series, with chunks of
    different lengths, gives each row what it gets alone."""
    exporter, folder, series = exported
    onnx_step = exporter.onnx_step(folder / GRAPH_FILE)
    histories = [
        (series[:5], series[5:9]),
        (series[:40], series[40:41]),
        (series[:1], series[1:30]),
    ]
    states = [exporter.feed(onnx_step, past, [len(past)])[-1][2:] for past, _ in histories]
    longest = max(len(new) for _, new in histories)
    values = np.zeros((3, longest), np.float32)
    for row, (_, new) in enumerate(histories):
        values[row, : len(new)] = new
    lengths = np.array([len(new) for _, new in histories], np.int64)
    batch = onnx_step(values, lengths, [np.concatenate(s) for s in zip(*states, strict=True)])
    for row, (past, new) in enumerate(histories):
        whole = np.concatenate([past, new])
        alone = exporter.feed(exporter.torch_step, whole, [len(whole)])[-1]
        _close(alone, [o[row : row + 1] for o in batch])


def test_manifest_describes_the_step_graph_and_the_scaling(exported):
    _, folder, _ = exported
    manifest = Manifest.read(folder)
    assert (manifest.task, manifest.origin) == ("forecast", "trained")
    prep = manifest.preprocessing
    assert (prep.window, prep.horizon, prep.max_values) == (WINDOW, HORIZON, MAX_VALUES)
    assert prep.std > 0 and prep.details["period"] == 52
    graph = manifest.graphs["step"]
    assert [t.name for t in graph.inputs] == ["values", "lengths", *STATES]
    assert [t.name for t in graph.outputs] == [
        "forecast",
        "attention",
        *(f"{name}_out" for name in STATES),
    ]
    assert graph.inputs[2].shape == ["batch", 2, 8]  # batch first: layers, hidden
    assert graph.outputs[1].shape == ["batch", WINDOW]
    assert manifest.export.parity_max_abs_diff <= 1e-5
    assert not manifest.architecture.bidirectional
    assert manifest.architecture.details["input"] == "first differences of the scaled series"
    session = ort.InferenceSession(str(folder / graph.file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [t.name for t in graph.inputs]
    metrics = manifest.training.metrics
    assert {"test_mae", "test_mase", "seasonal_naive_test_mae"} <= metrics.keys()
