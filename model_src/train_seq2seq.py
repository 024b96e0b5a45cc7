"""Train the date normaliser: config -> CLDR data -> seq2seq -> `fit` (early stop) -> checkpoint."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import torch
from torch import nn

from contract.chars import BOS_ID, EOS_ID, PAD_ID, CharVocabulary
from model_src import dates
from model_src.fit import FitConfig, Loop, Step, Trainer, fit, length_batches, write_outputs
from model_src.seq2seq import Seq2Seq, Seq2SeqConfig

CHECKPOINT_FORMAT = "rnnserve-seq2seq/1"


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


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch on validation, write checkpoint.pt and training_curves.png."""
    cfg.start()
    splits = dates.build_splits(cfg.train_size, cfg.test_size, cfg.seed)
    source = CharVocabulary.build(e.text for e in splits.train)
    target = CharVocabulary.build(e.target for e in splits.train)
    train_set, val_set, seen_set, heldout_set = (
        EncodedPairs(s, source, target, cfg.max_input_chars)
        for s in (splits.train, splits.validation, splits.test_seen, splits.test_heldout)
    )
    print(
        f"data: {len(train_set)} train, {len(val_set)} validation, {len(seen_set)} test "
        f"(seen locales), {len(heldout_set)} test (held-out locales "
        f"{', '.join(dates.HELDOUT_LOCALES)}); {len(source)} input, {len(target)} output symbols"
    )
    config = Seq2SeqConfig(
        input_vocab_size=len(source),
        output_vocab_size=len(target),
        **{f.name: getattr(cfg, f.name) for f in fields(Seq2SeqConfig) if hasattr(cfg, f.name)},
    )
    model = Seq2Seq(config)
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
        val_loss, val_acc = evaluate(model, val_set, target, cfg.max_output_chars)
        return {"val_loss": val_loss, "val_exact_match": val_acc}

    def after_epoch(scores: dict[str, float]) -> None:
        scheduler.step(scores["val_loss"])

    batches = partial(train_set.batches, cfg.batch_size, rng)
    loop = Loop.of(
        cfg,
        "val_exact_match",
        max_seconds=cfg.max_minutes * 60,
        perfect=1.0,
        batches_per_epoch=-(-len(train_set) // cfg.batch_size),
    )
    started = time.time()
    fitted = fit(model, optimizer, loop, batches, step, validate, after_epoch=after_epoch)
    best_acc, best_epoch = fitted.best, fitted.best_epoch
    _, seen_acc = evaluate(model, seen_set, target, cfg.max_output_chars)
    heldout_loss, heldout_acc = evaluate(model, heldout_set, target, cfg.max_output_chars)
    elapsed = time.time() - started
    print(
        f"best epoch {best_epoch}: validation exact match {best_acc:.4f}; test exact match "
        f"{seen_acc:.4f} on seen locales, {heldout_acc:.4f} on held-out locales ({elapsed:.0f} s)"
    )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "state_dict": model.state_dict(),
        "input_vocab": list(source.symbols),
        "output_vocab": list(target.symbols),
        "max_input_chars": cfg.max_input_chars,
        "max_output_chars": cfg.max_output_chars,
        # Held-out examples travel with the checkpoint: export checks parity on them.
        "heldout": {
            "texts": [e.text for e in splits.test_heldout],
            "targets": [e.target for e in splits.test_heldout],
        },
        "training": {
            "dataset": "cldr-dates",
            "source": dates.SOURCE,
            "seed": cfg.seed,
            "epochs": best_epoch,
            "examples": {
                "train": len(train_set),
                "validation": len(val_set),
                "test_seen_locales": len(seen_set),
                "test_heldout_locales": len(heldout_set),
            },
            "metrics": {
                "validation_exact_match": round(best_acc, 4),
                "test_seen_locales_exact_match": round(seen_acc, 4),
                "test_heldout_locales_exact_match": round(heldout_acc, 4),
                "test_heldout_locales_loss": round(heldout_loss, 4),
                "train_seconds": round(elapsed),
            },
        },
    }
    return write_outputs(cfg.out, checkpoint, fitted.history, f"CLDR dates, {cfg.cell}")


TRAINER = Trainer(TrainConfig, train, CHECKPOINT_FORMAT, Seq2Seq, Seq2SeqConfig, __doc__)

if __name__ == "__main__":
    TRAINER.main()
