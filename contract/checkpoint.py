"""What a checkpoint of `rnnserve train` holds beside its weights: a strict schema per task,
checked when the trainer writes it and when export reads it, as the manifest is (torch-free).

A checkpoint file is this schema's fields plus `state_dict` (the weights, torch's own), so it
loads with `torch.load(weights_only=True)`. Checkpoints written before the schema existed
have the same fields and load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from contract.manifest import SeriesPreprocessing, TrainingInfo, _Strict

WEIGHTS = "state_dict"  # the one key the schema does not hold: torch's tensors

Scalar = bool | int | float | str


class CheckpointError(ValueError):
    """A checkpoint that is not what its format says (one line, naming the field)."""


class Checkpoint(_Strict):
    """Every task's checkpoint: its format, its model's config, and how it was trained."""

    format: str = Field(description="names the task (contract.registry) and its layout")
    config: dict[str, Scalar] = Field(description="the model's config: builds it again")
    training: TrainingInfo

    def to_dict(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The dict torch.save writes: these fields and the weights."""
        return {**self.model_dump(), WEIGHTS: dict(state_dict)}

    @classmethod
    def of(cls, saved: Mapping[str, Any], where: str = "checkpoint") -> Checkpoint:
        """The fields of a loaded checkpoint dict, checked; a mismatch is one line."""
        fields = {k: v for k, v in saved.items() if k != WEIGHTS}
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            first = error.errors()[0]
            at = ".".join(str(p) for p in first["loc"]) or "its fields"
            raise CheckpointError(
                f"{where}: not a {cls.__name__} ({at}: {first['msg']}; "
                f"{error.error_count()} problem(s) in all)"
            ) from None


class LabelledTexts(_Strict):
    """Held-out texts and their label indices: export's parity batch and int8's accuracy."""

    split: str = Field(description="its name in metrics, e.g. dev: dev_accuracy")
    texts: list[str]
    labels: list[int]

    @model_validator(mode="after")
    def _one_label_per_text(self) -> LabelledTexts:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        return self


class TextPairs(_Strict):
    """Held-out inputs and the outputs they should decode to."""

    texts: list[str]
    targets: list[str]

    @model_validator(mode="after")
    def _one_target_per_text(self) -> TextPairs:
        if len(self.texts) != len(self.targets):
            raise ValueError(f"{len(self.texts)} texts but {len(self.targets)} targets")
        return self


class HeldoutSeries(_Strict):
    split: str
    values: list[float] = Field(min_length=2)


class ClassifierCheckpoint(Checkpoint):
    format: Literal["rnnserve-classifier/1"] = "rnnserve-classifier/1"
    vocab: list[str] = Field(min_length=2, description="tokens in id order: <pad>, <unk>, ...")
    labels: list[str] = Field(min_length=2, description="class names in logit order")
    max_tokens: int = Field(gt=0)
    lowercase: bool
    heldout: LabelledTexts


class Seq2SeqCheckpoint(Checkpoint):
    format: Literal["rnnserve-seq2seq/1"] = "rnnserve-seq2seq/1"
    input_vocab: list[str] = Field(min_length=1, description="input symbols in id order")
    output_vocab: list[str] = Field(min_length=1, description="output symbols in id order")
    max_input_chars: int = Field(gt=0)
    max_output_chars: int = Field(gt=0)
    heldout: TextPairs


class ForecastCheckpoint(Checkpoint):
    format: Literal["rnnserve-forecast/1"] = "rnnserve-forecast/1"
    preprocessing: SeriesPreprocessing
    heldout: HeldoutSeries
