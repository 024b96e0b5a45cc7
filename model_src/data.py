"""Labelled text corpora: SST-2 (GLUE layout) or a user's own CSV / TSV / JSONL of (text, label)."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

TEXT_COLUMNS = ("text", "sentence", "content")
SUFFIXES = (".tsv", ".csv", ".jsonl")


@dataclass
class Example:
    text: str
    label: str


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    test_name: str  # what "test" is, for reports: "dev" for SST-2


def read_examples(path: Path) -> list[Example]:
    """Rows with a text column (text, sentence or content) and a label column."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif path.suffix in (".tsv", ".csv"):
        with path.open(encoding="utf-8", newline="") as f:
            delimiter = "\t" if path.suffix == ".tsv" else ","
            rows = list(
                csv.DictReader(
                    f,
                    delimiter=delimiter,
                    quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
                )
            )
    else:
        raise ValueError(f"{path}: expected a .tsv, .csv or .jsonl file")
    if not rows:
        raise ValueError(f"{path}: no rows")
    text_key = next((k for k in TEXT_COLUMNS if k in rows[0]), None)
    if text_key is None or "label" not in rows[0]:
        raise ValueError(f"{path}: needs a 'label' column and one of {TEXT_COLUMNS}")
    return [Example(str(r[text_key]), str(r["label"])) for r in rows]


def _find(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").exists()), None)


def load_splits(data: Path, seed: int, validation_fraction: float = 0.1) -> Splits:
    """Train and select on train (a held-out part of it), report on dev/test.

    `data` is a folder with train.* and dev.* (or test.*), as SST-2 ships, or one file,
    which is then split three ways.
    """
    rng = random.Random(seed)
    if data.is_dir():
        train_file = _find(data, "train")
        if train_file is None:
            raise FileNotFoundError(f"{data}: no train.tsv, train.csv or train.jsonl")
        test_name = "dev" if _find(data, "dev") else "test"
        test_file = _find(data, test_name)
        if test_file is None:
            raise FileNotFoundError(f"{data}: no dev.* or test.* file to report on")
        train, test = read_examples(train_file), read_examples(test_file)
    else:
        train, test_name = read_examples(data), "test"
        rng.shuffle(train)
        cut = max(1, int(len(train) * validation_fraction))
        test, train = train[:cut], train[cut:]
    rng.shuffle(train)
    cut = max(1, int(len(train) * validation_fraction))
    return Splits(train=train[cut:], validation=train[:cut], test=test, test_name=test_name)
