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

from contract.series import mase_scale, scale, seasonal_naive
from model_src.fit import FitConfig, Loop, Step, Trainer, fit, write_outputs
from model_src.forecast import ForecastConfig, Forecaster

CHECKPOINT_FORMAT = "rnnserve-forecast/1"
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


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation MAE, write checkpoint.pt and training_curves.png."""
    cfg.start()
    series, dates = load_co2()
    if cfg.series_length:
        series, dates = series[: cfg.series_length], dates[: cfg.series_length]
    n, k = len(series), cfg.horizon
    train_end, val_end = int(n * 0.70), int(n * 0.85)
    train_part = series[:train_end]
    mean, std = float(train_part.mean()), float(train_part.std())
    diff_scale = float(1.0 / np.diff(scale(train_part, mean, std)).std())
    # An origin t forecasts t+1..t+k; every target lies inside the origin's split.
    val_origins = np.arange(max(train_end - 1, cfg.period), val_end - k)
    test_origins = np.arange(max(val_end - 1, cfg.period), n - k)
    print(
        f"data: {n} weeks of CO2 ({dates[0]} to {dates[-1]}); train {train_end}, validation "
        f"{val_end - train_end}, test {n - val_end} weeks; forecasts {k} weeks ahead"
    )

    config = ForecastConfig(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        attention_size=cfg.attention_size,
        window=cfg.window,
        horizon=k,
        diff_scale=diff_scale,
    )
    model = Forecaster(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, cfg.epochs * cfg.batches_per_epoch, eta_min=cfg.lr / 10
    )
    scaled_train = torch.from_numpy(scale(train_part, mean, std))
    length = min(cfg.sequence_length, train_end)
    rng = np.random.default_rng(cfg.seed)

    def step(_: int) -> Step:
        starts = rng.integers(0, train_end - length + 1, size=cfg.batch_size)
        values = torch.stack([scaled_train[s : s + length] for s in starts])  # (B, S)
        first = min(cfg.period, length - k - 1)
        positions = torch.from_numpy(
            np.sort(rng.choice(np.arange(first, length - k), cfg.positions, replace=False))
        )
        forecast, _ = model.forward_training(values, positions)  # (B, P, k)
        target = values.unfold(1, k, 1)[:, positions + 1]  # (B, P, k)
        loss = ((forecast - target).abs() * diff_scale).mean()
        return Step(loss, {"loss": loss.item()})

    def validate() -> dict[str, float]:
        forecast = evaluate(model, series, val_origins, mean, std)
        return {"val_mae": float(np.abs(forecast - targets_at(series, val_origins, k)).mean())}

    loop = Loop.of(
        cfg, "val_mae", higher_is_better=False, clip=1.0, batches_per_epoch=cfg.batches_per_epoch
    )
    batches = partial(range, cfg.batches_per_epoch)
    fitted = fit(model, optimizer, loop, batches, step, validate, after_step=scheduler.step)
    best_mae, best_epoch, seconds = fitted.best, fitted.best_epoch, fitted.seconds

    truth = targets_at(series, test_origins, k)
    scale_denominator = mase_scale(train_part, cfg.period)
    mae = float(np.abs(evaluate(model, series, test_origins, mean, std) - truth).mean())
    window_origins = test_origins[test_origins >= cfg.window - 1]
    mae_window = float(
        np.abs(
            evaluate_windows(model, series, window_origins, mean, std)
            - targets_at(series, window_origins, k)
        ).mean()
    )
    naive_seasonal = float(
        np.abs(seasonal_naive(series, test_origins, k, cfg.period) - truth).mean()
    )
    naive_last = float(np.abs(series[test_origins][:, None] - truth).mean())
    metrics = {
        "validation_mae": round(best_mae, 4),
        "test_mae": round(mae, 4),
        "test_mase": round(mae / scale_denominator, 4),
        "test_mae_window_only": round(mae_window, 4),
        "seasonal_naive_test_mae": round(naive_seasonal, 4),
        "seasonal_naive_test_mase": round(naive_seasonal / scale_denominator, 4),
        "last_value_test_mae": round(naive_last, 4),
        "training_seconds": round(seconds, 1),
    }
    print(
        f"best epoch {best_epoch}: test MAE {mae:.4f} ppm (MASE {metrics['test_mase']:.3f}); "
        f"seasonal naive {naive_seasonal:.4f} (MASE {metrics['seasonal_naive_test_mase']:.3f}); "
        f"last value {naive_last:.4f}; window only {mae_window:.4f} ({seconds:.0f} s)"
    )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "state_dict": model.state_dict(),
        "preprocessing": {
            "mean": mean,
            "std": std,
            "window": cfg.window,
            "horizon": k,
            "max_values": cfg.max_values,
            "details": {
                "period": cfg.period,
                "frequency": "weekly (W-SAT)",
                "unit": "ppm",
                "first_date": dates[0],
                "last_date": dates[-1],
            },
        },
        # The held-out weeks travel with the checkpoint: export checks parity on real data.
        "heldout": {"split": "test", "values": series[val_end - cfg.window :].tolist()},
        "training": {
            "dataset": DATASET,
            "source": SOURCE,
            "seed": cfg.seed,
            "epochs": best_epoch,
            "examples": {
                "train": train_end,
                "validation": val_end - train_end,
                "test": n - val_end,
            },
            "metrics": metrics,
        },
    }
    naive_validation = float(
        np.abs(
            seasonal_naive(series, val_origins, k, cfg.period) - targets_at(series, val_origins, k)
        ).mean()
    )
    return write_outputs(
        cfg.out,
        checkpoint,
        fitted.history,
        "CO2 forecaster (GRU + additive attention)",
        ylabels={"loss": "L1, difference units", "mae": "MAE, ppm"},
        baselines={"mae": ("seasonal naive", naive_validation)},
    )


TRAINER = Trainer(TrainConfig, train, CHECKPOINT_FORMAT, Forecaster, ForecastConfig, __doc__)

if __name__ == "__main__":
    TRAINER.main()
