"""Train a text classifier: config -> data -> model -> loop (early stop) -> checkpoint, plot."""

from __future__ import annotations

import argparse
import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model_src import checkpoints
from model_src.classifier import ClassifierConfig, TextClassifier
from model_src.data import Example, load_splits
from model_src.text import PAD_ID, Vocabulary, tokenize

CHECKPOINT_FORMAT = "rnnserve-classifier/1"


@dataclass
class TrainConfig:
    data: Path
    out: Path
    cell: str = "lstm"
    labels: list[str] | None = None
    dataset: str = "custom"
    source: str = ""
    epochs: int = 8
    patience: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 13
    max_tokens: int = 256
    min_freq: int = 2
    max_vocab: int = 20_000
    max_steps: int = 0  # 0: no limit; tests use a few steps
    threads: int = 0
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    attention_size: int = 128
    dropout: float = 0.3


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Encoded:
    """A split as token ids and label indices, batched by similar length to save padding."""

    def __init__(self, examples: list[Example], vocab: Vocabulary, labels: list[str], cap: int):
        index = {label: i for i, label in enumerate(labels)}
        unknown = {e.label for e in examples} - index.keys()
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not in {labels}")
        self.ids = [vocab.encode(tokenize(e.text))[:cap] or [PAD_ID] for e in examples]
        self.targets = [index[e.label] for e in examples]

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int, rng: random.Random | None = None):
        order = list(range(len(self)))
        if rng is not None:
            rng.shuffle(order)
        # Sort within windows of 50 batches: little padding, still a random order overall.
        window = batch_size * 50
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(self.ids[i]))
            groups = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            if rng is not None:
                rng.shuffle(groups)
            for group in groups:
                yield self.collate(group)

    def collate(self, group: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(self.ids[i]) for i in group])
        tokens = torch.full((len(group), int(lengths.max())), PAD_ID, dtype=torch.long)
        for row, i in enumerate(group):
            tokens[row, : lengths[row]] = torch.tensor(self.ids[i])
        return tokens, lengths, torch.tensor([self.targets[i] for i in group])


@torch.no_grad()
def evaluate(model: TextClassifier, data: Encoded, batch_size: int = 256) -> tuple[float, float]:
    """Mean loss and accuracy."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for tokens, lengths, targets in data.batches(batch_size):
        logits, _ = model(tokens, lengths)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
    return loss_sum / len(data), correct / len(data)


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation, write checkpoint.pt and training_curves.png."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    splits = load_splits(cfg.data, cfg.seed)
    labels = cfg.labels or sorted({e.label for e in splits.train})
    label_names = labels
    if cfg.labels and all(lbl.isdigit() for lbl in {e.label for e in splits.train}):
        # Numeric labels in the file, names given: label i is the i-th name.
        labels = [str(i) for i in range(len(cfg.labels))]
    vocab = Vocabulary.build(
        (tokenize(e.text) for e in splits.train), min_freq=cfg.min_freq, max_size=cfg.max_vocab
    )
    train_set, val_set, test_set = (
        Encoded(s, vocab, labels, cfg.max_tokens)
        for s in (splits.train, splits.validation, splits.test)
    )
    print(
        f"data: {len(train_set)} train, {len(val_set)} validation, {len(test_set)} "
        f"{splits.test_name}; vocabulary {len(vocab)}; labels {label_names}"
    )

    config = ClassifierConfig(
        vocab_size=len(vocab),
        num_classes=len(labels),
        cell=cfg.cell,
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        attention_size=cfg.attention_size,
        dropout=cfg.dropout,
    )
    model = TextClassifier(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = random.Random(cfg.seed)
    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc")
    }
    best_acc, best_state, best_epoch, stale, steps = -1.0, None, 0, 0, 0
    started = time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total = (len(train_set) + cfg.batch_size - 1) // cfg.batch_size
        bar = tqdm(
            train_set.batches(cfg.batch_size, rng),
            total=total,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        loss_sum, correct, seen = 0.0, 0, 0
        for tokens, lengths, targets in bar:
            logits, _ = model(tokens, lengths)
            loss = nn.functional.cross_entropy(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(-1) == targets).sum().item()
            seen += len(targets)
            steps += 1
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False
            )
            if cfg.max_steps and steps >= cfg.max_steps:
                break
        val_loss, val_acc = evaluate(model, val_set)
        for key, value in zip(
            history, (loss_sum / seen, correct / seen, val_loss, val_acc), strict=True
        ):
            history[key].append(value)
        tqdm.write(
            f"epoch {epoch}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f} | "
            f"validation loss {val_loss:.4f} acc {val_acc:.4f}"
        )
        if val_acc > best_acc:
            best_acc, best_state, best_epoch, stale = (
                val_acc,
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
        if stale >= cfg.patience or (cfg.max_steps and steps >= cfg.max_steps):
            break

    model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(model, test_set)
    print(
        f"best epoch {best_epoch}: validation acc {best_acc:.4f}, {splits.test_name} acc "
        f"{test_acc:.4f} ({time.time() - started:.0f} s)"
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "state_dict": model.state_dict(),
        "vocab": list(vocab.tokens),
        "labels": label_names,
        "max_tokens": cfg.max_tokens,
        "lowercase": True,
        # The held-out split travels with the checkpoint so export can check parity on real
        # sentences and measure what int8 quantisation costs in accuracy.
        "heldout": {
            "split": splits.test_name,
            "texts": [e.text for e in splits.test],
            "labels": test_set.targets,
        },
        "training": {
            "dataset": cfg.dataset,
            "source": cfg.source or str(cfg.data),
            "seed": cfg.seed,
            "epochs": best_epoch,
            "examples": {
                "train": len(train_set),
                "validation": len(val_set),
                splits.test_name: len(test_set),
            },
            "metrics": {
                "validation_accuracy": round(best_acc, 4),
                f"{splits.test_name}_accuracy": round(test_acc, 4),
                f"{splits.test_name}_loss": round(test_loss, 4),
            },
        },
    }
    path = cfg.out / "checkpoint.pt"
    torch.save(checkpoint, path)
    plot_history(history, cfg.out / "training_curves.png", title=f"{cfg.dataset} {cfg.cell}")
    print(f"wrote {path} and {cfg.out / 'training_curves.png'}")
    return path


def plot_history(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
        ax.plot(epochs, history[f"train_{metric}"], marker="o", label="train")
        ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_checkpoint(path: Path) -> tuple[TextClassifier, dict]:
    return checkpoints.load_checkpoint(
        path, CHECKPOINT_FORMAT, lambda config: TextClassifier(ClassifierConfig(**config))
    )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="rnnserve train", description=__doc__)
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with train.* and dev.* (SST-2 layout) or one CSV/TSV/JSONL file",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and plot")
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--labels", help="comma-separated label names (label i = i-th name)")
    p.add_argument("--dataset", default="custom", help="dataset name for the manifest")
    p.add_argument("--source", default="", help="where the dataset comes from, for the manifest")
    for name in (
        "epochs",
        "patience",
        "batch_size",
        "seed",
        "max_tokens",
        "min_freq",
        "max_vocab",
        "max_steps",
        "threads",
    ):
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=TrainConfig.__dataclass_fields__[name].default,
        )
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    args = vars(p.parse_args(argv))
    args["labels"] = args["labels"].split(",") if args["labels"] else None
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
