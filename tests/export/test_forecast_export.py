"""Forecaster export: the step graph carries its state, and chunked runs equal whole runs in
PyTorch and in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from contract.manifest import Manifest
from contract.series import scale
from export.forecast import (
    GRAPH_FILE,
    onnx_runner,
    random_sizes,
    row_of,
    run_chunks,
    torch_runner,
)
from tests.forecast_helpers import (
    HORIZON,
    MAX_VALUES,
    WINDOW,
    tiny_forecast_checkpoint,
    tiny_forecast_repository,
)


@pytest.fixture(scope="module")
def exported():
    from model_src.train_forecast import TRAINER

    model, checkpoint = TRAINER.load_checkpoint(tiny_forecast_checkpoint())
    folder = tiny_forecast_repository() / "tiny-forecast" / "1"
    prep = checkpoint.preprocessing
    series = scale(np.array(checkpoint.heldout.values[:150]), prep.mean, prep.std)
    return model, folder, series


def _close(expected, got, atol=1e-5):
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=atol, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunks_equal_the_whole_series_in_pytorch_and_onnxruntime(exported, seed):
    model, folder, series = exported
    sizes = random_sizes(len(series), np.random.default_rng(seed), largest=40)
    assert len(sizes) > 1
    whole = run_chunks(torch_runner(model), model, series, [len(series)])[-1]
    onnx_run = onnx_runner(folder / GRAPH_FILE)
    _close(whole, run_chunks(torch_runner(model), model, series, sizes)[-1])
    _close(whole, run_chunks(onnx_run, model, series, [len(series)])[-1])
    _close(whole, run_chunks(onnx_run, model, series, sizes)[-1])


def test_every_chunk_forecast_equals_the_forecast_of_its_prefix(exported):
    model, folder, series = exported
    sizes = [3, 17, 1, 25]
    steps = run_chunks(onnx_runner(folder / GRAPH_FILE), model, series, sizes)
    for end, outputs in zip(np.cumsum(sizes), steps, strict=True):
        prefix = run_chunks(torch_runner(model), model, series[:end], [int(end)])[-1]
        _close(prefix[:2], outputs[:2])


def test_a_batch_of_sessions_with_their_own_states_and_chunk_lengths(exported):
    """Gathering the states of rows at different points of their series, with chunks of
    different lengths, gives each row what it gets alone."""
    model, folder, series = exported
    onnx_run = onnx_runner(folder / GRAPH_FILE)
    histories = [
        (series[:5], series[5:9]),
        (series[:40], series[40:41]),
        (series[:1], series[1:30]),
    ]
    states = [run_chunks(onnx_run, model, past, [len(past)])[-1][2:] for past, _ in histories]
    longest = max(len(new) for _, new in histories)
    values = np.zeros((3, longest), np.float32)
    for row, (_, new) in enumerate(histories):
        values[row, : len(new)] = new
    feed = [
        values,
        np.array([len(new) for _, new in histories], np.int64),
        np.concatenate([s[0] for s in states], axis=1),
        *(np.concatenate([s[i] for s in states]) for i in (1, 2, 3)),
    ]
    batch = onnx_run(*feed)
    for row, (past, new) in enumerate(histories):
        alone = run_chunks(
            torch_runner(model), model, np.concatenate([past, new]), [len(past) + len(new)]
        )
        _close(alone[-1], row_of(batch, row))


def test_manifest_describes_the_step_graph_and_the_scaling(exported):
    _, folder, _ = exported
    manifest = Manifest.read(folder)
    assert manifest.task == "forecast"
    prep = manifest.preprocessing
    assert (prep.window, prep.horizon, prep.max_values) == (WINDOW, HORIZON, MAX_VALUES)
    assert prep.std > 0 and prep.details["period"] == 52
    graph = manifest.graphs["step"]
    assert [t.name for t in graph.inputs] == [
        "values",
        "lengths",
        "state",
        "memory",
        "last",
        "filled",
    ]
    assert [t.name for t in graph.outputs][:2] == ["forecast", "attention"]
    assert manifest.export.parity_max_abs_diff <= 1e-5
    assert not manifest.architecture.bidirectional
    session = ort.InferenceSession(str(folder / graph.file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [t.name for t in graph.inputs]
    metrics = manifest.training.metrics
    assert {"test_mae", "test_mase", "seasonal_naive_test_mae"} <= metrics.keys()
