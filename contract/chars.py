"""Character-level text for seq2seq, shared by training and serving (torch-free)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = (PAD, UNK, BOS, EOS)


def normalize(text: str) -> str:
    """NFKC, as in training: narrow and no-break spaces become spaces, full-width digits ASCII."""
    return unicodedata.normalize("NFKC", text).strip()


@dataclass(frozen=True)
class CharVocabulary:
    """Character <-> id; ids 0-3 are padding, unknown, start and end of sequence."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.symbols[:4] != SPECIALS:
            raise ValueError(f"a character vocabulary must start with {SPECIALS}")
        object.__setattr__(self, "_ids", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """One id per character; characters never seen in training become <unk>."""
        ids: dict[str, int] = self._ids  # type: ignore[attr-defined]
        return [ids.get(c, UNK_ID) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids up to the first </s>, special symbols dropped."""
        chars = []
        for i in ids:
            if i == EOS_ID:
                break
            if i >= len(SPECIALS):
                chars.append(self.symbols[i])
        return "".join(chars)

    @classmethod
    def build(cls, texts: Iterable[str]) -> CharVocabulary:
        """Every character seen, in code point order (reproducible)."""
        return cls((*SPECIALS, *sorted({c for t in texts for c in t} - set(SPECIALS))))

    def save(self, path: Path) -> None:
        # One symbol per line, escaped so that a newline or space character survives.
        path.write_text(
            "".join(f"{s.encode('unicode_escape').decode('ascii')}\n" for s in self.symbols),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> CharVocabulary:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]
        return cls(tuple(s.encode("ascii").decode("unicode_escape") for s in lines))
