"""Request bodies shared by every benchmark: SST-2-like texts of a fixed token count."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "the",
    "film",
    "is",
    "a",
    "gripping",
    ",",
    "funny",
    "and",
    "moving",
    "story",
    "but",
    "the",
    "plot",
    "feels",
    "dull",
    "tedious",
    "and",
    "far",
    "too",
    "long",
    ";",
    "brilliant",
    "acting",
    ",",
    "awful",
    "dialogue",
    ",",
    "a",
    "charming",
    "mess",
    "of",
    "a",
    "movie",
    "with",
    "great",
    "music",
    "and",
    "a",
    "weak",
    "ending",
    "that",
    "never",
    "quite",
    "works",
]


def texts(n: int, tokens: int = 64, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=tokens)) for _ in range(n)]


def texts_of_lengths(lengths: list[int], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=n)) for n in lengths]


def write_bodies(folder: Path, n: int = 256, tokens: int = 64) -> Path:
    """One JSON body per line, for the wrk script (a single-instance predict each)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bodies-{tokens}.jsonl"
    path.write_text("".join(json.dumps({"instances": [t]}) + "\n" for t in texts(n, tokens)))
    return path
