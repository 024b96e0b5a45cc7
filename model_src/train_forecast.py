"""Train the streaming forecaster: config -> series -> model -> loop (early stop) -> checkpoint.

Data: weekly atmospheric CO2 at Mauna Loa, March 1958 to December 2001 (2,284 weeks, in ppm),
as shipped by statsmodels (`statsmodels.datasets.co2`); its 59 missing weeks are filled by
linear interpolation. Chronological splits: the first 70 % trains, the next 15 % selects the
epoch, the last 15 % is held out. Held-out forecasts are made the way a session makes them:
the model reads the whole history up to each forecast origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from contract.checkpoint import ForecastCheckpoint, HeldoutSeries
from contract.manifest import SeriesPreprocessing, TrainingInfo
from contract.series import mase_scale, scale, seasonal_naive
from model_src.fit import FitConfig, Fitted, Loop, Step, Trainer, config_of, fit, write_outputs
from model_src.forecast import ForecastConfig, Forecaster

DATASET = "Mauna Loa weekly atmospheric CO2 (ppm), 1958-03-29 to 2001-12-29"
SOURCE = "statsmodels.datasets.co2 (Keeling et al., Scripps Institution of Oceanography)"


@dataclass(kw_only=True)
class TrainConfig(FitConfig):
    out: Path = field(metadata={"help": "folder for checkpoint.pt and plot"})
    epochs: int = 16
    patience: int = 4
    batches_per_epoch: int = 30
    batch_size: int = 32
    sequence_length: int = 256
    positions: int = 32  # forecast origins trained per sequence
    lr: float = 3e-3
    hidden_size: int = 64
    num_layers: int = 1
    attention_size: int = 32
    window: int = 104
    horizon: int = 13
    period: int = 52  # the seasonal-naive baseline's season, in steps
    max_values: int = 4096
    series_length: int = 0  # 0: the whole series; tests use a prefix


def load_co2() -> tuple[np.ndarray, list[str]]:
    """The weekly CO2 series (ppm, gaps interpolated) and its dates."""
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data["co2"].interpolate(limit_direction="both")
    return frame.to_numpy(np.float64), [d.date().isoformat() for d in frame.index]


@torch.no_grad()
def evaluate(
    model: Forecaster, series: np.ndarray, origins: np.ndarray, mean: float, std: float
) -> np.ndarray:
    """Forecasts (N, k) in ppm at each origin, reading the whole history from the start."""
    model.eval()
    values = torch.from_numpy(scale(series[: origins.max() + 1], mean, std)).unsqueeze(0)
    forecast, _ = model.forward_training(values, torch.from_numpy(origins))
    return forecast[0].double().numpy() * std + mean


@torch.no_grad()
def evaluate_windows(
    model: Forecaster, series: np.ndarray, origins: np.ndarray, mean: float, std: float
) -> np.ndarray:
    """Forecasts (N, k) in ppm reading only the `window` values up to each origin."""
    model.eval()
    w = model.config.window
    rows = np.stack([series[t - w + 1 : t + 1] for t in origins])
    values = torch.from_numpy(scale(rows, mean, std))
    forecast, _ = model.forward_training(values, torch.tensor([w - 1]))
    return forecast[:, 0].double().numpy() * std + mean


def targets_at(series: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return series[origins[:, None] + np.arange(1, horizon + 1)[None, :]]


@dataclass
class Series:
    """The series cut chronologically, with the scaling statistics of its training part."""

    values: np.ndarray  # ppm
    dates: list[str]
    train_end: int
    val_end: int
    mean: float
    std: float
    diff_scale: float  # 1 / std of the scaled training part's first differences
    val_origins: np.ndarray  # an origin t forecasts t+1..t+k inside its split
    test_origins: np.ndarray


def load_series(cfg: TrainConfig) -> Series:
    values, dates = load_co2()
    if cfg.series_length:
        values, dates = values[: cfg.series_length], dates[: cfg.series_length]
    n, k = len(values), cfg.horizon
    train_end, val_end = int(n * 0.70), int(n * 0.85)
    train_part = values[:train_end]
    mean, std = float(train_part.mean()), float(train_part.std())
    print(
        f"data: {n} weeks of CO2 ({dates[0]} to {dates[-1]}); train {train_end}, validation "
        f"{val_end - train_end}, test {n - val_end} weeks; forecasts {k} weeks ahead"
    )
    return Series(
        values,
        dates,
        train_end,
        val_end,
        mean,
        std,
        diff_scale=float(1.0 / np.diff(scale(train_part, mean, std)).std()),
        val_origins=np.arange(max(train_end - 1, cfg.period), val_end - k),
        test_origins=np.arange(max(val_end - 1, cfg.period), n - k),
    )


def fit_forecaster(cfg: TrainConfig, model: Forecaster, data: Series) -> Fitted:
    """L1 on random training windows at random origins; the best epoch by validation MAE."""
    k = cfg.horizon
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, cfg.epochs * cfg.batches_per_epoch, eta_min=cfg.lr / 10
    )
    scaled_train = torch.from_numpy(scale(data.values[: data.train_end], data.mean, data.std))
    length = min(cfg.sequence_length, data.train_end)
    rng = np.random.default_rng(cfg.seed)

    def step(_: int) -> Step:
        starts = rng.integers(0, data.train_end - length + 1, size=cfg.batch_size)
        values = torch.stack([scaled_train[s : s + length] for s in starts])  # (B, S)
        first = min(cfg.period, length - k - 1)
        positions = torch.from_numpy(
            np.sort(rng.choice(np.arange(first, length - k), cfg.positions, replace=False))
        )
        forecast, _ = model.forward_training(values, positions)  # (B, P, k)
        target = values.unfold(1, k, 1)[:, positions + 1]  # (B, P, k)
        loss = ((forecast - target).abs() * data.diff_scale).mean()
        return Step(loss, {"loss": loss.item()})

    def validate() -> dict[str, float]:
        forecast = evaluate(model, data.values, data.val_origins, data.mean, data.std)
        truth = targets_at(data.values, data.val_origins, k)
        return {"val_mae": float(np.abs(forecast - truth).mean())}

    loop = Loop.of(
        cfg, "val_mae", higher_is_better=False, clip=1.0, batches_per_epoch=cfg.batches_per_epoch
    )
    batches = partial(range, cfg.batches_per_epoch)
    return fit(model, optimizer, loop, batches, step, validate, after_step=scheduler.step)


def heldout_metrics(cfg: TrainConfig, model: Forecaster, data: Series, fitted: Fitted) -> dict:
    """Held-out MAE and MASE, against the seasonal-naive and last-value baselines."""
    series, origins, k = data.values, data.test_origins, cfg.horizon
    truth = targets_at(series, origins, k)
    denominator = mase_scale(series[: data.train_end], cfg.period)
    mae = float(np.abs(evaluate(model, series, origins, data.mean, data.std) - truth).mean())
    window_origins = origins[origins >= cfg.window - 1]
    mae_window = float(
        np.abs(
            evaluate_windows(model, series, window_origins, data.mean, data.std)
            - targets_at(series, window_origins, k)
        ).mean()
    )
    naive_seasonal = float(np.abs(seasonal_naive(series, origins, k, cfg.period) - truth).mean())
    naive_last = float(np.abs(series[origins][:, None] - truth).mean())
    metrics = {
        "validation_mae": round(fitted.best, 4),
        "test_mae": round(mae, 4),
        "test_mase": round(mae / denominator, 4),
        "test_mae_window_only": round(mae_window, 4),
        "seasonal_naive_test_mae": round(naive_seasonal, 4),
        "seasonal_naive_test_mase": round(naive_seasonal / denominator, 4),
        "last_value_test_mae": round(naive_last, 4),
        "training_seconds": round(fitted.seconds, 1),
    }
    print(
        f"best epoch {fitted.best_epoch}: test MAE {mae:.4f} ppm "
        f"(MASE {metrics['test_mase']:.3f}); "
        f"seasonal naive {naive_seasonal:.4f} (MASE {metrics['seasonal_naive_test_mase']:.3f}); "
        f"last value {naive_last:.4f}; window only {mae_window:.4f} ({fitted.seconds:.0f} s)"
    )
    return metrics


def checkpoint_facts(
    cfg: TrainConfig, config: ForecastConfig, data: Series, fitted: Fitted, metrics: dict
) -> ForecastCheckpoint:
    n = len(data.values)
    return ForecastCheckpoint(
        config=config.to_dict(),
        preprocessing=SeriesPreprocessing(
            mean=data.mean,
            std=data.std,
            window=cfg.window,
            horizon=cfg.horizon,
            max_values=cfg.max_values,
            details={
                "period": cfg.period,
                "frequency": "weekly (W-SAT)",
                "unit": "ppm",
                "first_date": data.dates[0],
                "last_date": data.dates[-1],
            },
        ),
        # The held-out weeks travel with the checkpoint: export checks parity on real data.
        heldout=HeldoutSeries(
            split="test", values=data.values[data.val_end - cfg.window :].tolist()
        ),
        training=TrainingInfo(
            dataset=DATASET,
            source=SOURCE,
            seed=cfg.seed,
            epochs=fitted.best_epoch,
            examples={
                "train": data.train_end,
                "validation": data.val_end - data.train_end,
                "test": n - data.val_end,
            },
            metrics=metrics,
        ),
    )


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation MAE, write checkpoint.pt and training_curves.png."""
    cfg.start()
    data = load_series(cfg)
    config = config_of(ForecastConfig, cfg, diff_scale=data.diff_scale)
    model = Forecaster(config)
    fitted = fit_forecaster(cfg, model, data)
    facts = checkpoint_facts(cfg, config, data, fitted, heldout_metrics(cfg, model, data, fitted))
    naive_validation = float(
        np.abs(
            seasonal_naive(data.values, data.val_origins, cfg.horizon, cfg.period)
            - targets_at(data.values, data.val_origins, cfg.horizon)
        ).mean()
    )
    return write_outputs(
        cfg.out,
        facts,
        model,
        fitted.history,
        "CO2 forecaster (GRU + additive attention)",
        ylabels={"loss": "L1, difference units", "mae": "MAE, ppm"},
        baselines={"mae": ("seasonal naive", naive_validation)},
    )


TRAINER = Trainer(TrainConfig, train, ForecastCheckpoint, Forecaster, ForecastConfig, __doc__)

if __name__ == "__main__":
    TRAINER.main()
