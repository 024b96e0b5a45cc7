"""The manifest: the model card written by export and validated by the service (torch-free)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TASK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # a key of contract.registry
DType = Literal[
    "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8",
    "float64", "float32", "float16", "bool", "string",
]  # fmt: skip
# Where a version's graphs came from: `rnnserve train`, a user's nn.Module, or an ONNX file.
Origin = Literal["trained", "module", "onnx"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    name: str
    dtype: DType
    shape: list[int | str] = Field(description="ints are fixed sizes, strings name dynamic axes")


class GraphSpec(_Strict):
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        return _plain_name(value)


class Architecture(_Strict):
    cell: Literal["lstm", "gru"]
    embedding_dim: int = Field(description="0 where inputs are not embedded (series)")
    hidden_size: int
    num_layers: int
    bidirectional: bool
    attention: Literal["additive"] = "additive"
    attention_size: int
    dropout: float
    details: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="task-specific sizes, e.g. the decoder's"
    )


class TextPreprocessing(_Strict):
    """Word tokens (contract.words.tokenize) looked up in a vocabulary file, a token a line."""

    kind: Literal["words"] = "words"
    lowercase: bool = True
    vocab_file: str
    vocab_size: int
    pad_id: int = 0
    unk_id: int | None = Field(1, description="None: a token outside the vocabulary is refused")
    max_tokens: int = Field(gt=0, description="longest input the service accepts, in tokens")

    @field_validator("vocab_file")
    @classmethod
    def _plain_vocab_name(cls, value: str) -> str:
        return _plain_name(value)


class CharTokensPreprocessing(TextPreprocessing):
    """Each character (after NFKC) one token, looked up in a vocabulary file (classify)."""

    kind: Literal["chars"] = "chars"  # type: ignore[assignment]
    lowercase: bool = False


class TokenizerPreprocessing(_Strict):
    """A Hugging Face `tokenizer.json`, run with the `tokenizers` library (no torch)."""

    kind: Literal["hf_tokenizer"] = "hf_tokenizer"
    tokenizer_file: str
    vocab_size: int
    pad_id: int
    max_tokens: int = Field(gt=0, description="longest input the service accepts, in tokens")

    @field_validator("tokenizer_file")
    @classmethod
    def _plain_tokenizer_name(cls, value: str) -> str:
        return _plain_name(value)


class CharPreprocessing(_Strict):
    """Character-level text in and out (seq2seq)."""

    kind: Literal["characters"] = "characters"
    input_vocab_file: str
    output_vocab_file: str
    max_input_chars: int = Field(gt=0)
    max_output_chars: int = Field(gt=0)
    details: dict[str, int | float | str | bool] = Field(default_factory=dict)

    @field_validator("input_vocab_file", "output_vocab_file")
    @classmethod
    def _plain_vocab_names(cls, value: str) -> str:
        return _plain_name(value)


TokenText = Annotated[
    TextPreprocessing | CharTokensPreprocessing | TokenizerPreprocessing,
    Field(discriminator="kind"),
]


class Seq2SeqTokensPreprocessing(_Strict):
    """A user's seq2seq: text in and out through tokenisers like a classifier's (words,
    characters, a tokenizer.json), with the user's own special ids. `output.max_tokens` is the
    longest output; the decoder starts from `bos_id` and a sequence ends at `eos_id`."""

    kind: Literal["seq2seq_tokens"] = "seq2seq_tokens"
    input: TokenText
    output: TokenText
    bos_id: int = Field(ge=0, description="output vocabulary: the decoder's first token")
    eos_id: int = Field(ge=0, description="output vocabulary: the end of a sequence")
    input_eos_id: int | None = Field(
        None, description="appended to every input (as the PyTorch tutorial's inputs end)"
    )


class SeriesPreprocessing(_Strict):
    """A numeric series: scaling statistics and window sizes (forecast)."""

    kind: Literal["series"] = "series"
    mean: float
    std: float = Field(gt=0)
    window: int = Field(gt=0, description="past values a stateless prediction reads")
    horizon: int = Field(gt=0, description="future values each prediction gives")
    max_values: int = Field(gt=0, description="most values one request may send")
    details: dict[str, int | float | str | bool] = Field(default_factory=dict)


Preprocessing = Annotated[
    TextPreprocessing
    | CharTokensPreprocessing
    | TokenizerPreprocessing
    | CharPreprocessing
    | Seq2SeqTokensPreprocessing
    | SeriesPreprocessing,
    Field(discriminator="kind"),
]


class ExportInfo(_Strict):
    opset: int
    torch_version: str | None = Field(description="None for a graph made elsewhere")
    onnx_version: str | None = Field(
        description="None where the service derived the manifest from a bare model.onnx"
    )
    onnxruntime_version: str
    parity_max_abs_diff: float | None = Field(
        description="largest |PyTorch - onnxruntime| output; None without a PyTorch model"
    )
    parity_tolerance: float | None = Field(description="the fp32 graph was refused above this")
    quantized: Literal["int8"] | None = None
    accuracy_change: float | None = Field(
        None, description="held-out accuracy of the quantised graph minus the fp32 graph's"
    )


class TrainingInfo(_Strict):
    dataset: str
    source: str
    seed: int
    epochs: int
    examples: dict[str, int] = Field(description="examples per split: train, validation, test")
    metrics: dict[str, float] = Field(description="held-out metrics, e.g. dev_accuracy")


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int = Field(gt=0)
    task: str = Field(description="the task's name in the registry, e.g. classify, seq2seq")
    origin: Origin = Field(
        "trained",
        description="trained: by rnnserve train; module: a user's nn.Module; onnx: a graph "
        "made elsewhere. Only trained models must say their architecture and training.",
    )
    title: str = Field("", description="what the model is, in a few words (the page's name)")
    description: str = ""
    examples: list[str] = Field(
        default_factory=list, description="inputs to try, as a person types them on the page"
    )
    created_at: str
    architecture: Architecture | None = None
    graphs: dict[str, GraphSpec] = Field(description="role -> graph; classify has 'model'")
    preprocessing: Preprocessing | None = None
    labels: list[str] = Field(default_factory=list, description="class names (classify)")
    files: dict[str, str] = Field(description="file name -> sha256 of every file but this one")
    export: ExportInfo
    training: TrainingInfo | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(f"model name {value!r} must match {MODEL_NAME.pattern}")
        return value

    @field_validator("task")
    @classmethod
    def _valid_task(cls, value: str) -> str:
        if not TASK_NAME.match(value):
            raise ValueError(f"task name {value!r} must match {TASK_NAME.pattern}")
        return value

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _plain_name(name)
        return value

    @model_validator(mode="after")
    def _facts_of_origin(self) -> Manifest:
        """A trained model says how it was built; a user's module how it reads its input;
        only an ONNX graph made elsewhere (task `tensor`) may say neither."""
        required = {
            "trained": ("architecture", "preprocessing", "training"),
            "module": ("preprocessing",),
            "onnx": (),
        }[self.origin]
        missing = [field for field in required if getattr(self, field) is None]
        if missing:
            raise ValueError(f"a model of origin {self.origin!r} needs {', '.join(missing)}")
        if (self.origin == "onnx") != (self.task == "tensor"):
            raise ValueError("task 'tensor' is for ONNX graphs made elsewhere (origin 'onnx')")
        if self.origin != "onnx" and (
            self.export.torch_version is None or self.export.parity_max_abs_diff is None
        ):
            raise ValueError("a graph exported from PyTorch records its torch version and parity")
        return self

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.model_validate_json((folder / MANIFEST_FILE).read_bytes())

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")


def version_number(text: str) -> int | None:
    """A version folder's name or a version from a request: ASCII digits, positive.

    (`str.isdigit` alone also accepts characters like '³', which int() then refuses.)
    """
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain_name(value: str) -> str:
    """File names in a manifest stay inside their version folder."""
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"{value!r} must be a plain file name inside the version folder")
    return value
