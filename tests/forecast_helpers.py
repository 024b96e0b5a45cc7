"""A tiny forecaster trained for a few steps on a prefix of the CO2 series, exported once per
test run and shared by the model, export and service tests."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

WINDOW, HORIZON, MAX_VALUES = 16, 4, 64


@functools.cache
def tiny_forecast_checkpoint() -> Path:
    from model_src.train_forecast import TrainConfig, train

    out = _temporary("forecast-checkpoint-")
    return train(
        TrainConfig(
            out=out,
            epochs=2,
            batches_per_epoch=3,
            batch_size=8,
            sequence_length=96,
            positions=8,
            hidden_size=8,
            attention_size=8,
            num_layers=2,
            window=WINDOW,
            horizon=HORIZON,
            max_values=MAX_VALUES,
            threads=1,
            series_length=400,
        )
    )


@functools.cache
def tiny_forecast_repository() -> Path:
    """models/tiny-forecast/1, exported the way `rnnserve export` does."""
    from export.__main__ import main as export

    repository = _temporary("forecast-repository-")
    export(
        [
            str(tiny_forecast_checkpoint()),
            "--name",
            "tiny-forecast",
            "--repository",
            str(repository),
        ]
    )
    return repository


def _temporary(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
