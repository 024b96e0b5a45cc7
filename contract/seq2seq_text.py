"""Text in and out of a seq2seq model, as its manifest says (torch-free: export and service).

Ours read and write characters, with the four specials at ids 0-3 (contract.chars). A user's
model reads through a classifier's tokenisers (words, characters, a tokenizer.json) and writes
from its own output vocabulary, with its own special ids: the PyTorch tutorial's translator
starts from SOS=0, ends at EOS=1 and ends every input with EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract.chars import BOS_ID, EOS_ID, PAD_ID, CharVocabulary, normalize
from contract.manifest import CharPreprocessing, Seq2SeqTokensPreprocessing, TokenizerPreprocessing
from contract.text import TextEncoder, encoder_for


class CharSource:
    """Our characters: NFKC, trimmed, one id per character (unknown ones as <unk>)."""

    def __init__(self, vocab: CharVocabulary) -> None:
        self.vocab, self.pad_id, self.vocab_size = vocab, PAD_ID, len(vocab)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        chars = normalize(text)
        return list(chars), self.vocab.encode(chars)

    def token(self, i: int) -> str:
        return self.vocab.symbols[i]


@dataclass(frozen=True)
class Seq2SeqText:
    """How a seq2seq version reads its input and writes its output."""

    source: TextEncoder
    target: TextEncoder  # only its vocabulary is used: id -> token
    bos_id: int
    eos_id: int
    input_eos_id: int | None  # appended to every input
    max_input: int  # in the source's units, the appended end included
    max_output: int
    unit: str  # what a length counts: "characters" or "tokens"
    joiner: str | None  # between output tokens; None: the output tokenizer.json decodes

    @property
    def pad_id(self) -> int:
        return self.source.pad_id

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        """The input's shown tokens and ids (with the end token the model expects, if any)."""
        tokens, ids = self.source.encode(text)
        if self.input_eos_id is not None and ids:
            tokens, ids = [*tokens, self.source.token(self.input_eos_id)], [*ids, self.input_eos_id]
        return tokens, ids

    def token(self, i: int) -> str:
        return self.target.token(i)

    def decode(self, ids: list[int]) -> str:
        """Output ids (without the end) as text: every token the model wrote, as its own
        greedy decode would print it (ours drop their special symbols, as in training)."""
        if self.joiner is None:
            return self.target.tokenizer.decode(ids)  # type: ignore[attr-defined]
        if isinstance(self.target, CharSource):
            return self.target.vocab.decode(ids)
        return self.joiner.join(self.target.token(i) for i in ids)


def char_text(
    source: CharVocabulary, target: CharVocabulary, max_input: int, max_output: int
) -> Seq2SeqText:
    """Our characters in and out, as our models were trained (and export checks them)."""
    return Seq2SeqText(
        CharSource(source), CharSource(target), BOS_ID, EOS_ID, None, max_input, max_output,
        "characters", "",
    )  # fmt: skip


def seq2seq_text(prep: CharPreprocessing | Seq2SeqTokensPreprocessing, folder: Path) -> Seq2SeqText:
    """The text side a seq2seq manifest describes, over the files of its version folder."""
    if isinstance(prep, CharPreprocessing):
        return char_text(
            CharVocabulary.load(folder / prep.input_vocab_file),
            CharVocabulary.load(folder / prep.output_vocab_file),
            prep.max_input_chars,
            prep.max_output_chars,
        )
    source, target = encoder_for(prep.input, folder), encoder_for(prep.output, folder)
    return Seq2SeqText(
        source,
        target,
        prep.bos_id,
        prep.eos_id,
        prep.input_eos_id,
        prep.input.max_tokens,
        prep.output.max_tokens,
        "characters" if prep.input.kind == "chars" else "tokens",
        joiner_of(prep.output),
    )


def joiner_of(output: object) -> str | None:
    """Words are written with spaces between them, characters without; a tokenizer.json
    decodes its own ids (its decoder knows its subwords)."""
    if isinstance(output, TokenizerPreprocessing):
        return None
    return "" if getattr(output, "kind", "") == "chars" else " "
