"""Train the character-level GRU on SST-2's train.tsv and dev.tsv.

    python examples/char_gru/train.py --data data/sst2 --out runs/char_gru

The data: SST-2 as GLUE distributes it (Socher et al. 2013; Wang et al. 2018): download SST-2
from https://gluebenchmark.com/tasks and unzip it so that data/sst2/train.tsv and dev.tsv
exist (data/README.md). Columns are read by their header, `sentence` (or `text`) and `label`,
in any order, so any TSV of your own with those columns works too.

writes weights.pt (a state_dict), vocab.txt (one character a line, in id order, with this
model's own [PAD] and [UNK] tokens) and config.json (build()'s keyword arguments).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import unicodedata
from pathlib import Path

import torch
from model import build
from torch import nn

PAD, UNK = "[PAD]", "[UNK]"


def read(path: Path) -> list[tuple[str, int]]:
    """(text, label) rows of a TSV file with a header naming its columns."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    text = next((c for c in ("sentence", "text") if rows and c in rows[0]), None)
    if text is None or "label" not in rows[0]:
        raise SystemExit(f"{path}: needs a header with a `label` and a `sentence` or `text` column")
    return [(r[text], int(r["label"])) for r in rows if r[text].strip()]


def characters(text: str) -> list[str]:
    """What `--tokenizer chars --lowercase` does when serving: NFKC, lowercase, characters."""
    return list(unicodedata.normalize("NFKC", text).lower())


def batch(rows, ids, max_chars):
    encoded = [[ids.get(c, ids[UNK]) for c in characters(t)][:max_chars] or [ids[UNK]]
               for t, _ in rows]  # fmt: skip
    lengths = torch.tensor([len(e) for e in encoded])
    tokens = torch.full((len(rows), int(lengths.max())), ids[PAD])
    for i, e in enumerate(encoded):
        tokens[i, : len(e)] = torch.tensor(e)
    return tokens, lengths, torch.tensor([y for _, y in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--max-chars", type=int, default=256)
    args = p.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    train, dev = read(args.data / "train.tsv"), read(args.data / "dev.tsv")
    # This model's own vocabulary: [UNK] first, [PAD] second, then the characters seen.
    vocab = [UNK, PAD, *sorted({c for t, _ in train for c in characters(t)})]
    ids = {c: i for i, c in enumerate(vocab)}
    config = {"vocab_size": len(vocab), "num_classes": 2, "pad_id": ids[PAD],
              "hidden_size": args.hidden_size}  # fmt: skip
    model = build(**config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(args.epochs):
        model.train()
        random.shuffle(train)
        for start in range(0, len(train), 32):
            tokens, lengths, labels = batch(train[start : start + 32], ids, args.max_chars)
            loss = nn.functional.cross_entropy(model(tokens, lengths), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            tokens, lengths, labels = batch(dev, ids, args.max_chars)
            accuracy = (model(tokens, lengths).argmax(-1) == labels).float().mean().item()
        print(f"epoch {epoch + 1}: dev accuracy {accuracy:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "weights.pt")
    (args.out / "vocab.txt").write_text("".join(f"{c}\n" for c in vocab), encoding="utf-8")
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {args.out}/weights.pt, vocab.txt, config.json")


if __name__ == "__main__":
    main()
