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
from typing import TYPE_CHECKING, Protocol

from contract.manifest import CharTokensPreprocessing, TextPreprocessing, TokenizerPreprocessing
from contract.words import tokenize

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class UnknownToken(ValueError):
    """A token outside a vocabulary that has no unknown token."""


@dataclass(frozen=True)
class TokenVocabulary:
    """Tokens in id order, with the ids of padding and of the unknown token (None: the model
    has none, and a token outside the vocabulary cannot be read)."""

    tokens: tuple[str, ...]
    pad_id: int
    unk_id: int | None
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})
        for what, i in (("padding", self.pad_id), ("unknown-token", self.unk_id)):
            if i is not None and not 0 <= i < len(self.tokens):
                raise ValueError(f"the {what} id {i} is not in 0..{len(self.tokens) - 1}")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        ids, unk = self._ids, self.unk_id
        if unk is None:
            unknown = [t for t in tokens if t not in ids]
            if unknown:
                raise UnknownToken(f"{unknown[0]!r} is not in the model's vocabulary")
        return [ids.get(t, unk) for t in tokens]  # type: ignore[misc]

    def id_of(self, token: str, what: str) -> int:
        """The id of a special token named by the user, or why it cannot be used."""
        if token not in self._ids:
            raise ValueError(
                f"the {what} token {token!r} is not in the vocabulary "
                f"(its first tokens: {list(self.tokens[:5])})"
            )
        return self._ids[token]

    @classmethod
    def named(cls, tokens: Iterable[str], pad_token: str, unk_token: str | None) -> TokenVocabulary:
        """A vocabulary whose padding and unknown tokens are named (they must be in it)."""
        tokens = tuple(tokens)
        if not tokens:
            raise ValueError("the vocabulary is empty")
        twice = [t for t, n in Counter(tokens).items() if n > 1]
        if twice:
            raise ValueError(f"the vocabulary lists {twice[:5]} more than once")
        vocab = cls(tokens, 0, None)
        unk_id = None if unk_token is None else vocab.id_of(unk_token, "unknown")
        return cls(tokens, vocab.id_of(pad_token, "padding"), unk_id)

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

    def __init__(self, tokenizer: Tokenizer, pad_id: int) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id, self.vocab_size = pad_id, self.tokenizer.get_vocab_size()

    @classmethod
    def from_file(cls, tokenizer_file: Path, pad_id: int) -> HFEncoder:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(tokenizer_file)), pad_id)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        try:
            encoding = self.tokenizer.encode(text)
        except Exception as error:  # a WordLevel model without an unknown token, for one
            why = self._unknown(text) or f"the tokenizer cannot read it: {error}"
            raise UnknownToken(why) from None

        return list(encoding.tokens), list(encoding.ids)

    def token(self, i: int) -> str:
        return self.tokenizer.id_to_token(i) or f"[{i}]"

    def _unknown(self, text: str) -> str | None:
        """Which piece of the text the vocabulary lacks, if that is what failed."""
        tokenizer, vocab = self.tokenizer, self.tokenizer.get_vocab()
        if tokenizer.normalizer is not None:
            text = tokenizer.normalizer.normalize_str(text)
        pieces = [(text, None)]
        if tokenizer.pre_tokenizer is not None:
            pieces = tokenizer.pre_tokenizer.pre_tokenize_str(text)
        missing = [piece for piece, _ in pieces if piece not in vocab]
        return f"{missing[0]!r} is not in the model's vocabulary" if missing else None


def encoder_for(
    preprocessing: TextPreprocessing | CharTokensPreprocessing | TokenizerPreprocessing,
    folder: Path,
) -> TextEncoder:
    """The encoder a classifier's manifest describes, over the files of its version folder."""
    if isinstance(preprocessing, TokenizerPreprocessing):
        return HFEncoder.from_file(folder / preprocessing.tokenizer_file, preprocessing.pad_id)
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
        try:
            tokens, ids = encoder.encode(text)
        except UnknownToken:  # e.g. "<s>" read as "<", "s", ">" by a vocabulary without <unk>
            continue
        if text.strip() and 1 <= len(tokens) <= max_tokens and encoder.pad_id not in ids:
            return text
    return None
