"""Text -> token ids for a classifier, as its manifest says (torch-free: training and serving).

Three ways, each with the vocabulary's own padding and unknown ids (nothing assumes ours):
`words` (contract.words.tokenize), `chars` (one token per character) and `hf_tokenizer` (a
Hugging Face `tokenizer.json`, run with the `tokenizers` library).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contract.manifest import CharTokensPreprocessing, TextPreprocessing, TokenizerPreprocessing
from contract.words import tokenize


@dataclass(frozen=True)
class TokenVocabulary:
    """Tokens in id order, with the ids of padding and of the unknown token."""

    tokens: tuple[str, ...]
    pad_id: int
    unk_id: int
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})
        for what, i in (("padding", self.pad_id), ("unknown-token", self.unk_id)):
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"the {what} id {i} is not in 0..{len(self.tokens) - 1}")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        ids, unk = self._ids, self.unk_id
        return [ids.get(t, unk) for t in tokens]

    @classmethod
    def named(cls, tokens: Iterable[str], pad_token: str, unk_token: str) -> TokenVocabulary:
        """A vocabulary whose padding and unknown tokens are named (they must be in it)."""
        tokens = tuple(tokens)
        twice = [t for t, n in Counter(tokens).items() if n > 1]
        if twice:
            raise ValueError(f"the vocabulary lists {twice[:5]} more than once")
        ids = {t: i for i, t in enumerate(tokens)}
        for what, token in (("padding", pad_token), ("unknown", unk_token)):
            if token not in ids:
                raise ValueError(
                    f"the {what} token {token!r} is not in the vocabulary "
                    f"(its first tokens: {list(tokens[:5])})"
                )
        return cls(tokens, ids[pad_token], ids[unk_token])

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{t}\n" for t in self.tokens), encoding="utf-8")

    @staticmethod
    def read_tokens(path: Path) -> list[str]:
        """A vocabulary file: one token a line, in id order."""
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        return lines[:-1] if text.endswith("\n") else lines


class TextEncoder(Protocol):
    """Text -> (the tokens shown to a person, their ids)."""

    pad_id: int
    vocab_size: int

    def encode(self, text: str) -> tuple[list[str], list[int]]: ...

    def token(self, i: int) -> str: ...


class WordEncoder:
    def __init__(self, vocab: TokenVocabulary, lowercase: bool) -> None:
        self.vocab, self.lowercase = vocab, lowercase
        self.pad_id, self.vocab_size = vocab.pad_id, len(vocab)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        tokens = tokenize(text, self.lowercase)
        return tokens, self.vocab.encode(tokens)

    def token(self, i: int) -> str:
        return self.vocab.tokens[i]


class CharEncoder(WordEncoder):
    def encode(self, text: str) -> tuple[list[str], list[int]]:
        text = unicodedata.normalize("NFKC", text)
        tokens = list(text.lower() if self.lowercase else text)
        return tokens, self.vocab.encode(tokens)


class HFEncoder:
    """A `tokenizers.Tokenizer` with its own padding and truncation turned off (ours apply)."""

    def __init__(self, tokenizer_file: Path, pad_id: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id, self.vocab_size = pad_id, self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        encoding = self.tokenizer.encode(text)
        return list(encoding.tokens), list(encoding.ids)

    def token(self, i: int) -> str:
        return self.tokenizer.id_to_token(i) or f"[{i}]"


def encoder_for(
    preprocessing: TextPreprocessing | CharTokensPreprocessing | TokenizerPreprocessing,
    folder: Path,
) -> TextEncoder:
    """The encoder a classifier's manifest describes, over the files of its version folder."""
    if isinstance(preprocessing, TokenizerPreprocessing):
        return HFEncoder(folder / preprocessing.tokenizer_file, preprocessing.pad_id)
    tokens = TokenVocabulary.read_tokens(folder / preprocessing.vocab_file)
    vocab = TokenVocabulary(tuple(tokens), preprocessing.pad_id, preprocessing.unk_id)
    if len(vocab) != preprocessing.vocab_size:
        raise ValueError(
            f"{preprocessing.vocab_file} has {len(vocab)} tokens, the manifest says "
            f"{preprocessing.vocab_size}"
        )
    encoder = CharEncoder if isinstance(preprocessing, CharTokensPreprocessing) else WordEncoder
    return encoder(vocab, preprocessing.lowercase)


def sample_text(encoder: TextEncoder, max_tokens: int, tries: int = 2000) -> str | None:
    """A text made of one vocabulary entry that encodes to 1..max_tokens tokens, none of them
    padding: what a model can serve within its limit (its warm-up input). None when no entry
    among the first `tries` fits, e.g. a tokenizer that adds more special tokens than that."""
    for i in range(min(encoder.vocab_size, tries)):
        if i == encoder.pad_id:
            continue
        text = encoder.token(i)
        tokens, ids = encoder.encode(text)
        if text.strip() and 1 <= len(tokens) <= max_tokens and encoder.pad_id not in ids:
            return text
    return None
