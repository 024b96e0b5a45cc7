"""Train a text classifier: config -> data -> model -> `fit` (early stop) -> checkpoint, plot."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from contract.checkpoint import ClassifierCheckpoint, LabelledTexts
from contract.manifest import TrainingInfo
from contract.words import PAD_ID, Vocabulary, tokenize
from model_src.classifier import ClassifierConfig, TextClassifier
from model_src.data import Example, load_splits
from model_src.fit import (
    FitConfig,
    Fitted,
    Loop,
    Step,
    Trainer,
    config_of,
    fit,
    length_batches,
    write_outputs,
)


@dataclass(kw_only=True)
class TrainConfig(FitConfig):
    data: Path = field(
        metadata={"help": "folder with train.* and dev.* (SST-2 layout) or one CSV/TSV/JSONL file"}
    )
    out: Path = field(metadata={"help": "folder for checkpoint.pt and plot"})
    cell: str = field(default="lstm", metadata={"choices": ["lstm", "gru"]})
    labels: list[str] | None = field(
        default=None, metadata={"help": "comma-separated label names (label i = i-th name)"}
    )
    dataset: str = field(default="custom", metadata={"help": "dataset name for the manifest"})
    source: str = field(default="", metadata={"help": "where the dataset comes from"})
    epochs: int = 8
    patience: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    max_tokens: int = 256
    min_freq: int = 2
    max_vocab: int = 20_000
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    attention_size: int = 128
    dropout: float = 0.3


class EncodedSplit:
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
        for group in length_batches([len(ids) for ids in self.ids], batch_size, rng):
            yield self.collate(group)

    def collate(self, group: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(self.ids[i]) for i in group])
        tokens = torch.full((len(group), int(lengths.max())), PAD_ID, dtype=torch.long)
        for row, i in enumerate(group):
            tokens[row, : lengths[row]] = torch.tensor(self.ids[i])
        return tokens, lengths, torch.tensor([self.targets[i] for i in group])


@torch.no_grad()
def evaluate(
    model: TextClassifier, data: EncodedSplit, batch_size: int = 256
) -> tuple[float, float]:
    """Mean loss and accuracy."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for tokens, lengths, targets in data.batches(batch_size):
        logits, _ = model(tokens, lengths)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
    return loss_sum / len(data), correct / len(data)


@dataclass
class Data:
    """The splits as the model reads them, with the vocabulary and labels built from train."""

    vocab: Vocabulary
    labels: list[str]  # as the data file writes them
    label_names: list[str]  # as the manifest shows them
    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit
    test_name: str  # e.g. dev (SST-2's labelled held-out split)
    test_texts: list[str]


def load_data(cfg: TrainConfig) -> Data:
    """Splits -> labels -> vocabulary (from train only) -> ids."""
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
        EncodedSplit(s, vocab, labels, cfg.max_tokens)
        for s in (splits.train, splits.validation, splits.test)
    )
    print(
        f"data: {len(train_set)} train, {len(val_set)} validation, {len(test_set)} "
        f"{splits.test_name}; vocabulary {len(vocab)}; labels {label_names}"
    )
    return Data(
        vocab, labels, label_names, train_set, val_set, test_set, splits.test_name,
        [e.text for e in splits.test],
    )  # fmt: skip


def fit_classifier(cfg: TrainConfig, model: TextClassifier, data: Data) -> Fitted:
    """Cross-entropy on length-bucketed batches; the best epoch by validation accuracy."""
    rng = random.Random(cfg.seed)

    def step(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Step:
        tokens, lengths, targets = batch
        logits, _ = model(tokens, lengths)
        loss = nn.functional.cross_entropy(logits, targets)
        correct = (logits.argmax(-1) == targets).sum().item()
        return Step(loss, {"loss": loss.item() * len(targets), "acc": correct}, len(targets))

    def validate() -> dict[str, float]:
        val_loss, val_acc = evaluate(model, data.validation)
        return {"val_loss": val_loss, "val_acc": val_acc}

    batches = partial(data.train.batches, cfg.batch_size, rng)
    loop = Loop.of(cfg, "val_acc", batches_per_epoch=-(-len(data.train) // cfg.batch_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return fit(model, optimizer, loop, batches, step, validate)


def heldout_metrics(model: TextClassifier, data: Data, fitted: Fitted) -> dict[str, float]:
    """The best epoch's validation accuracy and the test split's, scored once."""
    test_loss, test_acc = evaluate(model, data.test)
    test = data.test_name
    print(
        f"best epoch {fitted.best_epoch}: validation acc {fitted.best:.4f}, {test} "
        f"acc {test_acc:.4f} ({fitted.seconds:.0f} s)"
    )
    return {
        "validation_accuracy": round(fitted.best, 4),
        f"{test}_accuracy": round(test_acc, 4),
        f"{test}_loss": round(test_loss, 4),
    }


def checkpoint_facts(
    cfg: TrainConfig, config: ClassifierConfig, data: Data, fitted: Fitted, metrics: dict
) -> ClassifierCheckpoint:
    """What export needs beside the weights."""
    test = data.test_name
    return ClassifierCheckpoint(
        config=config.to_dict(),
        vocab=list(data.vocab.tokens),
        labels=data.label_names,
        max_tokens=cfg.max_tokens,
        lowercase=True,
        # The held-out split travels with the checkpoint so export can check parity on real
        # sentences and measure what int8 quantisation costs in accuracy.
        heldout=LabelledTexts(split=test, texts=data.test_texts, labels=data.test.targets),
        training=TrainingInfo(
            dataset=cfg.dataset,
            source=cfg.source or str(cfg.data),
            seed=cfg.seed,
            epochs=fitted.best_epoch,
            examples={
                "train": len(data.train),
                "validation": len(data.validation),
                test: len(data.test),
            },
            metrics=metrics,
        ),
    )


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation, write checkpoint.pt and training_curves.png."""
    cfg.start()
    data = load_data(cfg)
    config = config_of(
        ClassifierConfig, cfg, vocab_size=len(data.vocab), num_classes=len(data.labels)
    )
    model = TextClassifier(config)
    fitted = fit_classifier(cfg, model, data)
    facts = checkpoint_facts(cfg, config, data, fitted, heldout_metrics(model, data, fitted))
    ylabels = {"loss": "cross-entropy", "acc": "accuracy"}
    title = f"{cfg.dataset} {cfg.cell}"
    return write_outputs(cfg.out, facts, model, fitted.history, title, ylabels)


TRAINER = Trainer(
    TrainConfig, train, ClassifierCheckpoint, TextClassifier, ClassifierConfig, __doc__
)

if __name__ == "__main__":
    TRAINER.main()
