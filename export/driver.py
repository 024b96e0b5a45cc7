"""The one export pipeline for every task: graphs -> onnx.checker -> parity -> optional int8
-> manifest, into a version folder that `publish` renames into place atomically.

A task's exporter supplies only what differs: its graphs, its parity check, its held-out
quality (for int8), its extra files and its part of the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import onnx

from contract.manifest import Architecture, GraphSpec, Manifest, TrainingInfo, sha256_of
from export.common import ParityError, export_info, now

QUANTIZATIONS = ("int8",)


class NotExportable(ValueError):
    """An export option this task's exporter does not offer."""


class ContractError(ValueError):
    """The user's module or graph does not keep the task's documented contract."""


class LimitError(ValueError):
    """A serving limit under which no input could be served: the version would never load."""


def check_limits(**limits: int) -> None:
    """Each limit (`max_tokens=3`) lets at least one input through."""
    for name, value in limits.items():
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise LimitError(f"{flag} {value} leaves no input that can be served; give 1 or more")


@dataclass(frozen=True)
class Options:
    """`rnnserve export`'s flags; each means the same for every task."""

    tolerance: float = 1e-4  # largest PyTorch-vs-onnxruntime difference accepted
    description: str = ""
    title: str = ""  # what the model is, in a few words: the page's name for it
    examples: tuple[str, ...] = ()  # inputs to try, as a person types them on the page
    quantize: str | None = None  # "int8": dynamically quantised weights
    max_accuracy_drop: float = 0.01  # refuse an int8 graph that loses more held-out quality


@dataclass(frozen=True)
class Parity:
    """How far onnxruntime is from PyTorch, and whether their decoded outputs agree."""

    max_abs_diff: float
    what: str = "onnxruntime differs from PyTorch"
    outputs_agree: bool = True


@dataclass(frozen=True)
class Quality:
    """A held-out metric (higher is better) of the graphs as the service runs them."""

    metric: str  # its key in the manifest's training metrics, e.g. "dev_accuracy"
    value: float


class TaskExporter(Protocol):
    """A task's export part in the registry: from a checkpoint, a user's module or a graph."""

    quantizable: bool  # whether int8 quantisation is offered
    training: TrainingInfo | None  # the manifest's training facts; None: not trained by us

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        """Write the ONNX graphs into the folder; their specs by role."""

    def parity(self, folder: Path) -> Parity | None:
        """None: there is no PyTorch model to compare with (an ONNX graph made elsewhere)."""

    def quality(self, folder: Path) -> Quality:
        """Held-out quality of the graphs in the folder (called only where quantizable)."""

    def write_files(self, folder: Path) -> list[str]:
        """Write the other files the service reads (vocabularies...); their names."""

    def extra_metrics(self, folder: Path) -> dict[str, float]:
        """Held-out metrics measured on the exported graphs, for the manifest."""

    def manifest_parts(self) -> dict[str, Any]:
        """The manifest's task-specific fields: architecture, preprocessing, labels."""

    def export_facts(self, folder: Path) -> dict[str, Any]:
        """Export facts only the exporter knows (e.g. a foreign graph's own opset)."""


@dataclass(frozen=True)
class Trained:
    """What a checkpoint of ours adds to the module it holds: how the model was built and
    trained. An exporter given one publishes origin "trained"; a user's module, "module"."""

    architecture: Architecture
    training: TrainingInfo


class Exporter:
    """Defaults for a task exporter: no int8, no extra files, no extra metrics, a user's
    module unless `trained` says it is ours."""

    quantizable = False
    trained: Trained | None = None

    @property
    def training(self) -> TrainingInfo | None:
        return self.trained.training if self.trained else None

    def provenance(self) -> dict[str, Any]:
        """The manifest's origin, with the architecture where the model is ours."""
        if self.trained is None:
            return {"origin": "module"}
        return {"origin": "trained", "architecture": self.trained.architecture}

    def write_files(self, folder: Path) -> list[str]:
        return []

    def extra_metrics(self, folder: Path) -> dict[str, float]:
        return {}

    def export_facts(self, folder: Path) -> dict[str, Any]:
        return {}


def check_options(task: str, exporter: type[TaskExporter], options: Options) -> None:
    """Refuse, with one message for every task, an option its exporter does not offer."""
    if options.quantize is not None and not exporter.quantizable:
        raise NotExportable(f"--quantize {options.quantize} is not supported for {task} models")


def write_version(
    task: str, exporter: TaskExporter, folder: Path, name: str, version: int, options: Options
) -> Manifest:
    """Fill a version folder: graphs, files, manifest. Refuses a graph that fails parity."""
    check_options(task, type(exporter), options)
    graphs = exporter.export_graphs(folder)
    for spec in graphs.values():
        onnx.checker.check_model(onnx.load(str(folder / spec.file)), full_check=True)
    parity = checked_parity(exporter, folder, options.tolerance)
    training = exporter.training
    metrics = dict(training.metrics) if training else {}
    accuracy_change = None
    if options.quantize == "int8":
        before = exporter.quality(folder)
        for spec in graphs.values():
            quantize_int8(folder / spec.file)
        after = exporter.quality(folder)
        accuracy_change = round(after.value - before.value, 4)
        if -accuracy_change > options.max_accuracy_drop:
            raise ParityError(
                f"int8 loses {-accuracy_change:.2%} {before.metric.replace('_', ' ')} "
                f"(> {options.max_accuracy_drop:.2%})"
            )
        metrics[f"{before.metric}_fp32"] = round(before.value, 4)
        metrics[after.metric] = round(after.value, 4)
        parity = exporter.parity(folder)
    files = [spec.file for spec in graphs.values()] + exporter.write_files(folder)
    metrics.update(exporter.extra_metrics(folder))
    manifest = Manifest(
        name=name,
        version=version,
        task=task,
        title=options.title,
        description=options.description,
        examples=list(options.examples),
        created_at=now(),
        graphs=graphs,
        files={f: sha256_of(folder / f) for f in files},
        export=export_info(
            parity.max_abs_diff if parity else None,
            options.tolerance if parity else None,
            from_torch=parity is not None,
            quantized=options.quantize,
            accuracy_change=accuracy_change,
            **exporter.export_facts(folder),
        ),
        training=training.model_copy(update={"metrics": metrics}) if training else None,
        **exporter.manifest_parts(),
    )
    manifest.write(folder)
    return manifest


def checked_parity(exporter: TaskExporter, folder: Path, tolerance: float) -> Parity | None:
    parity = exporter.parity(folder)
    if parity is None:
        return None
    if not parity.max_abs_diff <= tolerance or not parity.outputs_agree:
        agree = "" if parity.outputs_agree else ", and the outputs differ"
        raise ParityError(f"{parity.what} by {parity.max_abs_diff:.3g} (> {tolerance:g}){agree}")
    return parity


def quantize_int8(graph: Path) -> None:
    """Dynamic int8 quantisation in place: weights stored as int8, activations per run."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = graph.with_suffix(".fp32.onnx")
    graph.rename(fp32)
    with quiet_root_logger():
        quantize_dynamic(str(fp32), str(graph), weight_type=QuantType.QInt8)
    fp32.unlink()


@contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization advises "pre-processing before quantization" on the root
    logger at every call (and so installs a stderr handler); export checks the int8 graph
    itself (parity, accuracy), so export's output stays its own lines."""
    root, sink = logging.getLogger(), logging.NullHandler()
    mute = logging.Filter("rnnserve")  # drops what is logged on the root logger itself
    root.addHandler(sink)  # a root with a handler is not given basicConfig's stderr one
    root.addFilter(mute)
    try:
        yield
    finally:
        root.removeFilter(mute)
        root.removeHandler(sink)
