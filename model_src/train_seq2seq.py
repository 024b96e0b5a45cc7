"""Train the date normaliser: config -> CLDR data -> seq2seq -> `fit` (early stop) -> checkpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from contract.chars import BOS_ID, EOS_ID, PAD_ID, CharVocabulary
from contract.checkpoint import Seq2SeqCheckpoint, TextPairs
from contract.manifest import TrainingInfo
from model_src import dates
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
from model_src.seq2seq import Seq2Seq, Seq2SeqConfig


@dataclass(kw_only=True)
class TrainConfig(FitConfig):
    out: Path = field(metadata={"help": "folder for checkpoint.pt and plot"})
    cell: str = field(default="gru", metadata={"choices": ["lstm", "gru"]})
    train_size: int = 30_000
    test_size: int = 2_000
    epochs: int = 4
    patience: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    max_input_chars: int = 64
    max_output_chars: int = 16
    max_minutes: int = 0  # stop (mid-epoch) after this long; 0: no limit, reproducible
    embedding_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = field(default=True, metadata={"help": "--no-bidirectional: one way"})
    decoder_hidden_size: int = 160
    output_embedding_dim: int = 32
    attention_size: int = 128
    dropout: float = 0.1


class EncodedPairs:
    """Examples as id lists, batched by similar input length."""

    def __init__(
        self,
        examples: list[dates.Example],
        source: CharVocabulary,
        target: CharVocabulary,
        cap: int,
    ) -> None:
        self.examples = examples
        self.ids = [source.encode(e.text)[:cap] for e in examples]
        self.targets = [[BOS_ID, *target.encode(e.target), EOS_ID] for e in examples]

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int, rng: random.Random | None = None):
        for group in length_batches([len(ids) for ids in self.ids], batch_size, rng):
            yield group, *self.collate(group)

    def collate(self, group: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(self.ids[i]) for i in group])
        chars = torch.full((len(group), int(lengths.max())), PAD_ID, dtype=torch.long)
        longest = max(len(self.targets[i]) for i in group)
        targets = torch.full((len(group), longest), PAD_ID, dtype=torch.long)
        for row, i in enumerate(group):
            chars[row, : lengths[row]] = torch.tensor(self.ids[i])
            targets[row, : len(self.targets[i])] = torch.tensor(self.targets[i])
        return chars, lengths, targets


@torch.no_grad()
def evaluate(
    model: Seq2Seq, data: EncodedPairs, target: CharVocabulary, max_len: int, batch_size: int = 256
) -> tuple[float, float]:
    """Mean per-character loss (teacher forcing) and exact-match accuracy (greedy)."""
    model.eval()
    loss_sum, chars_seen, exact = 0.0, 0, 0
    for group, chars, lengths, targets in data.batches(batch_size):
        logits = model(chars, lengths, targets)
        gold = targets[:, 1:]
        loss_sum += nn.functional.cross_entropy(
            logits.transpose(1, 2), gold, ignore_index=PAD_ID, reduction="sum"
        ).item()
        chars_seen += int((gold != PAD_ID).sum())
        outputs, _ = model.greedy(chars, lengths, max_len)
        exact += sum(
            target.decode(out) == data.examples[i].target
            for out, i in zip(outputs, group, strict=True)
        )
    return loss_sum / chars_seen, exact / len(data)


@dataclass
class Data:
    """The date pairs as ids: symbol tables built from train, four splits."""

    source: CharVocabulary
    target: CharVocabulary
    train: EncodedPairs
    validation: EncodedPairs
    seen: EncodedPairs  # test dates in the training locales
    heldout: EncodedPairs  # test dates in locales never trained on


def load_data(cfg: TrainConfig) -> Data:
    splits = dates.build_splits(cfg.train_size, cfg.test_size, cfg.seed)
    source = CharVocabulary.build(e.text for e in splits.train)
    target = CharVocabulary.build(e.target for e in splits.train)
    data = Data(
        source,
        target,
        *(
            EncodedPairs(s, source, target, cfg.max_input_chars)
            for s in (splits.train, splits.validation, splits.test_seen, splits.test_heldout)
        ),
    )
    print(
        f"data: {len(data.train)} train, {len(data.validation)} validation, {len(data.seen)} "
        f"test (seen locales), {len(data.heldout)} test (held-out locales "
        f"{', '.join(dates.HELDOUT_LOCALES)}); {len(source)} input, {len(target)} output symbols"
    )
    return data


def fit_seq2seq(cfg: TrainConfig, model: Seq2Seq, data: Data) -> Fitted:
    """Teacher-forced cross-entropy; the best epoch by validation exact match (greedy)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=0)
    rng = random.Random(cfg.seed)

    def step(batch: tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]) -> Step:
        _, chars, lengths, targets = batch
        logits = model(chars, lengths, targets)  # (B, U - 1, V)
        gold = targets[:, 1:]
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), gold, ignore_index=PAD_ID)
        real = gold != PAD_ID
        n = int(real.sum())
        correct = int(((logits.argmax(-1) == gold) & real).sum())
        return Step(loss, {"loss": loss.item() * n, "char_acc": correct}, n)

    def validate() -> dict[str, float]:
        val_loss, val_acc = evaluate(model, data.validation, data.target, cfg.max_output_chars)
        return {"val_loss": val_loss, "val_exact_match": val_acc}

    def after_epoch(scores: dict[str, float]) -> None:
        scheduler.step(scores["val_loss"])

    batches = partial(data.train.batches, cfg.batch_size, rng)
    loop = Loop.of(
        cfg,
        "val_exact_match",
        max_seconds=cfg.max_minutes * 60,
        perfect=1.0,
        batches_per_epoch=-(-len(data.train) // cfg.batch_size),
    )
    return fit(model, optimizer, loop, batches, step, validate, after_epoch=after_epoch)


def heldout_metrics(
    cfg: TrainConfig, model: Seq2Seq, data: Data, fitted: Fitted
) -> dict[str, float]:
    """Exact match on both test splits (greedy decoding), scored once."""
    _, seen_acc = evaluate(model, data.seen, data.target, cfg.max_output_chars)
    heldout_loss, heldout_acc = evaluate(model, data.heldout, data.target, cfg.max_output_chars)
    print(
        f"best epoch {fitted.best_epoch}: validation exact match {fitted.best:.4f}; test exact "
        f"match {seen_acc:.4f} on seen locales, {heldout_acc:.4f} on held-out locales "
        f"({fitted.seconds:.0f} s)"
    )
    return {
        "validation_exact_match": round(fitted.best, 4),
        "test_seen_locales_exact_match": round(seen_acc, 4),
        "test_heldout_locales_exact_match": round(heldout_acc, 4),
        "test_heldout_locales_loss": round(heldout_loss, 4),
        "train_seconds": round(fitted.seconds),
    }


def checkpoint_facts(
    cfg: TrainConfig, config: Seq2SeqConfig, data: Data, fitted: Fitted, metrics: dict
) -> Seq2SeqCheckpoint:
    """What export needs beside the weights."""
    heldout = data.heldout.examples
    return Seq2SeqCheckpoint(
        config=config.to_dict(),
        input_vocab=list(data.source.symbols),
        output_vocab=list(data.target.symbols),
        max_input_chars=cfg.max_input_chars,
        max_output_chars=cfg.max_output_chars,
        # Held-out examples travel with the checkpoint: export checks parity on them.
        heldout=TextPairs(texts=[e.text for e in heldout], targets=[e.target for e in heldout]),
        training=TrainingInfo(
            dataset="cldr-dates",
            source=dates.SOURCE,
            seed=cfg.seed,
            epochs=fitted.best_epoch,
            examples={
                "train": len(data.train),
                "validation": len(data.validation),
                "test_seen_locales": len(data.seen),
                "test_heldout_locales": len(data.heldout),
            },
            metrics=metrics,
        ),
    )


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation, write checkpoint.pt and training_curves.png."""
    cfg.start()
    data = load_data(cfg)
    sizes = {"input_vocab_size": len(data.source), "output_vocab_size": len(data.target)}
    config = config_of(Seq2SeqConfig, cfg, **sizes)
    model = Seq2Seq(config)
    fitted = fit_seq2seq(cfg, model, data)
    facts = checkpoint_facts(cfg, config, data, fitted, heldout_metrics(cfg, model, data, fitted))
    return write_outputs(cfg.out, facts, model, fitted.history, f"CLDR dates, {cfg.cell}")


TRAINER = Trainer(TrainConfig, train, Seq2SeqCheckpoint, Seq2Seq, Seq2SeqConfig, __doc__)

if __name__ == "__main__":
    TRAINER.main()
