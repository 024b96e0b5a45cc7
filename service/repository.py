"""The model repository: finds version folders, loads them, and answers which version serves."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model_src.manifest import MODEL_NAME, Manifest, sha256_of
from service.batching import Batcher
from service.errors import ModelNotReady, NotFound
from service.metrics import Metrics
from service.runtime import create_session
from service.schemas import PredictParameters
from service.settings import Settings
from service.tasks.classify import ClassifyTask

log = logging.getLogger("rnnserve.repository")
State = Literal["loading", "ready", "failed"]


@dataclass
class ModelVersion:
    name: str
    version: int
    folder: Path
    state: State = "loading"
    error: str | None = None
    manifest: Manifest | None = None
    provider: str | None = None
    task: ClassifyTask | None = None
    batcher: Batcher | None = None

    async def predict(
        self, instances: list[Any], params: PredictParameters, timeout: float
    ) -> list[dict[str, Any]]:
        assert self.task is not None and self.batcher is not None
        items = self.task.prepare(instances, params)
        results = await self.batcher.submit(items, timeout)
        return [self.task.respond(i, r, params) for i, r in zip(items, results, strict=True)]


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.root = settings.model_repository
        self.models: dict[str, dict[int, ModelVersion]] = {}
        self.loaded = False  # the first full scan has finished

    def discover(self) -> list[ModelVersion]:
        """Every <name>/<version>/ folder; anything else in the repository is ignored."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a folder")
        found = []
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or not MODEL_NAME.match(model_dir.name):
                continue
            for version_dir in model_dir.iterdir():
                if version_dir.is_dir() and version_dir.name.isdigit() and int(version_dir.name):
                    found.append(ModelVersion(model_dir.name, int(version_dir.name), version_dir))
        return found

    def load_all(self) -> None:
        """Blocking: load every version found; failures are recorded, never raised."""
        for mv in self.discover():
            self.models.setdefault(mv.name, {})[mv.version] = mv
        for versions in self.models.values():
            for mv in versions.values():
                self.load(mv)
        self.loaded = True

    def load(self, mv: ModelVersion) -> None:
        labels = (mv.name, str(mv.version))
        try:
            mv.manifest = manifest = Manifest.read(mv.folder)
            if (manifest.name, manifest.version) != (mv.name, mv.version):
                raise ValueError(f"the manifest describes {manifest.name}/{manifest.version}")
            for file, expected in manifest.files.items():
                if sha256_of(mv.folder / file) != expected:
                    raise ValueError(f"{file} does not match the sha256 in the manifest")
            if manifest.task != "classify":
                raise ValueError(f"task {manifest.task!r} is not served by this version")
            limits = self.settings.batching_for(mv.name)
            session, mv.provider = create_session(
                mv.folder / manifest.graphs["model"].file, self.settings
            )
            mv.task = ClassifyTask(
                manifest,
                mv.folder,
                session,
                self.settings.max_sequence_length,
                limits.max_padding_waste,
                limits.max_batch_size,
            )
            mv.task.warm_up()
            mv.batcher = Batcher(mv.task.run, limits, self.metrics.batch_observer(*labels))
            self.metrics.queue_depth.labels(*labels).set_function(
                lambda b=mv.batcher: b.queue_depth
            )
            mv.state = "ready"
            log.info("loaded %s/%s on %s", mv.name, mv.version, mv.provider)
        except Exception as error:  # a broken artifact is reported, never served
            mv.state = "failed"
            mv.error = f"{type(error).__name__}: {error}".replace(str(mv.folder), "<version>")
            log.error("could not load %s/%s: %s", mv.name, mv.version, mv.error)
        self.metrics.ready.labels(*labels).set(1 if mv.state == "ready" else 0)

    def close(self) -> None:
        for versions in self.models.values():
            for mv in versions.values():
                if mv.batcher is not None:
                    mv.batcher.close()

    def versions_of(self, name: str) -> dict[int, ModelVersion]:
        """Looked up in memory only: a name from a request never reaches the filesystem."""
        versions = self.models.get(name) if MODEL_NAME.match(name) else None
        if not versions:
            raise NotFound(f"model {name!r} not found")
        return versions

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The requested version, or the highest ready one."""
        versions = self.versions_of(name)
        if version is None:
            ready = [v for v, mv in versions.items() if mv.state == "ready"]
            if not ready:
                raise ModelNotReady(
                    f"model {name!r} has no version ready: "
                    + "; ".join(_describe(mv) for mv in versions.values())
                )
            return versions[max(ready)]
        mv = versions.get(version)
        if mv is None:
            raise NotFound(f"model {name!r} has no version {version}")
        if mv.state != "ready":
            raise ModelNotReady(_describe(mv))
        return mv

    def not_ready(self) -> list[str]:
        """Why the server is not ready yet; empty when it is."""
        if not self.loaded:
            return ["models are still loading"]
        reasons = []
        for versions in self.models.values():
            for mv in versions.values():
                if mv.state == "loading" or (
                    mv.state == "failed" and self.settings.strict_readiness
                ):
                    reasons.append(_describe(mv))
        return reasons


def _describe(mv: ModelVersion) -> str:
    detail = f": {mv.error}" if mv.error else ""
    return f"{mv.name} version {mv.version} is {mv.state}{detail}"
