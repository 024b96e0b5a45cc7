"""The task registry: one entry per task name gives each layer its part, loaded only on demand.

An entry names its parts by import path ("module:attribute"), so a layer imports only its own
part: the service resolves `serving` without ever importing a trainer or exporter (torch).
Built-in tasks are listed here; other packages add theirs through the `rnnserve.tasks`
entry-point group, each entry point naming a `TaskParts` object in a torch-free module.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "rnnserve.tasks"
log = logging.getLogger("rnnserve.registry")


@dataclass(frozen=True)
class TaskParts:
    """A task's name and the import path of its part in each layer (None: it has none)."""

    name: str
    serving: str  # service: a class built from a TaskContext, keeping the serving protocol
    trainer: str | None = None  # model_src: a `fit.Trainer` (`rnnserve train --task <name>`)
    # export: a `driver.TaskExporter` class, for a user's module or graph and for ours (a
    # task with a trainer gives it `from_checkpoint(path)`)
    exporter: str | None = None
    export_command: str | None = None  # export: an `ExportCommand`, its `rnnserve export` flags
    checkpoint_format: str | None = None  # the "format" its trainer writes in checkpoints
    page: str | None = None  # the page: "package:file.js" that presents its predictions


BUILTIN = (
    TaskParts(
        name="classify",
        serving="service.tasks.classify:ClassifyTask",
        trainer="model_src.train:TRAINER",
        exporter="export.classifier:ClassifierExporter",
        checkpoint_format="rnnserve-classifier/1",
        export_command="export.commands:CLASSIFY_COMMAND",
        page="service.ui:tasks/classify.js",
    ),
    TaskParts(
        name="seq2seq",
        serving="service.tasks.seq2seq:Seq2SeqTask",
        trainer="model_src.train_seq2seq:TRAINER",
        exporter="export.seq2seq:Seq2SeqExporter",
        checkpoint_format="rnnserve-seq2seq/1",
        export_command="export.commands:SEQ2SEQ_COMMAND",
        page="service.ui:tasks/seq2seq.js",
    ),
    TaskParts(
        name="forecast",
        serving="service.tasks.forecast:ForecastTask",
        trainer="model_src.train_forecast:TRAINER",
        exporter="export.forecast:ForecastExporter",
        checkpoint_format="rnnserve-forecast/1",
        export_command="export.commands:FORECAST_COMMAND",
        page="service.ui:tasks/forecast.js",
    ),
    TaskParts(
        name="tensor",  # any ONNX graph made elsewhere: tensors in, tensors out
        serving="service.tasks.tensor:TensorTask",
        exporter="export.tensor:TensorExporter",
        export_command="export.commands:TENSOR_COMMAND",
        page="service.ui:tasks/tensor.js",
    ),
)


@cache
def tasks() -> dict[str, TaskParts]:
    """Built-in tasks, then those that installed packages register (read once per process)."""
    found = {parts.name: parts for parts in BUILTIN}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            parts = point.load()
        except Exception as error:  # a broken plugin must not take the built-in tasks down
            log.warning("task plugin %s (%s) could not load: %s", point.name, point.value, error)
            continue
        if not isinstance(parts, TaskParts) or parts.name != point.name:
            log.warning("task plugin %s: %s is not TaskParts named so", point.name, point.value)
        elif parts.name in found:
            log.warning("task plugin %s: a task of that name exists already", point.name)
        else:
            found[parts.name] = parts
    return found


def get(name: str) -> TaskParts:
    known = tasks()
    if name not in known:
        raise ValueError(
            f"task {name!r} is not served by this version of rnnserve "
            f"(tasks: {', '.join(sorted(known))})"
        )
    return known[name]


def for_checkpoint(checkpoint_format: object) -> TaskParts:
    """The task whose trainer writes checkpoints of this format."""
    for parts in tasks().values():
        if parts.checkpoint_format is not None and parts.checkpoint_format == checkpoint_format:
            return parts
    raise ValueError(f"unknown checkpoint format {checkpoint_format!r}")


def load(path: str) -> Any:
    """The object an import path "module:attribute" names (importing its module now)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
