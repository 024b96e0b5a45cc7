"""Numeric series helpers shared by training and serving (torch-free): scaling and metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def scale(values: np.ndarray | Sequence[float], mean: float, std: float) -> np.ndarray:
    """Raw observations -> the model's units, float32 (inf where a value is out of its range)."""
    with np.errstate(over="ignore"):
        return ((np.asarray(values, dtype=np.float64) - mean) / std).astype(np.float32)


def unscale(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The model's units -> raw observations, float64."""
    return np.asarray(values, dtype=np.float64) * std + mean


def check_values(values: object, max_values: int, where: str = "values") -> list[float]:
    """A non-empty list of at most `max_values` finite numbers, else ValueError saying why."""
    if not isinstance(values, list):
        raise ValueError(f"{where} must be a list of numbers, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{where} is empty; send at least one value")
    if len(values) > max_values:
        raise ValueError(f"{where} has {len(values)} values; at most {max_values} per request")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{where}[{i}] must be a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise ValueError(f"{where}[{i}] is {v}; values must be finite")
    return [float(v) for v in values]


def seasonal_naive(
    series: np.ndarray, origins: np.ndarray, horizon: int, period: int
) -> np.ndarray:
    """Forecast y[t + h] as y[t + h - period * ceil(h / period)] for each origin t: (N, horizon)."""
    steps = np.arange(1, horizon + 1)
    back = period * np.ceil(steps / period).astype(int)
    return series[origins[:, None] + steps[None, :] - back[None, :]]


def mase_scale(train: np.ndarray, period: int) -> float:
    """In-sample MAE of the seasonal-naive one-step forecast: MASE's denominator."""
    return float(np.mean(np.abs(train[period:] - train[:-period])))
