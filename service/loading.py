"""Loading one version folder (blocking, on a worker thread): validate the manifest, verify
every file it refers to, build the task, warm it up. The event loop applies the outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
    preprocessing = manifest.preprocessing.model_dump() if manifest.preprocessing else {}
    for key, value in preprocessing.items():
        if key.endswith("_file") and isinstance(value, str):
            files.add(value)
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
) -> Loaded:
    """The served form of one version folder; raises LoadError with a readable reason."""
    try:
        manifest = Manifest.read(folder)
        if (manifest.name, manifest.version) != (name, version):
            raise LoadError(f"the manifest describes {manifest.name}/{manifest.version}")
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
