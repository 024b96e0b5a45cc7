"""The one training loop: epochs, early stopping on validation, best weights, progress, curves.

A task's trainer supplies its data (batches), its loss and metrics (`step`, `validate`) and
the model; `fit` does the rest the same way for every task.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from contract.checkpoint import Checkpoint
from model_src import checkpoints
from model_src.flags import parse_config

Batch = TypeVar("Batch")
Config = TypeVar("Config")
Model = TypeVar("Model", bound=nn.Module)
Facts = TypeVar("Facts", bound=Checkpoint)


@dataclass(kw_only=True)
class FitConfig:
    """What every trainer's config holds besides its own: seed, step budget, threads."""

    seed: int = 13
    max_steps: int = 0  # 0: no limit; tests use a few steps
    threads: int = 0  # torch's intra-op threads; 0: its default

    def start(self) -> None:
        """Seed every generator and set the threads: a run is reproducible from its config."""
        seed_everything(self.seed)
        if self.threads:
            torch.set_num_threads(self.threads)


@dataclass
class Loop:
    """How long to train and which validation metric picks the best epoch."""

    epochs: int
    patience: int
    monitor: str  # a key of `validate()`'s result
    higher_is_better: bool = True
    max_steps: int = 0  # 0: no limit; tests use a few steps
    max_seconds: float = 0  # stop (mid-epoch) after this long; 0: no limit, reproducible
    clip: float = 5.0  # gradient norm
    perfect: float | None = None  # stop once the monitored metric reaches this
    batches_per_epoch: int | None = None  # for the progress bar

    @classmethod
    def of(cls, cfg: Any, monitor: str, **options: Any) -> Loop:
        """The loop a trainer config asks for (its epochs, patience and max_steps)."""
        return cls(cfg.epochs, cfg.patience, monitor, max_steps=cfg.max_steps, **options)


@dataclass
class Step:
    """One batch's loss, and sums of its running metrics over `weight` items (e.g. examples)."""

    loss: torch.Tensor
    sums: dict[str, float]
    weight: float = 1.0


@dataclass
class Fitted:
    best_epoch: int
    best: float  # the monitored metric at the best epoch
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)


def config_of(model_config: Callable[..., Config], cfg: Any, **given: Any) -> Config:
    """A model's config dataclass from the trainer config's fields of the same names, plus
    what training found (sizes of vocabularies, scales): one place a new field is copied."""
    names = {f.name for f in fields(model_config)} - given.keys()  # type: ignore[arg-type]
    return model_config(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)}, **given)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loop: Loop,
    batches: Callable[[], Iterable[Batch]],
    step: Callable[[Batch], Step],
    validate: Callable[[], dict[str, float]],
    after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[dict[str, float]], None] | None = None,
) -> Fitted:
    """Train until `loop.epochs`, patience or a budget runs out; load the best epoch's weights.

    `batches()` gives one epoch's batches; running metrics are named train_<key> in the
    history, and `validate()`'s keys as they are.
    """
    better = (lambda a, b: a > b) if loop.higher_is_better else (lambda a, b: a < b)
    history: dict[str, list[float]] = {}
    best = -float("inf") if loop.higher_is_better else float("inf")
    best_state, best_epoch, stale, steps = None, 0, 0, 0
    started = time.time()

    def out_of_time() -> bool:
        return bool(loop.max_seconds) and time.time() - started > loop.max_seconds

    for epoch in range(1, loop.epochs + 1):
        model.train()
        bar = tqdm(
            batches(),
            total=loop.batches_per_epoch,
            desc=f"epoch {epoch}/{loop.epochs}",
            unit="batch",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        sums: dict[str, float] = {}
        seen = 0.0
        for batch in bar:
            result = step(batch)
            optimizer.zero_grad()
            result.loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), loop.clip)
            optimizer.step()
            if after_step is not None:
                after_step()
            for key, value in result.sums.items():
                sums[key] = sums.get(key, 0.0) + value
            seen += result.weight
            steps += 1
            bar.set_postfix({k: f"{v / seen:.4f}" for k, v in sums.items()}, refresh=False)
            if (loop.max_steps and steps >= loop.max_steps) or out_of_time():
                break
        scores = {f"train_{k}": v / (seen or 1) for k, v in sums.items()} | validate()
        if after_epoch is not None:
            after_epoch(scores)
        for key, value in scores.items():
            history.setdefault(key, []).append(value)
        tqdm.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if better(scores[loop.monitor], best):
            best, best_state, best_epoch, stale = (
                scores[loop.monitor],
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
        if out_of_time():
            tqdm.write(f"stopping: the {loop.max_seconds:g}-second budget is spent")
        if (
            stale >= loop.patience
            or (loop.perfect is not None and best == loop.perfect)
            or (loop.max_steps and steps >= loop.max_steps)
            or out_of_time()
        ):
            break
    model.load_state_dict(best_state)
    return Fitted(best_epoch, best, time.time() - started, history)


def write_outputs(
    out: Path,
    facts: Checkpoint,
    model: nn.Module,
    history: dict[str, list[float]],
    title: str,
    ylabels: dict[str, str] | None = None,
    baselines: dict[str, tuple[str, float]] | None = None,
) -> Path:
    """checkpoint.pt and training_curves.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "checkpoint.pt"
    checkpoints.save_checkpoint(path, facts, model)
    plot_history(history, out / "training_curves.png", title, ylabels or {}, baselines or {})
    print(f"wrote {path} and {out / 'training_curves.png'}")
    return path


def plot_history(
    history: dict[str, list[float]],
    path: Path,
    title: str,
    ylabels: dict[str, str],
    baselines: dict[str, tuple[str, float]],
) -> None:
    """One panel per metric (train_x and val_x share panel x), a dashed line per baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[str]] = {}
    for key in history:
        panels.setdefault(key.split("_", 1)[-1], []).append(key)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (metric, keys) in zip(axes[0], panels.items(), strict=True):
        for key in keys:
            epochs = range(1, len(history[key]) + 1)
            label = "train" if key.startswith("train_") else "validation"
            ax.plot(epochs, history[key], marker="o", label=label)
        if metric in baselines:
            name, value = baselines[metric]
            ax.axhline(value, color="grey", linestyle="--", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabels.get(metric, metric.replace("_", " ")))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class Trainer(Generic[Config, Model, Facts]):
    """A task's training part in the registry: its config (one flag per field), `train`, and
    how its checkpoints (of the `checkpoint` schema) become a model again."""

    config: type[Config]
    train: Callable[[Config], Path]
    checkpoint: type[Facts]
    model: Callable[[Any], Model]  # the model class, built from an instance of...
    model_config: Callable[..., Any]  # ...its config class, from the checkpoint's "config"
    description: str = ""

    def main(self, argv: list[str] | None = None, prog: str = "rnnserve train") -> Path:
        return self.train(parse_config(self.config, argv, prog, self.description))

    def load_checkpoint(self, path: Path) -> tuple[Model, Facts]:
        return checkpoints.load_checkpoint(
            path, self.checkpoint, lambda config: self.model(self.model_config(**config))
        )


def length_batches(
    lengths: list[int], batch_size: int, rng: random.Random | None = None
) -> Iterable[list[int]]:
    """Indices in batches of similar length (little padding), in a random order given `rng`.

    Sorting happens within windows of 50 batches, so the order stays random overall.
    """
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    window = batch_size * 50
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        groups = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        if rng is not None:
            rng.shuffle(groups)
        yield from groups
