"""Publish a finished version folder into the model repository atomically: a folder (write,
then rename) or object storage (claim a number, upload the files, the manifest last)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from contract.manifest import MANIFEST_FILE, version_number
from contract.object_store import CLAIM_FILE, AlreadyExists, ObjectStore, is_store_url


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    numbers = (version_number(p.name) for p in model_dir.iterdir() if p.is_dir())
    return sorted(n for n in numbers if n is not None)


def publish(repository: Path | str, name: str, write: Callable[[Path, int], None]) -> Path | str:
    """Publish one version of `name`; where it went (a folder, or an s3:// URL)."""
    if is_store_url(repository):
        return publish_to_store(ObjectStore(str(repository)), name, write)
    return publish_to_folder(Path(repository), name, write)


def publish_to_folder(repository: Path, name: str, write: Callable[[Path, int], None]) -> Path:
    """Write a new version into a hidden temporary folder, then rename it into place.

    `write(folder, version)` fills the folder. A watcher never sees a half-written version:
    the rename is atomic, and a concurrent publisher that took the number first makes us
    retry with the next one.
    """
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
    try:
        for _ in range(100):
            version = max(existing_versions(model_dir), default=0) + 1
            write(staging, version)
            target = model_dir / str(version)
            try:
                os.rename(staging, target)  # fails if the target exists and is not empty
            except OSError:
                if not target.exists():
                    raise
                continue
            return target
        raise RuntimeError(f"could not find a free version number under {model_dir}")
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def publish_to_store(store: ObjectStore, name: str, write: Callable[[Path, int], None]) -> str:
    """Claim the next free version number, write the version locally, upload its files, then
    its manifest: servers take a version as complete only once the manifest is there.

    The claim is `<name>/<version>/.claim`, written only if absent; a publisher that loses the
    race for a number tries the next one. Numbers whose upload was abandoned stay taken, so a
    version never mixes the files of two publishers.
    """
    version = _claim_next_version(store, name)
    with tempfile.TemporaryDirectory(prefix="rnnserve-publish-") as staging:
        folder = Path(staging)
        try:
            write(folder, version)
        except BaseException:
            store.delete(f"{name}/{version}/{CLAIM_FILE}")  # nothing uploaded: free the number
            raise
        for file in sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_FILE):
            with (folder / file).open("rb") as body:
                store.write(f"{name}/{version}/{file}", body)
        manifest = (folder / MANIFEST_FILE).read_bytes()
        store.write(f"{name}/{version}/{MANIFEST_FILE}", manifest, only_if_absent=True)
    return f"{store.url}/{name}/{version}"


def _claim_next_version(store: ObjectStore, name: str) -> int:
    for _ in range(100):
        taken = (version_number(folder) for folder in store.folders(name))
        version = max((n for n in taken if n is not None), default=0) + 1
        try:
            store.write(f"{name}/{version}/{CLAIM_FILE}", b"", only_if_absent=True)
        except AlreadyExists:
            continue
        return version
    raise RuntimeError(f"could not claim a free version number of {name} in {store.url}")
