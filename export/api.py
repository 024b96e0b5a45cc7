"""Publish a user's own model from Python (a notebook): one call per task, the module object in.

    from export.api import publish_classifier
    publish_classifier(model, vocab=tokens, labels=["negative", "positive"], name="reviews")

Each call runs what `rnnserve export` runs (the CLI is a thin layer on these): the task's
contract check, ONNX export, onnx.checker, parity with PyTorch on a mixed-length batch, optional
int8 with its accuracy check, the manifest, and an atomic publish as the next version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from contract import registry
from contract.manifest import MODEL_NAME
from contract.text import TokenVocabulary, sample_text
from export.driver import (
    ContractError,
    LimitError,
    Options,
    TaskExporter,
    check_limits,
    check_options,
    write_version,
)
from export.publish import publish
from export.tensor import TensorExporter
from export.tokenization import tokenizer_examples as checked_examples

if TYPE_CHECKING:  # torch is needed to export a module, not to publish an ONNX graph
    from torch import nn


def publish_classifier(
    module: nn.Module,
    *,
    labels: Sequence[str],
    name: str,
    vocab: Iterable[str] | Path | str | None = None,
    tokenizer: str | Path = "words",
    tokenizer_regex: str | None = None,
    tokenizer_examples: Iterable[tuple[str, Sequence[int]]] | Path | str | None = None,
    repository: Path | str = "models",
    lowercase: bool = False,
    pad_token: str = "<pad>",
    unk_token: str = "<unk>",
    max_tokens: int = 256,
    eval_data: Iterable[tuple[str, int | str]] | Path | str | None = None,
    outputs: str = "logits",
    title: str | None = None,
    description: str | None = None,
    examples: Sequence[str] | None = None,
    options: Options | None = None,
) -> Path | str:
    """Publish a text classifier: `forward(tokens int64[B, T], lengths int64[B])` -> logits
    [B, C] or (logits, attention [B, T]); `outputs="probabilities"` when it returns those
    instead. `vocab`: tokens in id order, or a file of one token a line (for `tokenizer`
    "words" or "chars", or `tokenizer_regex`: tokens are `re.findall(regex, text)`);
    `tokenizer` may instead be a Hugging Face tokenizer.json. `tokenizer_examples`: (text, ids)
    pairs of your own tokenisation, or a JSON Lines file of `{"text", "ids"}`: export refuses a
    served tokenizer that disagrees. `eval_data`: (text, label) pairs or a `label<TAB>text`
    file, for int8. `title`, `description`, `examples`: what the page shows."""
    from export.classifier import TextInput, read_eval_data

    labels = list(labels)
    check_limits(max_tokens=max_tokens)
    text = TextInput(
        tokenizer=str(tokenizer),
        tokenizer_regex=tokenizer_regex,
        vocab=_tokens(vocab),
        pad_token=pad_token,
        unk_token=unk_token,
        lowercase=lowercase,
        max_tokens=max_tokens,
    )
    if isinstance(eval_data, str | Path):
        rows = read_eval_data(Path(eval_data), labels)
    else:
        rows = [(t, _label_index(y, labels)) for t, y in eval_data or ()]
    exporter_class = registry.load(registry.get("classify").exporter)
    options = _card(options, title, description, examples)
    check_options("classify", exporter_class, options)
    if options.quantize and not rows:
        raise ContractError("--quantize int8 needs --eval-data to check the accuracy it keeps")
    exporter = exporter_class(
        module, text, labels, rows or None, outputs, checked_examples(tokenizer_examples)
    )
    if sample_text(exporter.encoder, max_tokens) is None:
        raise LimitError(
            f"--max-tokens {max_tokens} leaves no text that can be served: no vocabulary entry "
            "encodes to that few tokens"
        )
    return publish_exporter("classify", exporter, name, repository, options)


def publish_seq2seq(
    encoder: nn.Module,
    decoder: nn.Module,
    *,
    name: str,
    input_vocab: Iterable[str] | Path | str | None = None,
    output_vocab: Iterable[str] | Path | str | None = None,
    tokenizer: str | Path = "chars",
    output_tokenizer: str | Path | None = None,
    tokenizer_regex: str | None = None,
    tokenizer_examples: Iterable[tuple[str, Sequence[int]]] | Path | str | None = None,
    lowercase: bool = False,
    pad_token: str = "<pad>",
    unk_token: str | None = "<unk>",
    bos_token: str = "<s>",
    eos_token: str = "</s>",
    append_eos: bool = False,
    repository: Path | str = "models",
    max_input_chars: int = 64,
    max_output_chars: int = 64,
    title: str | None = None,
    description: str | None = None,
    examples: Sequence[str] | None = None,
    options: Options | None = None,
) -> Path | str:
    """Publish a seq2seq model: `encoder(chars int64[B, S], lengths int64[B])` ->
    (memory [B, S, M], state [B, D]); `decoder(token int64[B], state, memory, mask bool[B, S])`
    -> (logits [B, V], next_state [B, D], attention [B, S]).

    Text is read and written as a classifier reads it: `tokenizer` "chars" (the default),
    "words", `tokenizer_regex`, or a tokenizer.json (`output_tokenizer` if the output's is
    another). `input_vocab`, `output_vocab`: tokens in id order (or files of one a line), with
    your own special tokens named: padding, unknown (None, or the default absent from the
    vocabulary: a token outside it is refused), the decoder's start and end. `append_eos` ends
    every input with the end token. The maximum lengths count the input's and output's units
    (characters or tokens)."""
    from export.classifier import TextInput
    from export.seq2seq import Seq2SeqTokens

    check_limits(max_input_chars=max_input_chars, max_output_chars=max_output_chars)
    exporter_class = registry.load(registry.get("seq2seq").exporter)
    options = _card(options, title, description, examples)
    check_options("seq2seq", exporter_class, options)
    source = TextInput(
        tokenizer=str(tokenizer),
        tokenizer_regex=tokenizer_regex,
        vocab=_tokens(input_vocab),
        lowercase=lowercase,
        max_tokens=max_input_chars,
    )
    target = TextInput(
        tokenizer=str(output_tokenizer or tokenizer),
        tokenizer_regex=tokenizer_regex,
        vocab=_tokens(output_vocab),
        max_tokens=max_output_chars,
    )
    tokens = Seq2SeqTokens(pad_token, unk_token, bos_token, eos_token, append_eos)
    exporter = exporter_class(
        encoder, decoder, source, target, tokens, checked_examples(tokenizer_examples)
    )
    return publish_exporter("seq2seq", exporter, name, repository, options)


def publish_forecaster(
    step: nn.Module,
    *,
    name: str,
    repository: Path | str = "models",
    mean: float = 0.0,
    std: float = 1.0,
    max_values: int = 1024,
    title: str | None = None,
    description: str | None = None,
    examples: Sequence[str] | None = None,
    options: Options | None = None,
) -> Path | str:
    """Publish a streaming forecaster: `step.initial_state(batch)` -> state tensors (batch
    first, zeros); `step(values float32[B, T], lengths int64[B], *state)` -> (forecast [B, k],
    [attention [B, W],] *next_state). Values are scaled as (x - mean) / std; forecasts unscaled
    back."""
    check_limits(max_values=max_values)
    exporter_class = registry.load(registry.get("forecast").exporter)
    options = _card(options, title, description, examples)
    check_options("forecast", exporter_class, options)
    exporter = exporter_class(step, mean, std, max_values)
    return publish_exporter("forecast", exporter, name, repository, options)


def publish_onnx(
    graph: Path | str,
    *,
    name: str,
    repository: Path | str = "models",
    title: str | None = None,
    description: str | None = None,
    examples: Sequence[str] | None = None,
) -> Path | str:
    """Publish an ONNX graph made elsewhere as a `tensor` model (V2 tensors in and out);
    `examples` are V2 request bodies (JSON) the page offers."""
    exporter_class = registry.load(registry.get("tensor").exporter)
    options = _card(None, title, description, examples)
    check_options("tensor", exporter_class, options)
    exporter: TensorExporter = exporter_class(Path(graph))
    return publish_exporter("tensor", exporter, name, repository, options)


def publish_exporter(
    task: str, exporter: TaskExporter, name: str, repository: Path | str, options: Options
) -> Path | str:
    """Publish what any task's exporter makes (a plugin task's too) as the next version."""
    if not MODEL_NAME.match(name):
        raise ContractError(f"expected a model name matching {MODEL_NAME.pattern}, got {name!r}")
    return publish(
        repository,
        name,
        lambda folder, version: write_version(task, exporter, folder, name, version, options),
    )


def _label_index(label: int | str, labels: list[str]) -> int:
    if isinstance(label, str) and label in labels:
        return labels.index(label)
    if isinstance(label, int) and 0 <= label < len(labels):
        return label
    raise ContractError(f"an evaluation label {label!r} is not one of {labels} or its index")


def _card(
    options: Options | None,
    title: str | None,
    description: str | None,
    examples: Sequence[str] | None,
) -> Options:
    """The options, with what the page shows about the model where it is given."""
    options = options or Options()
    given = {"title": title, "description": description}
    given = {k: v.strip() for k, v in given.items() if v is not None}
    if examples is not None:
        if isinstance(examples, str) or not all(isinstance(e, str) and e for e in examples):
            raise ContractError(f"expected examples to be non-empty strings, got {examples!r}")
        given["examples"] = tuple(examples)
    return replace(options, **given)


def _tokens(vocab: Iterable[str] | Path | str | None) -> tuple[str, ...]:
    """A vocabulary given as tokens in id order, or as a file of one token a line."""
    if isinstance(vocab, str | Path):
        path = Path(vocab)
        try:
            return tuple(TokenVocabulary.read_tokens(path))
        except (OSError, UnicodeError) as error:
            raise ContractError(f"cannot read the vocabulary {path}: {error}") from None
    return tuple(vocab or ())
