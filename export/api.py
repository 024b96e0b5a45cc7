"""Publish a user's own model from Python (a notebook): one call per task, the module object in.

    from export.api import publish_classifier
    publish_classifier(model, vocab=tokens, labels=["negative", "positive"], name="reviews")

Each call runs what `rnnserve export` runs (the CLI is a thin layer on these): the task's
contract check, ONNX export, onnx.checker, parity with PyTorch on a mixed-length batch, optional
int8 with its accuracy check, the manifest, and an atomic publish as the next version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import nn

from contract import registry
from contract.manifest import MODEL_NAME
from contract.text import TokenVocabulary, sample_text
from export.driver import (
    LimitError,
    Options,
    TaskExporter,
    check_limits,
    check_options,
    write_version,
)
from export.publish import publish
from export.tensor import TensorExporter
from export.user_classifier import TextInput, read_eval_data
from export.user_module import ContractError


def publish_classifier(
    module: nn.Module,
    *,
    labels: Sequence[str],
    name: str,
    vocab: Iterable[str] | Path | str | None = None,
    tokenizer: str | Path = "words",
    repository: Path | str = "models",
    lowercase: bool = False,
    pad_token: str = "<pad>",
    unk_token: str = "<unk>",
    max_tokens: int = 256,
    eval_data: Iterable[tuple[str, int | str]] | Path | str | None = None,
    options: Options | None = None,
) -> Path:
    """Publish a text classifier: `forward(tokens int64[B, T], lengths int64[B])` -> logits
    [B, C] or (logits, attention [B, T]). `vocab`: tokens in id order, or a file of one token a
    line (for `tokenizer` "words" or "chars"); `tokenizer` may instead be a Hugging Face
    tokenizer.json. `eval_data`: (text, label) pairs or a `label<TAB>text` file, for int8."""
    labels = list(labels)
    check_limits(max_tokens=max_tokens)
    if isinstance(vocab, str | Path):
        vocab = TokenVocabulary.read_tokens(Path(vocab))
    text = TextInput(
        tokenizer=str(tokenizer),
        vocab=tuple(vocab or ()),
        pad_token=pad_token,
        unk_token=unk_token,
        lowercase=lowercase,
        max_tokens=max_tokens,
    )
    if isinstance(eval_data, str | Path):
        rows = read_eval_data(Path(eval_data), labels)
    else:
        rows = [(t, _label_index(y, labels)) for t, y in eval_data or ()]
    exporter_class = registry.load(registry.get("classify").module_exporter)
    options = options or Options()
    check_options("classify", exporter_class, options)
    if options.quantize and not rows:
        raise ContractError("--quantize int8 needs --eval-data to check the accuracy it keeps")
    exporter = exporter_class(module, text, labels, rows or None)
    if sample_text(exporter.encoder, max_tokens) is None:
        raise LimitError(
            f"--max-tokens {max_tokens} leaves no text that can be served: no vocabulary entry "
            "encodes to that few tokens"
        )
    return _publish("classify", exporter, name, repository, options)


def publish_seq2seq(
    encoder: nn.Module,
    decoder: nn.Module,
    *,
    input_vocab: Iterable[str],
    output_vocab: Iterable[str],
    name: str,
    repository: Path | str = "models",
    max_input_chars: int = 64,
    max_output_chars: int = 64,
    options: Options | None = None,
) -> Path:
    """Publish a character seq2seq model: `encoder(chars int64[B, S], lengths int64[B])` ->
    (memory [B, S, M], state [B, D]); `decoder(token int64[B], state, memory, mask bool[B, S])`
    -> (logits [B, V], next_state [B, D], attention [B, S]). Both vocabularies are characters
    in id order starting with <pad>, <unk>, <s>, </s>."""
    check_limits(max_input_chars=max_input_chars, max_output_chars=max_output_chars)
    exporter_class = registry.load(registry.get("seq2seq").module_exporter)
    options = options or Options()
    check_options("seq2seq", exporter_class, options)
    exporter = exporter_class(
        encoder, decoder, list(input_vocab), list(output_vocab), max_input_chars, max_output_chars
    )
    return _publish("seq2seq", exporter, name, repository, options)


def publish_forecaster(
    step: nn.Module,
    *,
    name: str,
    repository: Path | str = "models",
    mean: float = 0.0,
    std: float = 1.0,
    max_values: int = 1024,
    options: Options | None = None,
) -> Path:
    """Publish a streaming forecaster: `step.initial_state(batch)` -> state tensors (batch
    first); `step(values float32[B, T], lengths int64[B], *state)` -> (forecast [B, k],
    *next_state). Values are scaled as (x - mean) / std; forecasts unscaled back."""
    check_limits(max_values=max_values)
    exporter_class = registry.load(registry.get("forecast").module_exporter)
    options = options or Options()
    check_options("forecast", exporter_class, options)
    exporter = exporter_class(step, mean, std, max_values)
    return _publish("forecast", exporter, name, repository, options)


def publish_onnx(
    graph: Path | str, *, name: str, repository: Path | str = "models", description: str = ""
) -> Path:
    """Publish an ONNX graph made elsewhere as a `tensor` model (V2 tensors in and out)."""
    exporter_class = registry.load(registry.get("tensor").exporter)
    options = Options(description=description)
    check_options("tensor", exporter_class, options)
    exporter: TensorExporter = exporter_class(Path(graph))
    return _publish("tensor", exporter, name, repository, options)


def _publish(
    task: str, exporter: TaskExporter, name: str, repository: Path | str, options: Options
) -> Path:
    if not MODEL_NAME.match(name):
        raise ContractError(f"expected a model name matching {MODEL_NAME.pattern}, got {name!r}")
    return publish(
        Path(repository),
        name,
        lambda folder, version: write_version(task, exporter, folder, name, version, options),
    )


def _label_index(label: int | str, labels: list[str]) -> int:
    if isinstance(label, str) and label in labels:
        return labels.index(label)
    if isinstance(label, int) and 0 <= label < len(labels):
        return label
    raise ContractError(f"an evaluation label {label!r} is not one of {labels} or its index")
