"""Loading one version folder (blocking, on a worker thread): validate the manifest, verify
every file it refers to, build the task, warm it up. The event loop applies the outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from pydantic import ValidationError

from contract.graphs import GRAPH_FILE, graph_manifest, tensor_spec
from contract.manifest import MANIFEST_FILE, Manifest, sha256_of
from service.batching import BatchStats
from service.phases import TimedSession
from service.runtime import create_inference_session
from service.settings import Settings
from service.tasks import ServingTask, TaskContext, build_task


@dataclass
class Loaded:
    manifest: Manifest
    task: ServingTask


class LoadError(Exception):
    """Why a version folder cannot be served, without any filesystem path."""


def referenced_files(manifest: Manifest) -> set[str]:
    """Every file the manifest points at: its graphs and its pre-processing files."""
    files = {graph.file for graph in manifest.graphs.values()}
    parts = [manifest.preprocessing.model_dump()] if manifest.preprocessing else []
    while parts:  # nested parts too: a seq2seq's input and output
        for key, value in parts.pop().items():
            if key.endswith("_file") and isinstance(value, str):
                files.add(value)
            elif isinstance(value, dict):
                parts.append(value)
    return files


def verify_files(manifest: Manifest, folder: Path) -> None:
    """Each referenced file must be listed in `files` and match its sha256."""
    unlisted = sorted(referenced_files(manifest) - set(manifest.files))
    if unlisted:
        raise LoadError(f"the manifest's files map does not list {', '.join(unlisted)}")
    for file, expected in manifest.files.items():
        if sha256_of(folder / file) != expected:
            raise LoadError(f"{file} does not match the sha256 in the manifest")


def load_version(
    name: str,
    version: int,
    folder: Path,
    settings: Settings,
    on_batch: Callable[[BatchStats], None],
    check_identity: bool = True,
) -> Loaded:
    """The served form of one version folder; raises LoadError with a readable reason.

    `check_identity`: the manifest must name the model and version its folders name (in a
    repository); where the server was given one model's folder, it serves it as named."""
    try:
        manifest = read_manifest(name, version, folder)
        if (manifest.name, manifest.version) != (name, version):
            if check_identity:
                raise LoadError(f"the manifest describes {manifest.name}/{manifest.version}")
            manifest = manifest.model_copy(update={"name": name, "version": version})
        verify_files(manifest, folder)
        task = build_task(
            TaskContext(
                manifest=manifest,
                folder=folder,
                settings=settings,
                limits=settings.batching_for(name),
                create_inference_session=lambda graph, threads=None: _timed(
                    create_inference_session(graph, settings, threads)
                ),
                on_batch=on_batch,
            )
        )
    except Exception as error:  # a broken artifact is reported, never served
        raise LoadError(explain(error).replace(str(folder), "<version>")) from error
    try:
        task.warm_up()
    except Exception as error:
        task.close()
        raise LoadError(explain(error).replace(str(folder), "<version>")) from error
    return Loaded(manifest, task)


def read_manifest(name: str, version: int, folder: Path) -> Manifest:
    """The folder's manifest; a folder holding only model.onnx (KServe's `onnx` format) gets
    one derived from the graph, as Triton completes a missing model configuration."""
    if (folder / MANIFEST_FILE).exists() or _visible_files(folder) != [GRAPH_FILE]:
        return Manifest.read(folder)
    graph = folder / GRAPH_FILE
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    try:
        inputs = [
            tensor_spec(i.name, _onnx_type(i.type), i.shape, "input") for i in session.get_inputs()
        ]
        outputs = [
            tensor_spec(o.name, _onnx_type(o.type), o.shape, "output")
            for o in session.get_outputs()
        ]
    except ValueError as error:
        raise LoadError(f"{GRAPH_FILE} without a manifest: {error}") from None
    return graph_manifest(name, version, folder, inputs, outputs, sha256_of(graph), ort.__version__)


def _visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _onnx_type(ort_type: str) -> str:
    """onnxruntime's "tensor(float)" -> ONNX's "float"; a sequence or map stays unserved."""
    return (
        ort_type.removeprefix("tensor(").removesuffix(")")
        if ort_type.startswith("tensor(")
        else ort_type
    )


def _timed(made: tuple[Any, str]) -> tuple[Any, str]:
    """The session, its runs noted for statistics (see service.phases)."""
    session, provider = made
    return TimedSession(session), provider


def explain(error: Exception) -> str:
    if isinstance(error, LoadError):
        return str(error)
    if isinstance(error, FileNotFoundError) and Path(error.filename or "").name == MANIFEST_FILE:
        return f"FileNotFoundError: no {MANIFEST_FILE}"
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False)
        where = [".".join(str(part) for part in p["loc"]) for p in problems]
        return "ValidationError: invalid manifest: " + "; ".join(
            f"{w}: {p['msg']}" for w, p in zip(where, problems, strict=True)
        )
    return f"{type(error).__name__}: {error}"
