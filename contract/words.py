"""Text preprocessing shared by training and serving (torch-free: the service imports it)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

# Penn-Treebank-like split, as SST-2 was tokenised: clitics ("n't", "'s") and every
# punctuation mark become tokens of their own, so "Didn't!" -> ["did", "n't", "!"].
_NOT = re.compile(r"(\w)n't\b")
_TOKEN = re.compile(r"n't|'\w+|\w+|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split a text into word tokens the way the training corpus was split."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'")
    if lowercase:
        text = text.lower()
    text = _NOT.sub(r"\1 n't", text)
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id mapping; ids 0 and 1 are padding and the unknown token."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary must start with {PAD!r} and {UNK!r}")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        ids: dict[str, int] = self._ids  # type: ignore[attr-defined]
        return [ids.get(t, UNK_ID) for t in tokens]

    @classmethod
    def build(cls, texts: Iterable[list[str]], min_freq: int = 2, max_size: int = 20_000):
        """Most frequent tokens first (ties alphabetical, so the result is reproducible)."""
        counts = Counter(t for tokens in texts for t in tokens)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        return cls((PAD, UNK, *kept[: max_size - 2]))

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{t}\n" for t in self.tokens), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(tuple(path.read_text(encoding="utf-8").split("\n")[:-1]))
