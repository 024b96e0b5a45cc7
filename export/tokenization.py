"""A user's own tokenisation at export: a tokenizer built from their regex and vocabulary, and
examples of their ids that the served tokenizer must reproduce before anything is published.

A tokenizer served must tokenise exactly as the model was trained; a near miss (a clitic split
another way) moves probabilities without any error, so export compares instead of trusting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from contract.text import TextEncoder
from export.user_module import ContractError

TokenizerExamples = Sequence[tuple[str, list[int]]]


def regex_tokenizer(
    pattern: str, vocab: Sequence[str], unk_token: str | None, lowercase: bool
) -> object:
    """A Hugging Face tokenizer whose tokens are `re.findall(pattern, text)` (after lowercasing
    when asked), each looked up in `vocab` (ids in list order), unknown ones as `unk_token`:
    a WordLevel model, a Lowercase normaliser and a Split pre-tokenizer that keeps the matches."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    if unk_token is not None and unk_token not in vocab:
        raise ContractError(
            f"the unknown token {unk_token!r} is not in the vocabulary (its first tokens: "
            f"{list(vocab[:5])})"
        )
    try:
        split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    except Exception as error:
        raise ContractError(f"--tokenizer-regex {pattern!r} is not a regex: {error}") from None
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token=unk_token or "\0"))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = split
    return tokenizer


def read_tokenizer_examples(path: Path) -> list[tuple[str, list[int]]]:
    """JSON Lines, one `{"text": "...", "ids": [...]}` per line: a text and the ids the user's
    own tokenizer gives it (blank lines skipped)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, ids = row["text"], row["ids"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ContractError(
                f'{path}:{number}: expected {{"text": "...", "ids": [...]}}, got {line[:60]!r}'
            ) from None
        rows.append(_example(text, ids, f"{path}:{number}"))
    if not rows:
        raise ContractError(f"{path} holds no tokenizer examples")
    return rows


def tokenizer_examples(
    examples: Iterable[tuple[str, Sequence[int]]] | Path | str | None,
) -> list[tuple[str, list[int]]]:
    """The Python API's argument: (text, ids) pairs, or a JSON Lines file of them."""
    if examples is None:
        return []
    if isinstance(examples, str | Path):
        return read_tokenizer_examples(Path(examples))
    return [_example(t, ids, f"example {i}") for i, (t, ids) in enumerate(examples, 1)]


def check_tokenizer(encoder: TextEncoder, examples: TokenizerExamples, what: str = "") -> None:
    """Refuse a served tokenizer that gives any example other ids than the user's, naming the
    first that differs and how many do."""
    differing = [(t, ids) for t, ids in examples if encoder.encode(t)[1] != ids]
    if not differing:
        return
    text, expected = differing[0]
    tokens, served = encoder.encode(text)
    raise ContractError(
        f"the served {what}tokenizer disagrees with yours on {len(differing)} of "
        f"{len(examples)} examples; the first: text {text!r}, expected ids {expected}, served "
        f"ids {served} (tokens {tokens}); choose another --tokenizer (--tokenizer-regex, or a "
        "tokenizer.json) so that they agree"
    )


def _example(text: object, ids: object, where: str) -> tuple[str, list[int]]:
    if (
        not isinstance(text, str)
        or not isinstance(ids, list | tuple)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise ContractError(f"{where}: expected a text and a list of integer ids")
    return text, list(ids)
