"""A model repository on object storage, mirrored into a local cache.

Each poll lists the store once. A version is complete when its manifest is there and every
file the manifest lists is there too (publishers upload the manifest last); a complete version
not yet in the cache is downloaded into a hidden staging folder and renamed into place, so the
repository only ever sees whole version folders, and checks every file's sha256 against the
manifest when it loads them (a corrupted file fails the load and is reported, never served).
A version deleted from the store leaves the cache, and the repository retires it.

When the store cannot be reached, what was last listed stays (so what is loaded keeps
serving), said once in the log; the poll fails, a readiness reason, only when nothing is known,
not even from the cache of an earlier run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from pydantic import ValidationError

from contract.manifest import MANIFEST_FILE, MODEL_NAME, Manifest, version_number
from contract.object_store import ObjectStore, StoredObject, StoreError
from service.discovery import discover

log = logging.getLogger("rnnserve.repository")

ORIGIN_FILE = ".origin.json"  # in a cached version: the ETags of what was downloaded
Found = dict[str, dict[int, Path]]


class StoreSource:
    def __init__(self, url: str, cache: Path, store: ObjectStore | None = None) -> None:
        self.store = store if store is not None else ObjectStore(url)
        self.folder = cache / self.store.url.bucket / self.store.url.prefix
        self.last: Found | None = None
        self.unreachable: str | None = None
        self._waiting: set[tuple[str, int, str]] = set()  # incomplete versions, logged once
        self._lock = threading.Lock()  # one mirror at a time (polls and explicit loads)

    def discover(self) -> Found:
        with self._lock:
            try:
                found = self._mirror()
            except StoreError as error:
                return self._without_store(error)
            if self.unreachable is not None:
                log.info("the model repository %s can be reached again", self.store.url)
                self.unreachable = None
            self.last = found
            return found

    def _without_store(self, error: StoreError) -> Found:
        known = self.last if self.last is not None else self._cached()
        if not known:
            raise error  # nothing can serve: the repository makes it a readiness reason
        if self.unreachable is None:
            log.warning("%s; serving the versions known before (%s)", error, _count(known))
        self.unreachable = str(error)
        return known

    def _mirror(self) -> Found:
        listed: dict[tuple[str, int], dict[str, StoredObject]] = {}
        for item in self.store.list():
            name, _, rest = item.key.partition("/")
            number, _, file = rest.partition("/")
            version = version_number(number)
            if MODEL_NAME.match(name) and version is not None and file and "/" not in file:
                listed.setdefault((name, version), {})[file] = item
        found: Found = {}
        for (name, version), objects in sorted(listed.items()):
            folder = self._mirror_version(name, version, objects)
            if folder is not None:
                found.setdefault(name, {})[version] = folder
        self._prune(found)
        return found

    def _mirror_version(
        self, name: str, version: int, objects: dict[str, StoredObject]
    ) -> Path | None:
        """The version's cache folder, downloaded if new or changed; None while incomplete."""
        manifest = objects.get(MANIFEST_FILE)
        if manifest is None:
            return None  # being uploaded (or abandoned): the manifest comes last
        folder = self.folder / name / str(version)
        origin = _origin(folder)
        if origin and origin == _etags(objects, origin):
            return folder  # downloaded before, and nothing changed since
        data = self.store.read(f"{name}/{version}/{MANIFEST_FILE}")
        try:
            files = list(Manifest.model_validate_json(data).files)
        except ValidationError:
            files = []  # loading reports the invalid manifest with its reasons
        missing = sorted(set(files) - set(objects))
        if missing:
            if (name, version, manifest.etag) not in self._waiting:
                self._waiting.add((name, version, manifest.etag))
                log.warning(
                    "%s/%s is not complete in %s (no %s): not loaded",
                    *(name, version, self.store.url, ", ".join(missing)),
                )
            return None
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        try:
            for file in files:
                self.store.download(f"{name}/{version}/{file}", staging / file)
            (staging / MANIFEST_FILE).write_bytes(data)
            origin = _etags(objects, [*files, MANIFEST_FILE])
            (staging / ORIGIN_FILE).write_text(json.dumps(origin))
            staging.chmod(0o755)
            _install(staging, folder, origin)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("downloaded %s/%s from %s", name, version, self.store.url)
        return folder

    def _prune(self, found: Found) -> None:
        """Cached versions no longer in the store leave the cache."""
        for name, versions in self._cached().items():
            for version, folder in versions.items():
                if version not in found.get(name, {}):
                    _remove(folder)

    def _cached(self) -> Found:
        """Whole versions in the cache (from this run or an earlier one)."""
        if not self.folder.is_dir():
            return {}
        cached = {
            name: {v: folder for v, folder in versions.items() if _origin(folder)}
            for name, versions in discover(self.folder).items()
        }
        return {name: versions for name, versions in cached.items() if versions}


def _etags(objects: dict[str, StoredObject], files: object) -> dict[str, str | None]:
    return {file: (objects[file].etag if file in objects else None) for file in files}


def _origin(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _install(staging: Path, folder: Path, origin: dict[str, str | None]) -> None:
    """Rename the staged version into place; another process may have done it already."""
    try:
        os.rename(staging, folder)
    except OSError:
        if _origin(folder) == origin:
            return
        _remove(folder)
        os.rename(staging, folder)


def _remove(folder: Path) -> None:
    """Rename away first, so no one sees a half-deleted version."""
    trash = folder.with_name(f".old-{folder.name}-{uuid.uuid4().hex}")
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _count(found: Found) -> str:
    versions = sum(len(v) for v in found.values())
    return (
        f"{versions} version{'s' * (versions != 1)} of {len(found)} model{'s' * (len(found) != 1)}"
    )
