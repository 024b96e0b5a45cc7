"""Train the date normaliser: config -> CLDR data -> seq2seq -> loop (early stop) -> checkpoint."""

from __future__ import annotations

import argparse
import copy
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from model_src import checkpoints, dates
from model_src.chars import BOS_ID, EOS_ID, PAD_ID, CharVocabulary
from model_src.seq2seq import Seq2Seq, Seq2SeqConfig
from model_src.train import plot_history, seed_everything

CHECKPOINT_FORMAT = "rnnserve-seq2seq/1"


@dataclass
class TrainConfig:
    out: Path
    cell: str = "gru"
    train_size: int = 30_000
    test_size: int = 2_000
    epochs: int = 4
    patience: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 13
    max_input_chars: int = 64
    max_output_chars: int = 16
    max_steps: int = 0  # 0: no limit; tests use a few steps
    max_minutes: int = 0  # stop (mid-epoch) after this long; 0: no limit, reproducible
    threads: int = 0
    embedding_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    decoder_hidden_size: int = 160
    output_embedding_dim: int = 32
    attention_size: int = 128
    dropout: float = 0.1


class Encoded:
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
        order = list(range(len(self)))
        if rng is not None:
            rng.shuffle(order)
        window = batch_size * 50
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(self.ids[i]))
            groups = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            if rng is not None:
                rng.shuffle(groups)
            for group in groups:
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
    model: Seq2Seq, data: Encoded, target: CharVocabulary, max_len: int, batch_size: int = 256
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
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    splits = dates.build_splits(cfg.train_size, cfg.test_size, cfg.seed)
    source = CharVocabulary.build(e.text for e in splits.train)
    target = CharVocabulary.build(e.target for e in splits.train)
    train_set, val_set, seen_set, heldout_set = (
        Encoded(s, source, target, cfg.max_input_chars)
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
    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc")
    }
    best_acc, best_state, best_epoch, stale, steps = -1.0, None, 0, 0, 0
    started = time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        bar = tqdm(
            train_set.batches(cfg.batch_size, rng),
            total=(len(train_set) + cfg.batch_size - 1) // cfg.batch_size,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        loss_sum, correct, seen = 0.0, 0, 0
        for _, chars, lengths, targets in bar:
            logits = model(chars, lengths, targets)  # (B, U - 1, V)
            gold = targets[:, 1:]
            loss = nn.functional.cross_entropy(logits.transpose(1, 2), gold, ignore_index=PAD_ID)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            real = gold != PAD_ID
            n = int(real.sum())
            loss_sum += loss.item() * n
            correct += int(((logits.argmax(-1) == gold) & real).sum())
            seen += n
            steps += 1
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}", char_acc=f"{correct / seen:.4f}", refresh=False
            )
            if cfg.max_steps and steps >= cfg.max_steps:
                break
            if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
                break  # a partial epoch: validate it and stop
        val_loss, val_acc = evaluate(model, val_set, target, cfg.max_output_chars)
        scheduler.step(val_loss)
        for key, value in zip(
            history, (loss_sum / seen, correct / seen, val_loss, val_acc), strict=True
        ):
            history[key].append(value)
        tqdm.write(
            f"epoch {epoch}: train loss {loss_sum / seen:.4f} char acc {correct / seen:.4f} | "
            f"validation loss {val_loss:.4f} exact match {val_acc:.4f}"
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
        out_of_time = cfg.max_minutes and time.time() - started > cfg.max_minutes * 60
        if out_of_time:
            tqdm.write(f"stopping: the {cfg.max_minutes}-minute budget is spent")
        if (
            stale >= cfg.patience
            or best_acc == 1.0
            or out_of_time
            or (cfg.max_steps and steps >= cfg.max_steps)
        ):
            break

    model.load_state_dict(best_state)
    _, seen_acc = evaluate(model, seen_set, target, cfg.max_output_chars)
    heldout_loss, heldout_acc = evaluate(model, heldout_set, target, cfg.max_output_chars)
    elapsed = time.time() - started
    print(
        f"best epoch {best_epoch}: validation exact match {best_acc:.4f}; test exact match "
        f"{seen_acc:.4f} on seen locales, {heldout_acc:.4f} on held-out locales ({elapsed:.0f} s)"
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
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
    path = cfg.out / "checkpoint.pt"
    torch.save(checkpoint, path)
    plot_history(history, cfg.out / "training_curves.png", title=f"CLDR dates, {cfg.cell}")
    print(f"wrote {path} and {cfg.out / 'training_curves.png'}")
    return path


def load_checkpoint(path: Path) -> tuple[Seq2Seq, dict]:
    return checkpoints.load_checkpoint(
        path, CHECKPOINT_FORMAT, lambda config: Seq2Seq(Seq2SeqConfig(**config))
    )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="rnnserve train --task seq2seq", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and plot")
    p.add_argument("--cell", choices=["lstm", "gru"], default=TrainConfig.cell)
    p.add_argument("--unidirectional", action="store_true", help="a one-way encoder")
    for f in fields(TrainConfig):
        if f.type == "int" and f.name != "out":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--dropout", type=float, default=TrainConfig.dropout)
    args = vars(p.parse_args(argv))
    args["bidirectional"] = not args.pop("unidirectional")
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
