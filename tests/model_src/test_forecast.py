"""The streaming forecaster: shapes, causality, bounded state, chunking, and its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract.series import check_values, mase_scale, scale, seasonal_naive, unscale
from model_src.forecast import ForecastConfig, Forecaster
from tests.forecast_helpers import HORIZON, WINDOW, tiny_forecast_checkpoint


def make_model(layers: int = 2, window: int = 8, horizon: int = 3) -> Forecaster:
    torch.manual_seed(0)
    config = ForecastConfig(
        hidden_size=12,
        num_layers=layers,
        attention_size=6,
        window=window,
        horizon=horizon,
        diff_scale=3.0,
    )
    return Forecaster(config).eval()


def feed(model: Forecaster, series: torch.Tensor, sizes: list[int]):
    state = model.initial_state(1)
    start, outputs = 0, None
    with torch.no_grad():
        for size in sizes:
            chunk = series[start : start + size].unsqueeze(0)
            outputs = model(chunk, torch.tensor([size]), *state)
            state = outputs[2:]
            start += size
    return outputs


def test_step_shapes_and_state_size_do_not_grow_with_history():
    model = make_model()
    for length in (1, 5, 40):
        forecast, weights, state, memory, last, filled = feed(model, torch.randn(length), [length])
        assert forecast.shape == (1, 3) and weights.shape == (1, 8)
        assert state.shape == (1, 2, 12) and memory.shape == (1, 8, 12)
        assert last.shape == (1,) and int(filled) == min(length, 8)


@pytest.mark.parametrize("sizes", [[1] * 30, [7, 1, 13, 9], [30]])
def test_chunks_give_the_same_outputs_as_the_whole_series(sizes):
    model = make_model()
    series = torch.randn(30)
    whole = feed(model, series, [30])
    chunked = feed(model, series, sizes)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_padding_after_a_short_chunk_changes_nothing():
    model = make_model()
    series = torch.randn(10)
    alone = feed(model, series[:4], [4])
    padded = torch.stack([torch.cat([series[:4], torch.full((6,), 99.0)]), series])
    with torch.no_grad():
        batch = model(padded, torch.tensor([4, 10]), *model.initial_state(2))
    assert torch.allclose(batch[0][0], alone[0][0], atol=1e-6)
    assert torch.allclose(batch[2][0], alone[2][0], atol=1e-6)
    assert torch.allclose(batch[3][0], alone[3][0], atol=1e-6)


def test_attention_sums_to_one_over_filled_slots_only():
    model = make_model(window=8)
    _, weights, *_ = feed(model, torch.randn(3), [3])
    assert torch.allclose(weights.sum(), torch.tensor(1.0), atol=1e-6)
    assert torch.all(weights[0, :5] == 0)


def test_forecast_is_indifferent_to_the_level_of_the_series():
    model = make_model()
    series = torch.randn(20)
    low, high = feed(model, series, [20])[0], feed(model, series + 5.0, [20])[0]
    assert torch.allclose(high - low, torch.full_like(low, 5.0), atol=1e-5)


def test_training_forward_matches_the_step():
    model = make_model(layers=1)
    series = torch.randn(25)
    with torch.no_grad():
        forecast, weights = model.forward_training(series.unsqueeze(0), torch.tensor([2, 24]))
    assert torch.allclose(forecast[0, 0], feed(model, series[:3], [3])[0][0], atol=1e-6)
    whole = feed(model, series, [25])
    assert torch.allclose(forecast[0, 1], whole[0][0], atol=1e-6)
    assert torch.allclose(weights[0, 1], whole[1][0], atol=1e-6)


def test_only_a_gru_streams():
    with pytest.raises(ValueError, match="GRU"):
        ForecastConfig(cell="lstm")


def test_series_helpers():
    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(unscale(scale(x, 2.0, 0.5), 2.0, 0.5), x)
    series = np.arange(20, dtype=float)
    assert seasonal_naive(series, np.array([10]), 3, 4).tolist() == [[7.0, 8.0, 9.0]]
    assert mase_scale(series, 4) == 4.0
    assert check_values([1, 2.5], 4) == [1.0, 2.5]
    for bad, message in (
        ([], "empty"),
        ([1, 2, 3, 4, 5], "at most 4"),
        ([float("nan")], "finite"),
        ([float("inf")], "finite"),
        (["1"], "number"),
        ([True], "number"),
        ("1,2", "list"),
    ):
        with pytest.raises(ValueError, match=message):
            check_values(bad, 4)


def test_training_writes_a_checkpoint_with_metrics_and_curves():
    from model_src.train_forecast import TRAINER

    path = tiny_forecast_checkpoint()
    assert (path.parent / "training_curves.png").stat().st_size > 0
    model, checkpoint = TRAINER.load_checkpoint(path)
    assert model.config.window == WINDOW and model.config.horizon == HORIZON
    metrics = checkpoint.training.metrics
    for key in ("test_mae", "test_mase", "seasonal_naive_test_mae", "seasonal_naive_test_mase"):
        assert np.isfinite(metrics[key])
    assert "co2" in checkpoint.training.source
